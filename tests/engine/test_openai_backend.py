"""The remote engine backend: answers read from top logprobs, SSE, retries, errors, back-pressure, and for real
against llama-cpp-python's server on the SmolLM2 GGUF (compared with the local engine on the same file)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.config import ConfigError, config_from_dict, load_config
from engine import ChatTurn, EngineBusy, EngineError, EngineSettings, LocalEngine, ModelLoadError, create_engine
from engine.remote.analyst import answer_position, answer_scores, label_scores, token_answer
from engine.remote.backend import OpenAIEngine
from engine.remote.wire import (
    GuardedText,
    approx_tokens,
    reply_body,
    sse_deltas,
    trim_history_approx,
    truncate_approx,
)
from engine.roles.prompts import (
    ANALYST_ANSWER_PREFIX,
    CARE_QUESTION,
    COMPANION_SYSTEM_PROMPT,
    COMPANION_SYSTEM_PROMPTS,
    CONTENT_FREE,
)
from tests.support.openai_server import FakeOpenAIServer, LlamaCppServer, free_port


def remote_settings(base_url: str, **overrides: object) -> EngineSettings:
    values: dict[str, object] = {
        "backend": "openai", "base_url": base_url, "model": "fake-model", "temperature": 0.0, "max_retries": 2,
        "request_timeout_s": 10.0, "calibrate": False,
    }
    values.update(overrides)
    return EngineSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


async def started(settings: EngineSettings) -> OpenAIEngine:
    engine = OpenAIEngine(settings, backoff_s=0.01)
    await engine.start()
    return engine


# -- answers from top logprobs -------------------------------------------------------------------------------

THREE_WAY = {"neutral": ("neutral", "Neutral"), "negative": ("negative", "Negative", " negative")}


def test_answer_tokens_match_on_stripped_text_and_prefixes() -> None:
    assert token_answer(" negative", THREE_WAY) == "negative"
    assert token_answer("neg", THREE_WAY) == "negative"
    assert token_answer("negatively", THREE_WAY) is None  # longer than a spelling: another word
    assert token_answer("", THREE_WAY) is None and token_answer("  ", THREE_WAY) is None
    assert token_answer("Ne", THREE_WAY) is None  # could start "Neutral" or "Negative"
    assert token_answer("Ne", THREE_WAY, frozenset({"Negative"})) == "neutral"  # "Negative" came whole
    assert token_answer("n", THREE_WAY, frozenset({"negative", "neutral"})) is None  # both whole: starts neither


def test_answer_scores_sum_each_answers_tokens_and_floor_missing_ones() -> None:
    top = [
        {"token": "Negative", "logprob": -1.0},
        {"token": "This", "logprob": -1.5},
        {"token": " negative", "logprob": -2.0},
        {"token": "Ne", "logprob": -3.5},
        {"token": "n", "logprob": -4.0},
    ]
    scores = answer_scores(top, THREE_WAY)
    assert scores.logprobs["negative"] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0)))
    # "negative" came whole, so "Ne" and "n" can only start "Neutral" / "neutral"
    assert scores.logprobs["neutral"] == pytest.approx(math.log(math.exp(-3.5) + math.exp(-4.0)))
    assert scores.seen == ("neutral", "negative")
    partial = label_scores([{"token": "Positive", "logprob": -0.5}, {"token": "This", "logprob": -1.5}])
    assert partial.logprobs == {"positive": -0.5, "negative": -2.5}  # absent: 1 nat below the lowest returned
    assert partial.seen == ("positive",)
    assert label_scores([{"token": "This", "logprob": -0.1}]).seen == ()


def test_the_answer_is_read_after_the_written_opening() -> None:
    def tokens(*texts: str) -> list[dict[str, str]]:
        return [{"token": t} for t in texts]

    assert ANALYST_ANSWER_PREFIX.strip() == "Sentiment:"
    assert answer_position(tokens("Sent", "iment", ":", " positive")) == 3
    assert answer_position(tokens("Sentiment", ":", " ", "positive")) == 2
    assert answer_position(tokens("positive")) == 0  # answered straight away
    assert answer_position(tokens("The", " sentiment")) == 0  # something else: the first token, as a plain prompt
    assert answer_position(tokens("Sent", "iment")) == 0  # cut short before the label


# -- request bodies and the stream ----------------------------------------------------------------------------


def test_reply_body_holds_system_prompt_trimmed_history_and_the_message() -> None:
    history = [ChatTurn("assistant", "old reply"), ChatTurn("user", "x" * 400), ChatTurn("assistant", "ok")]
    settings = EngineSettings(backend="openai", history_tokens=100, max_new_tokens=33, temperature=0.3, seed=7)
    body = reply_body(settings, history, "hello")
    assert body["messages"][0] == {"role": "system", "content": COMPANION_SYSTEM_PROMPT}
    assert body["messages"][-1] == {"role": "user", "content": "hello"}
    assert [m["content"] for m in body["messages"][1:-1]] == []  # the 400-char turn does not fit; never open on "ok"
    assert (body["stream"], body["max_tokens"], body["temperature"], body["seed"]) == (True, 33, 0.3, 7)
    assert [t.text for t in trim_history_approx(history, 1000)] == ["x" * 400, "ok"]


def test_a_short_reply_body_asks_for_a_short_reply_and_fewer_tokens() -> None:
    settings = EngineSettings(backend="openai", max_new_tokens=256)
    body = reply_body(settings, [], "hello", "short")
    assert body["messages"][0] == {"role": "system", "content": COMPANION_SYSTEM_PROMPTS["short"]}
    assert body["max_tokens"] == settings.reply_token_limit("short") < 256


def test_token_estimate_counts_cjk_characters_one_each() -> None:
    assert approx_tokens("abcdefgh") == 2
    assert approx_tokens("今天很好") == 4
    assert approx_tokens(truncate_approx("今天很好" * 100, 10)) == 10
    assert truncate_approx("short", 10) == "short"


async def test_sse_deltas_skip_comments_and_stop_at_done() -> None:
    lines = [
        ": ping", "", 'data: {"choices": [{"delta": {"role": "assistant"}}]}', "",
        'data: {"choices": [{"delta": {"content": "Hi"}}]}', "event: message", 'data: {"choices": [{"delta": {}}]}',
        "data: [DONE]", 'data: {"choices": [{"delta": {"content": "after done"}}]}',
    ]

    async def source() -> AsyncIterator[str]:
        for line in lines:
            yield line

    assert [d async for d in sse_deltas(source())] == ["Hi"]


async def test_sse_error_chunk_is_an_engine_error() -> None:
    async def source() -> AsyncIterator[str]:
        yield 'data: {"error": {"message": "out of memory"}}'

    with pytest.raises(EngineError, match="out of memory"):
        [d async for d in sse_deltas(source())]


def test_streamed_text_goes_through_the_reply_guard() -> None:
    guard = GuardedText()
    shown = [guard.feed(d) for d in ["Senti", "ment: nega", "tive\nI hear", " you."]] + [guard.finish()]
    assert "".join(shown) == "I hear you."


# -- configuration --------------------------------------------------------------------------------------------


def test_engine_backend_keys_load_and_the_api_key_comes_from_env(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[engine]\nbackend = "openai"\nbase_url = "http://127.0.0.1:8080/v1"\nmodel = "smol"\n'
                    "request_timeout_s = 5\nmax_retries = 0\n", encoding="utf-8")
    config = load_config(path, environ={"MOODBOT_ENGINE_API_KEY": "sk-SECRET"})
    engine = config.engine
    assert (engine.backend, engine.base_url, engine.request_timeout_s, engine.max_retries) == (
        "openai", "http://127.0.0.1:8080/v1", 5, 0)
    assert engine.api_key == "sk-SECRET" and "SECRET" not in repr(config)
    assert isinstance(create_engine(engine), OpenAIEngine)
    assert isinstance(create_engine(EngineSettings()), LocalEngine)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backend": "remote"}, "engine.backend: must be one of local, openai"),
        ({"base_url": "localhost:8000"}, "engine.base_url: must start with http"),
        ({"request_timeout_s": 0}, "engine.request_timeout_s: must be more than 0"),
        ({"max_retries": -1}, "engine.max_retries: must be 0 or more"),
    ],
)
def test_bad_backend_values_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"engine": values})


# -- against a scripted server: errors, retries, back-pressure ------------------------------------------------


async def test_classify_asks_both_questions_and_sends_the_key(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url, api_key="sk-test", care_question=True))
    fake.care_top = [("yes", -0.1), ("no", -2.4)]
    try:
        sentiment = await engine.classify("what a day")
    finally:
        await engine.close()
    assert sentiment.label == "positive" and sum(sentiment.probs.values()) == pytest.approx(1.0)
    assert sentiment.probs["positive"] == pytest.approx(1 / (1 + math.exp(-1.8)))
    assert sentiment.care == pytest.approx(1 / (1 + math.exp(-2.3)))
    labels, care = sorted(fake.chat_requests[-2:], key=lambda body: body["max_tokens"])[::-1]
    assert (labels["max_tokens"], labels["temperature"], labels["logprobs"], labels["top_logprobs"]) == (8, 0, True, 20)
    assert labels["messages"][-1]["content"].endswith("what a day")
    assert care["max_tokens"] == 1 and care["messages"][-1]["content"] == CARE_QUESTION
    assert all(headers["Authorization"] == "Bearer sk-test" for _, _, headers in fake.requests)


async def test_without_the_care_question_one_request_per_message(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    fake.care_top = [("yes", -0.1), ("no", -2.4)]
    before = len(fake.chat_requests)
    try:
        sentiment = await engine.classify("what a day")
    finally:
        await engine.close()
    assert len(fake.chat_requests) - before == 1
    assert CARE_QUESTION not in str(fake.chat_requests[-1]["messages"]) and sentiment.care == 0.0


async def test_no_answer_seen_means_a_neutral_score_and_no_care_signal(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url, calibrate=True))
    fake.care_top, fake.label_top = [("Sent", -0.1)], [("The", -0.1)]
    try:
        sentiment = await engine.classify("hmm")
    finally:
        await engine.close()
    assert engine.bias["en"] == pytest.approx(1.8)  # a lean was measured, but there is nothing to remove it from
    assert (sentiment.score, sentiment.label, sentiment.care) == (0.0, "neutral", 0.0) and engine.unlabelled == 1


async def test_calibration_removes_the_lean_on_content_free_input(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url, calibrate=True))
    try:
        sentiment = await engine.classify("hello")  # the fake leans the same way on every input
    finally:
        await engine.close()
    assert engine.bias == {script: pytest.approx(1.8) for script in CONTENT_FREE}
    assert sentiment.score == pytest.approx(0.0) and sentiment.label == "neutral"
    assert len(fake.chat_requests) == 1 + sum(map(len, CONTENT_FREE.values())) + 1  # no care question by default


async def test_server_without_logprobs_is_refused_at_start(fake: FakeOpenAIServer) -> None:
    fake.logprobs = False
    with pytest.raises(ModelLoadError, match="returned no logprobs; moodbot's classifier needs") as info:
        await started(remote_settings(fake.base_url))
    assert fake.base_url in str(info.value) and "\n" not in str(info.value)


async def test_unreachable_server_is_a_one_line_load_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelLoadError, match=f"cannot reach the model server at {url}") as info:
        await started(remote_settings(url, max_retries=1))
    assert "\n" not in str(info.value)


async def test_wrong_api_key_is_a_load_error(fake: FakeOpenAIServer) -> None:
    fake.failures = [401]
    with pytest.raises(ModelLoadError, match="refused the API key"):
        await started(remote_settings(fake.base_url))


async def test_classify_retries_after_503_and_429(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        fake.failures = [503, 429]
        sentiment = await engine.classify("hello")
        assert sentiment.label == "positive"
        assert len(fake.chat_requests) == 1 + 2 + 1  # the start-up probe, two refusals, the answer
        fake.failures = [500, 502, 503, 500, 502, 503]
        with pytest.raises(EngineError, match="answered 50"):
            await engine.classify("hello")
        fake.failures = [400]
        before = len(fake.chat_requests)
        with pytest.raises(EngineError, match="answered 400"):
            await engine.classify("hello")
        assert len(fake.chat_requests) == before + 1  # a client error is not retried
    finally:
        await engine.close()


async def test_reply_streams_chunks_and_retries_only_before_text(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        fake.failures = [503]
        assert [c async for c in engine.reply([], "hi")] == ["I hear", " you.", " Tell me more?"]
        assert len(fake.chat_requests) == 1 + 2  # the probe, the 503, the reply
        fake.break_after = 1
        shown: list[str] = []
        with pytest.raises(EngineError, match="lost the connection"):
            async for chunk in engine.reply([], "hi"):
                shown.append(chunk)
        assert shown == ["I hear"] and len(fake.chat_requests) == 1 + 3  # text was out: no second try
    finally:
        await engine.close()
    assert engine.queue_depth == 0


async def test_full_queue_answers_busy(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url, queue_size=2))
    fake.gate = asyncio.Event()
    try:
        waiting = [asyncio.create_task(engine.classify(f"m{i}")) for i in range(2)]
        while len(fake.chat_requests) < 1 + 2:  # the probe, one request per message
            await asyncio.sleep(0.01)
        assert engine.queue_depth == 2
        with pytest.raises(EngineBusy):
            await engine.classify("one too many")
        with pytest.raises(EngineBusy):
            await anext(engine.reply([], "one too many"))
        fake.gate.set()
        assert [s.label for s in await asyncio.gather(*waiting)] == ["positive", "positive"]
        assert engine.queue_depth == 0
    finally:
        await engine.close()


# -- for real: llama-cpp-python's server on the SmolLM2 GGUF --------------------------------------------------

CLEAR_MESSAGES = [
    "I love this so much, best day ever!",
    "Thank you, this made me really happy.",
    "What a wonderful surprise, I'm thrilled.",
    "This is the worst day of my life.",
    "I hate everything about this place.",
    "I feel terrible and completely hopeless.",
    "My dog died this morning and I can't stop crying.",
    "我今天非常开心，谢谢你！",
    "这家酒店太差了，我再也不会来了。",
    "我很难过，什么都不想做。",
]
# Measured with SmolLM2-135M-Instruct Q4_1 (llama-cpp-python 0.3.36 vs the local engine in fp32, both calibrated,
# neutral margin 0.2): 10 of 10 labels agree, every remote answer had a label token among its top 20, and
# P(positive) differs by 0.019 on average (0.066 at most). Several verdicts sit near the neutral margin, where the
# server's quantised arithmetic could tip one: allow one flip.
MIN_AGREEMENT = 0.9
MAX_MEAN_PROB_GAP = 0.08


@pytest.fixture(scope="module")
def llama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(smollm2_gguf, log_path=tmp_path_factory.mktemp("llama-server") / "server.log") as server:
        yield server


def real_settings(server: LlamaCppServer, gguf: Path, **overrides: object) -> EngineSettings:
    return remote_settings(server.base_url, model=str(gguf), request_timeout_s=120.0, calibrate=True, **overrides)


@pytest.mark.real_model
async def test_real_server_classifications_agree_with_the_local_engine(
    llama_server: LlamaCppServer, smollm2_gguf: Path
) -> None:
    remote = await started(real_settings(llama_server, smollm2_gguf))
    try:
        remote_results = [await remote.classify(text) for text in CLEAR_MESSAGES]
    finally:
        await remote.close()
    for sentiment in remote_results:
        assert sentiment.label in ("positive", "neutral", "negative") and 0 <= sentiment.care <= 1
        assert sum(sentiment.probs.values()) == pytest.approx(1.0, abs=1e-5) and -1 <= sentiment.score <= 1
    assert remote.unlabelled == 0
    local = LocalEngine(EngineSettings(model=str(smollm2_gguf), precision="fp32", threads=2, temperature=0.0))
    await local.start()
    try:
        local_results = await asyncio.gather(*(local.classify(text) for text in CLEAR_MESSAGES))
    finally:
        await local.close()
    pairs = list(zip(remote_results, local_results, strict=True))
    agreement = sum(a.label == b.label for a, b in pairs) / len(pairs)
    gap = sum(abs(a.probs["positive"] - b.probs["positive"]) for a, b in pairs) / len(pairs)
    assert agreement >= MIN_AGREEMENT, [(a.label, b.label) for a, b in pairs]
    assert gap <= MAX_MEAN_PROB_GAP


@pytest.mark.real_model
async def test_real_server_streams_a_reply_in_chunks(llama_server: LlamaCppServer, smollm2_gguf: Path) -> None:
    engine = await started(real_settings(llama_server, smollm2_gguf, max_new_tokens=24, seed=1))
    try:
        history = [ChatTurn("user", "I start a new job tomorrow."), ChatTurn("assistant", "How exciting!")]
        chunks = [chunk async for chunk in engine.reply(history, "I'm a bit nervous about it.")]
        during = asyncio.create_task(anext(engine.reply([], "Hello there!")))
        assert (await engine.classify("I am so happy today!")).label in ("positive", "neutral", "negative")
        assert await during  # a classification does not cut off a streaming reply
    finally:
        await engine.close()
    assert len(chunks) > 1 and "".join(chunks).strip()
