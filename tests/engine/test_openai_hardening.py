"""The remote backend against a bad server: every malformed, oversized, endless or trickling answer is a prompt
EngineError (the engine stays usable), and an API key never travels over plain http to another machine."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.config import ConfigError, config_from_dict, load_config
from engine import EngineError, EngineSettings, ModelLoadError
from engine.remote.analyst import MIN_LOGPROB
from engine.remote.backend import OpenAIEngine
from engine.remote.wire import (
    MAX_ANSWER_BYTES,
    Deadline,
    GuardedText,
    capped,
    read_all,
    sse_deltas,
    text_lines,
)
from engine.roles.guard import visible_reply
from engine.settings import key_travels_safely
from tests.support.openai_server import FakeOpenAIServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NO_HANG_S = 60.0  # only so that a regression fails instead of hanging the run; the bounds are far shorter
TRICKLE_TIMEOUT_S = 2.0
TRICKLE_PAUSE_S = 0.1  # well inside the per-read timeout: only the request's deadline can end a trickle


def remote_settings(base_url: str, **overrides: object) -> EngineSettings:
    values: dict[str, object] = {
        "backend": "openai", "base_url": base_url, "model": "fake-model", "temperature": 0.0, "max_retries": 0,
        "request_timeout_s": 10.0, "calibrate": False, "max_new_tokens": 8,
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


# -- scripted answers -----------------------------------------------------------------------------------------


def body(data: str | bytes, *, status: int = 200, content_type: str = "application/json",
         headers: dict[str, str] | None = None) -> Handler:
    """Answer once with ``data``."""
    async def handler(request: web.Request) -> web.StreamResponse:
        raw = data.encode() if isinstance(data, str) else data
        return web.Response(body=raw, status=status, content_type=content_type, headers=headers)
    return handler


def endless(piece: bytes, *, pause: float = 0.0, prefix: bytes = b"", status: int = 200,
            content_type: str = "text/event-stream", content_length: int | None = None) -> Handler:
    """Answer with ``prefix``, then ``piece`` again and again (every ``pause`` s) until the client goes away."""
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        if content_length is not None:
            response.content_length = content_length
        await response.prepare(request)
        try:
            await response.write(prefix)
            while True:
                await response.write(piece)
                await asyncio.sleep(pause)
        except (ConnectionError, RuntimeError):  # the client hung up, as it should
            pass
        return response
    return handler


def completion(top: Any, *, content: Any = None, logprobs: Any = None, choices: Any = None) -> str:
    """A chat completion answering the label straight away, its first token's ``top_logprobs`` being ``top``
    (each part replaceable by something malformed); NaN and Infinity are written as Python's json writes them."""
    if content is None:
        content = [{"token": " positive", "logprob": -0.1, "bytes": None, "top_logprobs": top}]
    if logprobs is None:
        logprobs = {"content": content}
    if choices is None:
        choices = [{"index": 0, "message": {"role": "assistant", "content": "positive"}, "logprobs": logprobs,
                    "finish_reason": "stop"}]
    return json.dumps({"object": "chat.completion", "choices": choices})


def sse(*chunks: str) -> bytes:
    return b"".join(f"data: {chunk}\n\n".encode() for chunk in chunks)


GOOD_TOP = [{"token": " positive", "logprob": -0.2}, {"token": " negative", "logprob": -2.0}]
VALID = completion(GOOD_TOP)

MALFORMED_ANSWERS = {
    "NaN logprob": (completion([{"token": " positive", "logprob": float("nan")}]), "not a log-probability"),
    "Infinity logprob": (completion([{"token": " positive", "logprob": float("inf")}]), "not a log-probability"),
    "logprob above 0": (completion([{"token": " positive", "logprob": 3.0}]), "not a log-probability"),
    "string logprob": (completion([{"token": " positive", "logprob": "-0.1"}]), "not a number"),
    "boolean logprob": (completion([{"token": " positive", "logprob": True}]), "not a number"),
    "missing logprob": (completion([{"token": " positive"}]), "not a number"),
    "number token": (completion([{"token": 5, "logprob": -0.1}]), "without token text"),
    "entry not an object": (completion(["positive"]), "without token text"),
    "top_logprobs an object": (completion({"token": " positive", "logprob": -0.1}), "top_logprobs is not a list"),
    "content a string": (completion(GOOD_TOP, content="positive"), "logprobs.content is not a list"),
    "content token missing": (completion(GOOD_TOP, content=[{"top_logprobs": GOOD_TOP}]), "logprobs.content"),
    "logprobs a number": (completion(GOOD_TOP, logprobs=5), "logprobs.content is not a list"),
    "choices a string": (completion(GOOD_TOP, choices="positive"), "no choices"),
    "no choices": (completion(GOOD_TOP, choices=[]), "no choices"),
    "choice a list": (completion(GOOD_TOP, choices=[[1]]), "no choices"),
    "error object with 200": ('{"error": {"message": "model crashed"}}', "no choices"),
    "truncated JSON": (VALID[: len(VALID) // 2], "something other than a JSON object"),
    "a JSON list": ("[1, 2, 3]", "something other than a JSON object"),
    "a JSON string": ('"positive"', "something other than a JSON object"),
    "plain text": ("positive", "something other than a JSON object"),
    "empty body": ("", "something other than a JSON object"),
    "nesting too deep": ("[" * 200_000, "something other than a JSON object"),
    "a number too long": ('{"choices": ' + "9" * 100_000 + "}", "something other than a JSON object"),
    "not UTF-8": (b'{"choices": "\xff\xfe"}', "something other than a JSON object"),
}


@pytest.mark.parametrize("case", list(MALFORMED_ANSWERS))
async def test_a_malformed_classification_answer_is_an_engine_error(fake: FakeOpenAIServer, case: str) -> None:
    answer, message = MALFORMED_ANSWERS[case]
    engine = await started(remote_settings(fake.base_url))
    try:
        fake.answers = [body(answer)]
        async with asyncio.timeout(NO_HANG_S):
            with pytest.raises(EngineError, match=message) as info:
                await engine.classify("what a day")
        assert "\n" not in str(info.value)
        assert engine.queue_depth == 0
        assert (await engine.classify("what a day")).label == "positive"  # the next good answer is read as ever
    finally:
        await engine.close()


async def test_nan_no_longer_reads_as_certainly_positive(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    fake.answers = [body(completion([{"token": " positive", "logprob": float("nan")},
                                     {"token": " negative", "logprob": -1.0}]))]
    try:
        with pytest.raises(EngineError, match="logprob nan is not a log-probability"):
            await engine.classify("what a day")
    finally:
        await engine.close()


async def test_minus_infinity_is_a_probability_of_zero(fake: FakeOpenAIServer) -> None:
    """llama-cpp-python's server writes -Infinity for a token it rules out: a valid answer, read as vLLM's floor."""
    engine = await started(remote_settings(fake.base_url))
    fake.answers = [body(completion([{"token": " positive", "logprob": -0.1},
                                     {"token": " negative", "logprob": float("-inf")}]))]
    try:
        labels, _ = await engine.answers("what a day")
    finally:
        await engine.close()
    assert labels.logprobs == {"positive": -0.1, "negative": MIN_LOGPROB} and labels.seen == ("positive", "negative")


async def test_a_malformed_probe_answer_refuses_to_start(fake: FakeOpenAIServer) -> None:
    fake.answers = [body(MALFORMED_ANSWERS["NaN logprob"][0])]
    with pytest.raises(ModelLoadError, match="malformed answer: logprob nan"):
        await started(remote_settings(fake.base_url))


@pytest.mark.parametrize("listing", [5, "fake-model", [{"id": 5}, "x", None], {"id": "fake-model"}])
async def test_a_malformed_model_list_is_only_a_warning(fake: FakeOpenAIServer, listing: object) -> None:
    fake.model_list = listing
    engine = await started(remote_settings(fake.base_url))
    await engine.close()


# -- sizes, time and encodings --------------------------------------------------------------------------------

HUGE = 5 * MAX_ANSWER_BYTES // 4


async def classify_fails(engine: OpenAIEngine, fake: FakeOpenAIServer, answer: Handler, message: str) -> None:
    fake.answers = [answer]
    async with asyncio.timeout(NO_HANG_S):
        with pytest.raises(EngineError, match=message):
            await engine.classify("what a day")
    assert engine.queue_depth == 0


async def reply_fails(engine: OpenAIEngine, fake: FakeOpenAIServer, answer: Handler, message: str) -> list[str]:
    fake.answers = [answer]
    shown: list[str] = []
    async with asyncio.timeout(NO_HANG_S):
        with pytest.raises(EngineError, match=message):
            async for chunk in engine.reply([], "hi"):
                shown.append(chunk)
    assert engine.queue_depth == 0
    return shown


async def test_a_huge_answer_is_refused_by_its_declared_length(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        await classify_fails(engine, fake, body(b" " * HUGE + VALID.encode()), "larger than 4096 KiB")
        await classify_fails(engine, fake, endless(b" ", pause=0.1, content_length=HUGE), "larger than 4096 KiB")
    finally:
        await engine.close()


async def test_an_endless_answer_is_cut_off_at_the_limit(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        padding = endless(b" " * 65536, prefix=b'{"choices": [', content_type="application/json")
        await classify_fails(engine, fake, padding, "larger than 4096 KiB")
        await classify_fails(engine, fake, endless(b"9" * 65536, content_type="application/json"), "larger than")
    finally:
        await engine.close()


async def test_an_endless_stream_is_cut_off(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        empty_deltas = endless(sse('{"choices": [{"delta": {}}]}') * 100)
        await reply_fails(engine, fake, empty_deltas, r"larger than 96 KiB")  # 64 KiB + 8 tokens x 4 KiB
        one_line = endless(b"x" * 4096, prefix=b'data: {"choices": [{"delta": {"content": "')
        await reply_fails(engine, fake, one_line, "larger than 96 KiB")
        words = endless(sse('{"choices": [{"delta": {"content": "la "}}]}'))
        shown = await reply_fails(engine, fake, words, "longer than 512 characters")  # 8 tokens x 64
        assert "".join(shown).startswith("la la")
        newlines = endless(sse('{"choices": [{"delta": {"content": "\\n"}}]}'))
        await reply_fails(engine, fake, newlines, "longer than 512 characters")
    finally:
        await engine.close()


async def test_a_trickle_is_cut_off_by_the_request_deadline(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url, request_timeout_s=TRICKLE_TIMEOUT_S))
    deadline = f"did not finish answering within {TRICKLE_TIMEOUT_S:g} s"
    try:
        json_trickle = endless(b" ", pause=TRICKLE_PAUSE_S, prefix=b'{"choices": [', content_type="application/json")
        await classify_fails(engine, fake, json_trickle, deadline)
        stream_trickle = endless(b" ", pause=TRICKLE_PAUSE_S, prefix=sse('{"choices": [{"delta": {"content": "Hi"}}]}'))
        assert await reply_fails(engine, fake, stream_trickle, deadline) == []  # "Hi" is held back as a partial line
        chunk = sse('{"choices": [{"delta": {"content": "Hi "}}]}')
        shown = await reply_fails(engine, fake, endless(chunk, pause=TRICKLE_PAUSE_S), deadline)
        assert "".join(shown).startswith("Hi Hi")  # what was shown stays shown; the rest never comes
    finally:
        await engine.close()


async def test_time_the_caller_spends_between_reads_is_not_the_servers() -> None:
    deadline = Deadline(1.0, "too slow")
    assert await deadline.wait(asyncio.sleep(0, "first")) == "first"
    await asyncio.sleep(1.2)  # e.g. showing a chunk to the person
    assert await deadline.wait(asyncio.sleep(0, "second")) == "second"
    with pytest.raises(EngineError, match="too slow"):
        await deadline.wait(asyncio.sleep(NO_HANG_S))


async def test_a_compressed_answer_is_refused_and_none_is_asked_for(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        gzipped = body(gzip.compress(VALID.encode()), headers={"Content-Encoding": "gzip"})
        await classify_fails(engine, fake, gzipped, "gzip-encoded answer")
    finally:
        await engine.close()
    assert all(headers["Accept-Encoding"] == "identity" for _, _, headers in fake.requests)


async def test_an_html_error_page_is_quoted_from_its_beginning_only(fake: FakeOpenAIServer) -> None:
    engine = await started(remote_settings(fake.base_url))
    try:
        page = b"<html><head><title>502 Bad Gateway</title></head><body>"
        error_page = endless(b"<p>nginx</p>" * 1000, prefix=page, status=502, content_type="text/html")
        await classify_fails(engine, fake, error_page, "answered 502 to /chat/completions: <html><head><title>502")
        await reply_fails(engine, fake, error_page, "answered 502")
        welcome = body("<html><body>Welcome to nginx!</body></html>", content_type="text/html")
        await classify_fails(engine, fake, welcome, "something other than a JSON object: '<html><body>Welcome")
        await reply_fails(engine, fake, welcome, "stream ended before the reply did")
    finally:
        await engine.close()


MALFORMED_STREAMS = {
    "not JSON": (b"data: {oops\n\n", "not JSON"),
    "a JSON list": (sse("[1, 2]"), "not a JSON object"),
    "choices a string": (sse('{"choices": "Hi"}'), "choices are not a list"),
    "content a number": (sse('{"choices": [{"delta": {"content": 5}}]}'), "without text"),
    "delta a list": (sse('{"choices": [{"delta": ["Hi"]}]}'), "without text"),
    "choice a string": (sse('{"choices": ["Hi"]}'), "without text"),
    "delta a string": (sse('{"choices": [{"delta": "Hi"}]}'), "without text"),
    "error chunk": (sse('{"error": {"message": "CUDA out of memory"}}'), "CUDA out of memory"),
    "not UTF-8": (b"data: {\"choices\": [{\"delta\": {\"content\": \"\xff\"}}]}\n\n", "not UTF-8"),
    "cut inside a character": (sse('{"choices": [{"delta": {"content": "Hi"}}]}') + b"data: \xe4\xbd", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(MALFORMED_STREAMS))
async def test_a_malformed_stream_is_an_engine_error(fake: FakeOpenAIServer, case: str) -> None:
    stream, message = MALFORMED_STREAMS[case]
    engine = await started(remote_settings(fake.base_url))
    try:
        await reply_fails(engine, fake, body(stream, content_type="text/event-stream"), message)
        assert [c async for c in engine.reply([], "hi")] == ["I hear", " you.", " Tell me more?"]
    finally:
        await engine.close()


# -- the pieces -----------------------------------------------------------------------------------------------


async def chunks_of(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_lines_are_split_on_every_line_ending_across_chunks() -> None:
    pieces = (b"data: a", b"b\r\n", b"\r\ndata: \xe4", b"\xbd\xa0\rdata: c\n", b"tail")
    lines = [line async for line in text_lines(chunks_of(*pieces))]
    assert [line for line in lines if line] == ["data: ab", "data: 你", "data: c", "tail"]


async def test_capped_reads_fail_past_the_limit_or_stop_there_when_cut() -> None:
    deadline = Deadline(NO_HANG_S, "too slow")
    assert await read_all(capped(chunks_of(b"abc", b"def"), 6, deadline)) == b"abcdef"
    with pytest.raises(EngineError, match="larger than"):
        await read_all(capped(chunks_of(b"abc", b"defg"), 6, deadline))
    assert await read_all(capped(chunks_of(b"abc", b"defg", b"h"), 5, deadline, cut=True)) == b"abcde"


async def test_sse_deltas_skip_choices_without_text_and_need_an_end() -> None:
    lines = ['data: {"choices": [{"delta": null}, {"delta": {"content": null}}, {}]}',
             'data: {"choices": null}', 'data: {"choices": [{"delta": {"content": "Hi"}}]}']

    async def source(*ending: str) -> AsyncIterator[str]:
        for line in [*lines, *ending]:
            yield line

    assert [d async for d in sse_deltas(source("data: [DONE]"))] == ["Hi"]
    finish = 'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}'
    assert [d async for d in sse_deltas(source(finish))] == ["Hi"]  # a server that never sends [DONE]
    with pytest.raises(EngineError, match="ended before the reply did"):
        [d async for d in sse_deltas(source())]


def reference_guard(deltas: list[str]) -> list[str]:
    """GuardedText as it was: visible_reply over the whole raw text after every delta."""
    raw, shown, out = "", "", []
    for delta in [*deltas, None]:
        if delta is None:
            visible = visible_reply(raw, final=True)
        else:
            raw += delta
            visible = visible_reply(raw, final=False)
        if visible.startswith(shown):
            out.append(visible[len(shown):])
            shown = visible
        else:
            out.append("")
    return out


GUARD_TEXTS = [
    "Sentiment: negative\nI hear you.",
    "  \n\nI hear you.\nSentiment: positive\nTell me more?  ",
    "Sentiment",
    "- **Label**: happy\n  Are you ok?\n\nYou are Moodbot, a warm and caring companion in a private chat.\nBye",
    "我听到了。\n情感：正面\n还好吗？",
    "\n\n\n",
    "Hello there\n   \n  indented line\nscore",
]


@pytest.mark.parametrize("text", GUARD_TEXTS)
def test_guarded_text_shows_what_visible_reply_shows_however_it_is_split(text: str) -> None:
    rng = random.Random(text)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 6))))
        deltas = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        guard = GuardedText()
        shown = [guard.feed(d) for d in deltas] + [guard.finish()]
        assert shown == reference_guard(deltas), deltas
        assert "".join(shown).rstrip() == visible_reply(text, final=True)  # shown spaces cannot be taken back


def test_guarded_text_refuses_more_text_than_asked_for() -> None:
    guard = GuardedText(max_chars=10)
    assert guard.feed("0123456789") == "0123456789"
    with pytest.raises(EngineError, match="longer than 10 characters"):
        guard.feed("!")


# -- the API key and plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://gpu.example.com/v1", True), ("http://127.0.0.1:8000/v1", True), ("http://127.8.0.1/v1", True),
        ("http://localhost:11434/v1", True), ("http://[::1]:8080/v1", True),
        ("http://gpu.example.com/v1", False), ("http://10.0.0.5:8000/v1", False), ("http://vllm:8000/v1", False),
        ("http://localhost.example.com/v1", False), ("http://[::ffff:10.0.0.1]/v1", False),
    ],
)
def test_a_key_travels_only_encrypted_or_to_this_machine(url: str, safe: bool) -> None:
    assert key_travels_safely(url) is safe


def test_an_api_key_over_plain_http_to_another_machine_is_a_config_error(tmp_path: Path) -> None:
    remote = {"backend": "openai", "base_url": "http://gpu.example.com:8000/v1"}
    with pytest.raises(ConfigError, match=r"engine\.base_url: an API key is sent only over https://") as info:
        config_from_dict({"engine": {**remote, "api_key": "sk-SECRET"}})
    assert "gpu.example.com" in str(info.value) and "SECRET" not in str(info.value)
    assert config_from_dict({"engine": remote}).engine.base_url == remote["base_url"]  # no key: nothing to expose
    with pytest.raises(ValueError, match=r"not over plain http to 'gpu\.example\.com'"):
        EngineSettings(**remote, api_key="sk-SECRET")  # type: ignore[arg-type]
    path = tmp_path / "config.toml"
    path.write_text('[engine]\nbackend = "openai"\nbase_url = "http://gpu.example.com:8000/v1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"came from \$MOODBOT_ENGINE_API_KEY"):
        load_config(path, environ={"MOODBOT_ENGINE_API_KEY": "sk-SECRET"})
    path.write_text('[engine]\nbackend = "openai"\nbase_url = "https://gpu.example.com/v1"\n', encoding="utf-8")
    assert load_config(path, environ={"MOODBOT_ENGINE_API_KEY": "sk-SECRET"}).engine.api_key == "sk-SECRET"
    local = {"base_url": "http://gpu.example.com:8000/v1", "api_key": "sk-SECRET"}  # the local backend sends nothing
    assert config_from_dict({"engine": local}).engine.backend == "local"
