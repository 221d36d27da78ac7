"""Two reference baselines for moodbot's one-model, 2-core CPU budget.

* :func:`run_seed_recipe`: the naive first design. The GGUF is dequantised to fp32 and loaded with transformers;
  sentiment is ``model.generate(max_new_tokens=10)`` on a full chat-template prompt whose text is then parsed;
  each reply re-encodes the whole 10-turn history with ``model.generate(max_new_tokens=128, do_sample=False)``.
* :func:`run_llamacpp`: the same GGUF, as quantised, with llama.cpp (``llama-cpp-python``) when it is installed.

Both are plain functions returning dicts of figures; they run sequentially and pin the thread count (2 by
default: the production server has 2 cores). Both work on the same prompt text, rendered with ChatML
(:func:`render_chatml`), which is what Qwen2.5's own chat template produces when a system prompt is present.

Smoke check::

    python -m bench.baselines --model ~/.cache/moodbot/models/qwen2.5-coder-0.5b-instruct.gguf --quick

With both baselines selected (the default) each one runs in its own child process, one after the other, so that
neither's memory figures include what the other left behind.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.measure import (
    BENCH_LOCK,
    CpuShare,
    PeakRssSampler,
    Timer,
    bench_lock,
    cpu_description,
    median,
    peak_rss_mb,
    percentile,
    rss_mb,
)

Progress = Callable[[str], None]

DEFAULT_MODEL = Path("~/.cache/moodbot/models/qwen2.5-coder-0.5b-instruct.gguf").expanduser()

LABELS: tuple[str, ...] = ("positive", "negative", "neutral")

CLASSIFY_INSTRUCTION = "Classify the sentiment of this message as positive, negative or neutral. Answer with one word."

# What Qwen2.5's chat template inserts when a conversation has no system message.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

SYSTEM_PROMPT = "You are Moodbot, a warm and caring companion. Reply kindly in two to four short sentences."

# Ten alternating turns (user first), 30-60 words each: one evening's conversation with the companion.
_CONVERSATION: tuple[str, ...] = (
    "Hey, I just got home after a long day. My manager moved our deadline up by a whole week, and now the team "
    "is scrambling. I don't know how we'll finish.",
    "That sounds exhausting after such a long day. A deadline pulled forward makes everything feel urgent at "
    "once. Which part of the project worries you the most tonight, right now?",
    "The data migration. It's the part I own, and it depends on two other teams who are already behind. If "
    "they slip, I have to explain it all on Friday.",
    "No wonder you feel the weight of it, when your part depends on people you can't control. That's a hard "
    "spot to be in. Have you told your manager about those risks?",
    "Not really. I mentioned it once last week, but he looked stressed too, so I didn't push. I was afraid it "
    "would sound like I was making excuses before even trying.",
    "That fear makes sense; nobody wants to look like they are giving up. Naming a risk early is seen as "
    "responsible, not as an excuse. Would it help to plan what to say?",
    "Yeah, maybe. I could write a short note listing what I need from each team and by when. Then everyone can "
    "see where the real bottlenecks are. That might work.",
    "That sounds like a clear, practical plan. Writing it down means you share the risk instead of carrying it "
    "alone. How do you feel now that you have a next step?",
    "Just a little lighter, actually. Still tired, and I skipped dinner again, which isn't great. My sister says I "
    "work too much, and tonight I think she is probably right.",
    "I'm glad it feels lighter. Skipping meals on hard days happens, but your body is carrying this week too. "
    "Could you make something simple to eat before you rest tonight?",
)

# The new message the companion answers after the 10-turn history (the reply benchmark's last user turn).
FOLLOW_UP_MESSAGE = "Okay, I made some pasta. Thanks for listening, it helps."

# Twenty short chat messages, English and Chinese, with the sentiment a person would give them.
_SAMPLES: tuple[tuple[str, str], ...] = (
    ("I got the job!!! Starting next Monday, I can't believe it", "positive"),
    ("My cat has been sick all week and the vet bills keep piling up", "negative"),
    ("Going to the supermarket later, need anything?", "neutral"),
    ("Had the best coffee with an old friend this morning", "positive"),
    ("I failed my driving test again. Third time.", "negative"),
    ("The meeting moved to 3pm tomorrow", "neutral"),
    ("Finally finished the marathon, legs are dead but I'm so proud", "positive"),
    ("Nobody remembered my birthday today", "negative"),
    ("I'm reading a book about the history of tea", "neutral"),
    ("Ugh, the train is delayed again and I'll miss my interview", "negative"),
    ("Thanks so much, talking to you always cheers me up", "positive"),
    ("It's raining here, I think I'll stay in tonight", "neutral"),
    ("今天终于考完试了，感觉特别轻松！", "positive"),
    ("我和男朋友分手了，心里好难受", "negative"),
    ("明天早上八点开会", "neutral"),
    ("收到了妈妈寄来的包裹，好开心", "positive"),
    ("工作压力太大了，每天都睡不着", "negative"),
    ("我刚吃完午饭，准备回办公室", "neutral"),
    ("老板今天表扬了我的报告，太棒了", "positive"),
    ("又加班到十一点，真的好累，不想干了", "negative"),
)

SAMPLE_MESSAGES: list[str] = [text for text, _ in _SAMPLES]
"""20 short realistic chat messages (12 English, 8 Chinese) with positive, negative and neutral moods."""

SAMPLE_LABELS: list[str] = [label for _, label in _SAMPLES]
"""The expected sentiment of each of :data:`SAMPLE_MESSAGES`, in the same order."""


def build_history(turns: int = 10) -> list[tuple[str, str]]:
    """A realistic English conversation as ``(role, text)`` pairs: ``user``/``assistant`` alternating, user first.

    Each turn has 30-60 words; with :data:`SYSTEM_PROMPT` and :data:`FOLLOW_UP_MESSAGE` the 10-turn prompt is
    about 460 tokens for Qwen2.5. ``turns`` may be 1..10.
    """
    if not 1 <= turns <= len(_CONVERSATION):
        raise ValueError(f"turns must be within 1..{len(_CONVERSATION)}, got {turns}")
    return [("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(_CONVERSATION[:turns])]


def reply_messages(
    history: Sequence[tuple[str, str]], new_message: str = FOLLOW_UP_MESSAGE, system_prompt: str = SYSTEM_PROMPT
) -> list[dict[str, str]]:
    """Chat messages of a reply prompt: the system prompt, the whole history, then the new user message."""
    messages = [{"role": "system", "content": system_prompt}]
    messages += [{"role": role, "content": text} for role, text in history]
    messages.append({"role": "user", "content": new_message})
    return messages


def classify_messages(message: str) -> list[dict[str, str]]:
    """Chat messages of the naive classification prompt: a single user turn, instruction then the message."""
    return [{"role": "user", "content": f"{CLASSIFY_INSTRUCTION}\n\n{message}"}]


def render_chatml(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """ChatML text of ``messages``, exactly what Qwen2.5's chat template renders (without tools).

    Like Qwen's template, a conversation that does not open with a system message gets Qwen's default one.
    """
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": QWEN_DEFAULT_SYSTEM}, *messages]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def reply_prompt_text(history: Sequence[tuple[str, str]], new_message: str = FOLLOW_UP_MESSAGE) -> str:
    """The 10-turn reply prompt as text, the one both baselines time (system prompt, history, new message)."""
    return render_chatml(reply_messages(history, new_message))


def parse_sentiment(text: str) -> tuple[str | None, bool]:
    """Parse a generated classification: ``(label or None, strict)``.

    The label is the one label word (positive/negative/neutral, any case) found in ``text``; None when there is
    none or more than one. ``strict`` is True when the whole output is just that word, punctuation aside.
    """
    words = re.findall(r"[a-z]+", text.lower())
    found = {w for w in words if w in LABELS}
    label = found.pop() if len(found) == 1 else None
    strict = label is not None and words == [label]
    return label, strict


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _round(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def _contention(cpu: CpuShare) -> dict[str, float]:
    """Figures that say whether the timed phase had its cores to itself (see :class:`bench.measure.CpuShare`)."""
    return {
        "cpu_share": _round(cpu.share, 3),
        "loadavg_1m_start": _round(cpu.load_start),
        "loadavg_1m_end": _round(cpu.load_end),
    }


class _HF:
    """The seed recipe's model and tokenizer with its two operations: render a chat, generate from a prompt."""

    def __init__(self, model: Any, tokenizer: Any, chatml: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.chatml = chatml
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def render(self, chat: list[dict[str, str]]) -> str:
        """Prompt text of ``chat`` with the tokenizer's own template (ChatML when it has none)."""
        if self.chatml:
            return render_chatml(chat)
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def generate(self, prompt: str, **kwargs: Any) -> tuple[Any, int]:
        """``model.generate`` on the encoded ``prompt``: (new token ids, prompt length)."""
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        n_prompt = int(enc["input_ids"].shape[1])
        out = self.model.generate(**enc, pad_token_id=self.pad_id, **kwargs)
        return out[0, n_prompt:], n_prompt


class _LlamaOps:
    """Tokenise, time a prompt evaluation and pick the greedy next token (end-of-turn masked) on a ``Llama``."""

    def __init__(self, llama_cpp: Any, llm: Any) -> None:
        import numpy as np

        self.np = np
        self.llama_cpp = llama_cpp
        self.llm = llm
        stop_ids = {llm.token_eos()}
        for special in ("<|im_end|>", "<|endoftext|>"):
            ids = self.tokens_of(special)
            if len(ids) == 1:
                stop_ids.add(ids[0])
        stop_ids.discard(-1)
        self.stop_ids = sorted(stop_ids)
        self._stop_index = np.array(self.stop_ids, dtype=np.int64)

    def tokens_of(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens parsed, no BOS (the chat template carries its own markers)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def greedy_token(self) -> int:
        """Argmax of the last evaluated position's logits (``llama_get_logits_ith(ctx, -1)``), stop ids masked."""
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = self.np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).copy()
        logits[self._stop_index] = -self.np.inf
        return int(self.np.argmax(logits))

    def greedy_decode(self, prompt: list[int], tokens: int) -> tuple[list[int], float]:
        """Evaluate ``prompt`` from an empty context, then decode ``tokens`` greedily, each fed back with
        ``llm.eval([token])``: (the tokens, seconds after the first one)."""
        self.llm.reset()
        self.llm.eval(prompt)
        generated = [self.greedy_token()]
        with Timer() as t:
            while len(generated) < tokens:
                self.llm.eval([generated[-1]])
                generated.append(self.greedy_token())
        return generated, t.seconds

    def timed_eval(self, tokens: list[int]) -> float:
        """Seconds of ``llm.eval(tokens)`` from an empty context (``llm.reset()`` first)."""
        self.llm.reset()
        with Timer() as t:
            self.llm.eval(tokens)
        return t.seconds


def run_seed_recipe(
    gguf_path: str | os.PathLike[str],
    messages: Sequence[str],
    history: Sequence[tuple[str, str]],
    n_classify: int = 20,
    n_reply: int = 3,
    *,
    labels: Sequence[str] | None = None,
    reply_message: str = FOLLOW_UP_MESSAGE,
    threads: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure the naive design: fp32 transformers model, sentiment by generate + parse, full-history replies.

    ``messages`` are classified ``n_classify`` times in turn (cycling when ``n_classify > len(messages)``), after
    one warm-up call kept out of the percentiles; ``labels`` (parallel to ``messages``), when given, add an accuracy
    figure. Each of the ``n_reply`` replies re-encodes system prompt + ``history`` + ``reply_message`` and
    generates exactly 128 tokens greedily (``min_new_tokens=128``). Time to first token comes from a streamer
    that timestamps each token inside that same ``generate`` call; a separate ``generate(max_new_tokens=1)`` on
    the same prompt is reported as a cross-check. Times in ms, memory in MiB. The model is freed on return.
    """
    if n_classify < 1 or n_reply < 1:
        raise ValueError("n_classify and n_reply must be at least 1")
    if labels is not None and len(labels) != len(messages):
        raise ValueError("labels must be parallel to messages")
    gguf = Path(gguf_path).expanduser().resolve()

    with Timer() as import_timer:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(threads)

    class TokenClock(BaseStreamer):
        """Timestamps every generated token; the first ``put`` is the prompt and is skipped."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self._prompt_seen = False

        def put(self, value: Any) -> None:
            if not self._prompt_seen:
                self._prompt_seen = True
                return
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    _say(progress, f"seed: loading {gguf.name} as fp32 with transformers")
    rss_before_load = rss_mb()
    with PeakRssSampler() as sampler, Timer() as load_timer:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model.eval()
    rss_after_load = rss_mb()

    # A naive design uses the tokenizer's own template (the GGUF carries Qwen's); ChatML only if it has none.
    template_source = "tokenizer" if getattr(tokenizer, "chat_template", None) else "chatml-fallback"

    hf = _HF(model, tokenizer, chatml=template_source == "chatml-fallback")
    render, generate = hf.render, hf.generate

    cpu = CpuShare(threads).start()
    # --- sentiment by generate + parse --------------------------------------------------------------------
    _say(progress, f"seed: classifying {n_classify} messages with generate(max_new_tokens=10)")
    with Timer() as warm:
        generate(render(classify_messages("Just a quick hello.")), max_new_tokens=10, do_sample=False)
    classify_ms: list[float] = []
    outputs: list[str] = []
    strict_ok = 0
    parsed = 0
    correct = 0
    classify_prompt_tokens: list[int] = []
    for i in range(n_classify):
        idx = i % len(messages)
        with Timer() as t:
            new_ids, n_prompt = generate(render(classify_messages(messages[idx])), max_new_tokens=10, do_sample=False)
            text = tokenizer.decode(new_ids, skip_special_tokens=True)
        classify_ms.append(t.ms)
        classify_prompt_tokens.append(n_prompt)
        outputs.append(text)
        label, strict = parse_sentiment(text)
        strict_ok += strict
        if label is not None:
            parsed += 1
            if labels is not None and label == labels[idx]:
                correct += 1

    # --- replies: whole 10-turn history re-encoded every time -------------------------------------------
    reply_prompt = render(reply_messages(history, reply_message))
    prompt_matches_chatml = reply_prompt == render_chatml(reply_messages(history, reply_message)) and render(
        classify_messages(messages[0])
    ) == render_chatml(classify_messages(messages[0]))
    ttft_ms: list[float] = []
    ttft_gen1_ms: list[float] = []
    decode_tok_s: list[float] = []
    reply_total_ms: list[float] = []
    prompt_tokens = 0
    reply_text = ""
    for r in range(n_reply):
        _say(progress, f"seed: reply {r + 1}/{n_reply} (10-turn history, 128 new tokens)")
        clock = TokenClock()
        with Timer() as t:
            new_ids, prompt_tokens = generate(
                reply_prompt, max_new_tokens=128, min_new_tokens=128, do_sample=False, streamer=clock
            )
        n_new = int(new_ids.shape[0])
        first = clock.times[0] - t.start if clock.times and t.start is not None else float("nan")
        ttft_ms.append(first * 1000.0)
        reply_total_ms.append(t.ms)
        decode_tok_s.append((n_new - 1) / (t.seconds - first))
        if r == 0:
            reply_text = tokenizer.decode(new_ids, skip_special_tokens=True)
        with Timer() as t1:
            generate(reply_prompt, max_new_tokens=1, do_sample=False)
        ttft_gen1_ms.append(t1.ms)

    cpu.stop()
    steady_rss = rss_mb()
    n = len(classify_ms)
    result: dict[str, Any] = {
        "baseline": "seed-recipe",
        "model": gguf.name,
        "weights": "GGUF dequantised to fp32 by transformers",
        "threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "chat_template": template_source,
        "prompts_match_chatml": prompt_matches_chatml,
        "import_s": _round(import_timer.seconds),
        "load_s": _round(load_timer.seconds),
        "rss_before_load_mb": _round(rss_before_load, 1),
        "load_peak_rss_mb": _round(sampler.peak_mb, 1),
        "load_peak_rss_sampled_mb": _round(sampler.sampled_peak_mb, 1),
        "load_peak_rss_vmhwm_mb": None if sampler.hwm_peak_mb is None else _round(sampler.hwm_peak_mb, 1),
        "load_peak_method": sampler.method,
        "rss_after_load_mb": _round(rss_after_load, 1),
        "classify_n": n,
        "classify_warmup_ms": _round(warm.ms, 1),
        "classify_ms_p50": _round(median(classify_ms), 1),
        "classify_ms_p95": _round(percentile(classify_ms, 95), 1),
        "classify_ms_max": _round(max(classify_ms), 1),
        "classify_prompt_tokens_p50": median(classify_prompt_tokens),
        "classify_parse_fail_rate": _round((n - parsed) / n, 3),
        "classify_strict_fail_rate": _round((n - strict_ok) / n, 3),
        "classify_accuracy": None if labels is None else _round(correct / n, 3),
        "classify_outputs": outputs,
        "prompt_tokens_10_turns": prompt_tokens,
        "ttft_ms_10_turns": _round(median(ttft_ms), 1),
        "ttft_method": "streamer timestamp of the first new token inside the 128-token generate() (median)",
        "ttft_ms_10_turns_gen1": _round(median(ttft_gen1_ms), 1),
        "decode_tok_s": _round(median(decode_tok_s)),
        "decode_method": "(128-1)/(generate wall time - ttft), greedy, min_new_tokens=128 (median of runs)",
        "reply_ms_128_tokens": _round(median(reply_total_ms), 1),
        "reply_n": n_reply,
        "reply_sample": reply_text,
        "steady_rss_mb": _round(steady_rss, 1),
        **_contention(cpu),
        "process_peak_rss_mb": _round(peak_rss_mb(), 1),
    }

    del render, generate, hf, model, tokenizer
    gc.collect()
    result["rss_after_free_mb"] = _round(rss_mb(), 1)
    return result


def run_llamacpp(
    gguf_path: str | os.PathLike[str],
    prompt_texts: Sequence[str],
    threads: int = 2,
    *,
    decode_tokens: int = 128,
    repeats: int = 3,
    progress: Progress | None = None,
) -> dict[str, Any] | None:
    """Measure the same GGUF with llama.cpp (``llama-cpp-python``), quantised as it is stored.

    ``prompt_texts[0]`` is the main prompt (the ~400-token 10-turn reply prompt): ``prompt_tok_s`` is its length
    over the time of ``llm.eval(tokens)`` after ``llm.reset()``; ``ttft_ms_32_tokens`` evaluates its first 32
    tokens and picks the first token. Decoding greedily picks the argmax of the logits with the end-of-turn
    tokens masked, feeding each token back with ``llm.eval([token])``, so exactly ``decode_tokens`` tokens are
    decoded; ``decode_tok_s`` is ``(decode_tokens - 1)`` over the time after the first token, as for the seed
    recipe. Every timing is the median of ``repeats`` runs after one warm-up. Further prompt texts only get a
    prompt-evaluation timing each.

    Returns ``{"skipped": reason}`` when ``llama_cpp`` cannot be imported.
    """
    if not prompt_texts:
        raise ValueError("prompt_texts must hold at least one prompt")
    try:
        import llama_cpp
    except Exception as exc:
        return {"skipped": f"llama-cpp-python is not installed (pip install llama-cpp-python): {exc!r}"}

    gguf = Path(gguf_path).expanduser().resolve()
    _say(progress, f"llama.cpp {llama_cpp.__version__}: loading {gguf.name}")
    rss_before = rss_mb()
    with PeakRssSampler() as sampler, Timer() as load_timer:
        llm = llama_cpp.Llama(
            model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False
        )
    rss_after_load = rss_mb()

    ops = _LlamaOps(llama_cpp, llm)
    tokens_of, greedy_token, timed_eval = ops.tokens_of, ops.greedy_token, ops.timed_eval

    cpu = CpuShare(threads).start()
    main_tokens = tokens_of(prompt_texts[0])
    short_tokens = main_tokens[:32]

    _say(progress, f"llama.cpp: prompt processing ({len(main_tokens)} tokens) x{repeats} after a warm-up")
    timed_eval(main_tokens)  # warm-up: first-touch of the weights, thread pool start
    eval_s = [timed_eval(main_tokens) for _ in range(repeats)]

    ttft_s: list[float] = []
    for _ in range(repeats):
        llm.reset()
        with Timer() as t:
            llm.eval(short_tokens)
            greedy_token()
        ttft_s.append(t.seconds)

    ttft_full_s: list[float] = []
    for _ in range(repeats):
        llm.reset()
        with Timer() as t:
            llm.eval(main_tokens)
            greedy_token()
        ttft_full_s.append(t.seconds)

    decode_rates: list[float] = []
    decode_text = ""
    for r in range(repeats):
        _say(progress, f"llama.cpp: greedy decode of {decode_tokens} tokens, run {r + 1}/{repeats}")
        generated, seconds = ops.greedy_decode(main_tokens, decode_tokens)
        decode_rates.append((len(generated) - 1) / seconds)
        if r == 0:
            decode_text = llm.detokenize(generated).decode("utf-8", errors="replace")

    other_prompts = []
    for text in prompt_texts[1:]:
        toks = tokens_of(text)
        other_prompts.append({"tokens": len(toks), "eval_ms": _round(median([timed_eval(toks)]) * 1000.0, 1)})

    cpu.stop()
    main_eval = median(eval_s)
    result: dict[str, Any] = {
        "baseline": "llama.cpp",
        "model": gguf.name,
        "weights": "GGUF as stored (quantised)",
        "llama_cpp_python": llama_cpp.__version__,
        "threads": threads,
        "n_ctx": 2048,
        "n_batch": 512,
        "load_s": _round(load_timer.seconds),
        "rss_before_load_mb": _round(rss_before, 1),
        "rss_mb_after_load": _round(rss_after_load, 1),
        "load_peak_rss_mb": _round(sampler.peak_mb, 1),
        "load_peak_method": sampler.method,
        "prompt_tokens": len(main_tokens),
        "prompt_eval_ms": _round(main_eval * 1000.0, 1),
        "prompt_tok_s": _round(len(main_tokens) / main_eval, 1),
        "prompt_tokens_10_turns": len(main_tokens),
        "ttft_ms_10_turns": _round(median(ttft_full_s) * 1000.0, 1),
        "ttft_ms_32_tokens": _round(median(ttft_s) * 1000.0, 1),
        "ttft_method": "llm.reset(); llm.eval(prompt tokens: all, or the first 32); argmax of the last logits (median)",
        "decode_tok_s": _round(median(decode_rates)),
        "decode_tokens": decode_tokens,
        "stop_ids_masked": ops.stop_ids,
        "decode_method": (
            "low-level loop after eval(prompt): argmax of llama_get_logits_ith(ctx, -1) with EOS/<|im_end|>/"
            "<|endoftext|> masked, then llm.eval([token]); (tokens-1)/time after the first token (median)"
        ),
        "decode_sample": decode_text,
        "repeats": repeats,
        "other_prompts": other_prompts,
        "steady_rss_mb": _round(rss_mb(), 1),
        **_contention(cpu),
    }
    if hasattr(llm, "close"):
        llm.close()
    del tokens_of, greedy_token, timed_eval, ops, llm
    gc.collect()
    return result


def _run_isolated(part: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one baseline in a child process (fresh memory figures) and return its JSON dict."""
    cmd = [
        sys.executable,
        "-m",
        "bench.baselines",
        "--model",
        str(args.model),
        "--only",
        part,
        "--threads",
        str(args.threads),
        "--no-isolate",
    ]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        return {"error": f"{part} child exited with {proc.returncode}"}
    return json.loads(proc.stdout)[part]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the baselines (``--quick`` for tiny counts) and print one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the .gguf file (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke check, not a measurement")
    parser.add_argument("--only", choices=("seed", "llamacpp", "both"), default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-isolate", action="store_true", help="run both in this process, one after the other")
    args = parser.parse_args(argv)
    if not args.model.expanduser().is_file():
        parser.error(f"model file not found: {args.model} (python scripts/fetch_models.py qwen)")

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    history = build_history(10)
    out: dict[str, Any] = {}
    parts = ("seed", "llamacpp") if args.only == "both" else (args.only,)
    for part in parts:
        if args.only == "both" and not args.no_isolate:
            out[part] = _run_isolated(part, args)
            continue
        with bench_lock() as waited:
            if waited.seconds > 0.5:
                progress(f"waited {waited.seconds:.0f} s for {BENCH_LOCK} (another benchmark was running)")
            out[part] = _run_part(part, args, history, progress)
        if out[part] is not None:
            out[part]["lock_wait_s"] = round(waited.seconds, 1)
    out["machine"] = cpu_description()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def _run_part(part: str, args: argparse.Namespace, history: list[tuple[str, str]], progress: Progress) -> Any:
    """One baseline in this process, with the counts ``--quick`` asks for."""
    if part == "seed":
        return run_seed_recipe(
            args.model,
            SAMPLE_MESSAGES,
            history,
            n_classify=4 if args.quick else 20,
            n_reply=1 if args.quick else 3,
            labels=SAMPLE_LABELS,
            threads=args.threads,
            progress=progress,
        )
    prompts = [reply_prompt_text(history), render_chatml(classify_messages(SAMPLE_MESSAGES[0]))]
    return run_llamacpp(args.model, prompts, threads=args.threads, repeats=1 if args.quick else 3, progress=progress)


if __name__ == "__main__":
    raise SystemExit(main())
