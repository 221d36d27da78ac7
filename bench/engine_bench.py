"""The engine benchmark: moodbot at each precision against the seed recipe and llama.cpp, in one run.

    python -m bench.engine_bench                      # full run on the Qwen2.5 0.5B GGUF (~20 min on 2 cores)
    python -m bench.engine_bench --quick              # smoke check with tiny counts
    python -m bench.engine_bench --precisions bf16    # only some precisions

Every part runs in its own child process, one after another, so memory figures start fresh and parts never compete
for the two cores. Then bench/interleaved.py plays the last precision against llama.cpp (decode) and the seed
recipe (classification) in alternating rounds, for ratios that a drifting machine speed cannot move. Prints the
tables and writes JSON to ``bench/results/engine.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.baselines import DEFAULT_MODEL, FOLLOW_UP_MESSAGE, SAMPLE_MESSAGES, build_history
from bench.measure import PeakRssSampler, bench_lock, cpu_description, median, percentile, rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"
CONCURRENCY = (1, 4, 16)


# -- moodbot -----------------------------------------------------------------------------------------------------


async def _moodbot(model: Path, precision: str, threads: int, quick: bool) -> dict[str, Any]:
    import torch

    from engine import ChatTurn, EngineSettings, LocalEngine
    from engine.local.companion import ReplyStream, reply_prompt_ids
    from engine.local.sampling import SamplingSettings
    from engine.local.worker import IDLE_TRIM_DELAY_S

    settings = EngineSettings(model=str(model), precision=precision, threads=threads, temperature=0.0,
                              max_new_tokens=128, max_active_replies=16, queue_size=256)
    engine = LocalEngine(settings)
    with PeakRssSampler() as load_memory:
        started = time.perf_counter()
        await engine.start()
        load_s = time.perf_counter() - started
    out: dict[str, Any] = {"precision": settings.resolved_precision, "load_s": round(load_s, 1),
                           "load_peak_rss_mb": round(load_memory.peak_mb), "rss_method": load_memory.method,
                           "rss_after_load_mb": round(rss_mb())}
    messages = SAMPLE_MESSAGES[:4] if quick else SAMPLE_MESSAGES
    await engine.classify(messages[0])  # warm-up
    latencies = []
    for text in messages:
        t0 = time.perf_counter()
        await engine.classify(text)
        latencies.append((time.perf_counter() - t0) * 1000)
    out["classify_ms_p50"] = round(median(latencies), 1)
    out["classify_ms_p95"] = round(percentile(latencies, 95), 1)
    t0 = time.perf_counter()
    await asyncio.gather(*(engine.classify(text) for text in messages[:8]))
    out["classify_ms_per_message_batch8"] = round((time.perf_counter() - t0) * 1000 / len(messages[:8]), 1)

    # Time to first token of the 11th turn: cold (only the system prompt cached) and in a running conversation.
    history = [ChatTurn(role, text) for role, text in build_history(10)]
    out["ttft_ms_10_turns_cold"] = round(await _ttft(engine, history, FOLLOW_UP_MESSAGE), 1)
    # In a running chat the 10th turn was the engine's own reply to the 9th, so its cache is still there.
    tenth = "".join([chunk async for chunk in engine.reply(history[:8], history[8].text)])
    conversation = [*history[:9], ChatTurn("assistant", tenth)]
    out["ttft_ms_10_turns_warm"] = round(await _ttft(engine, conversation, FOLLOW_UP_MESSAGE), 1)
    loaded = engine.loaded
    out["prompt_tokens_10_turns"] = len(reply_prompt_ids(loaded.tokenizer, history, FOLLOW_UP_MESSAGE, 10_000))

    # Single-stream decode speed of the model path (128 tokens, stops disabled so every run decodes all of them):
    # greedy, and with the default sampling settings a user gets (temperature, top-p, repetition penalty).
    def decode(sampling: SamplingSettings = engine.sampling) -> float:
        prompt = reply_prompt_ids(loaded.tokenizer, history[:2], "Tell me a long story.", 2048)
        generator = torch.Generator().manual_seed(0)
        stream = ReplyStream(loaded.paths, loaded.tokenizer, prompt, sampling, frozenset(), generator)
        stream.step()  # prefill
        t = time.perf_counter()
        while not stream.done:
            stream.step()
        return (len(stream.generated) - 1) / (time.perf_counter() - t)

    out["decode_tok_s"] = round(await engine.call(decode), 1)
    out["decode_tok_s_sampled"] = round(await engine.call(lambda: decode(SamplingSettings(max_new_tokens=128))), 1)

    # N chats asking at once: aggregate decode throughput and end-to-end latency per chat.
    loaded.stop_token_ids = frozenset()  # every reply decodes max_new_tokens
    # A reply's length comes from the settings (engine.reply caps it there), not from engine.sampling.
    reply_tokens = 32 if quick else 64
    engine.settings = dataclasses.replace(engine.settings, max_new_tokens=reply_tokens)
    engine.sampling = type(engine.sampling)(max_new_tokens=reply_tokens, temperature=0.0)
    for chats in CONCURRENCY if not quick else (1, 4):
        before = engine.tokens_generated
        t0 = time.perf_counter()
        ends = await asyncio.gather(*(_one_chat(engine, i) for i in range(chats)))
        wall = time.perf_counter() - t0
        generated = engine.tokens_generated - before
        assert generated == chats * reply_tokens, f"{generated} tokens for {chats} chats of {reply_tokens}"
        out[f"aggregate_tok_s_{chats}_chats"] = round(generated / wall, 1)
        out[f"p95_latency_s_{chats}_chats"] = round(percentile([e - t0 for e in ends], 95), 2)
    # The worker hands freed memory back once it has been idle for IDLE_TRIM_DELAY_S.
    await asyncio.sleep(IDLE_TRIM_DELAY_S + 1.0)
    out["steady_rss_mb"] = round(rss_mb())
    # What the prompt cache (conversations' KV caches, bounded by engine.prompt_cache_mb) holds at that moment.
    out["prompt_cache_mb_held"] = round(engine.prompt_cache.total_bytes / 2**20)
    # A long-running bot sees messages of every length; each new length sets up new matmuls (engine/loading/model.py).
    for n in range(1, 11 if quick else 101):
        await engine.classify("word " * n)
    await asyncio.sleep(IDLE_TRIM_DELAY_S + 1.0)
    out["rss_after_100_new_lengths_mb"] = round(rss_mb())
    await engine.close()
    return out


async def _ttft(engine: Any, history: Sequence[Any], message: str) -> float:
    t0 = time.perf_counter()
    stream = engine.reply(history, message)
    await anext(stream)
    elapsed = (time.perf_counter() - t0) * 1000
    await stream.aclose()
    return elapsed


async def _one_chat(engine: Any, index: int) -> float:
    from engine import ChatTurn

    history = [ChatTurn("user", f"Hi, I am user number {index}."), ChatTurn("assistant", "Hello! How are you today?")]
    async for _ in engine.reply(history, f"Chat {index}: tell me something kind."):
        pass
    return time.perf_counter()


# -- orchestration ------------------------------------------------------------------------------------------------


def _child(part: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.engine_bench", "--model", str(args.model), "--threads", str(args.threads),
           "--child", part]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        return {"error": f"{part} exited with {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_child(part: str, args: argparse.Namespace) -> dict[str, Any]:
    if part.startswith("moodbot-"):
        with bench_lock():
            return asyncio.run(_moodbot(args.model, part.removeprefix("moodbot-"), args.threads, args.quick))
    result = subprocess.run(
        [sys.executable, "-m", "bench.baselines", "--model", str(args.model), "--only", part, "--threads",
         str(args.threads), "--no-isolate", *(["--quick"] if args.quick else [])],
        stdout=subprocess.PIPE, text=True, check=True,
    )
    return json.loads(result.stdout)[part]


def _interleaved(args: argparse.Namespace) -> dict[str, Any]:
    """bench/interleaved.py at the last precision asked for: ratios from rounds taken seconds apart."""
    precision = args.precisions.split(",")[-1]
    cmd = [sys.executable, "-m", "bench.interleaved", "--model", str(args.model), "--threads", str(args.threads),
           "--precision", precision, "--rounds", "2" if args.quick else "5"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        return {"error": f"interleaved rounds exited with {proc.returncode}"}
    return json.loads(proc.stdout)


def interleaved_table(figures: dict[str, Any]) -> str:
    """The interleaved rounds as a Markdown table: each round's figures, then the medians."""
    if "error" in figures:
        return f"interleaved rounds: {figures['error']}"
    decode = "decode_vs_llamacpp" in figures
    lines = ["| round | seed classify ms | moodbot classify ms | speed-up |"
             + (" llama.cpp tok/s | moodbot tok/s | ratio |" if decode else ""),
             "|---" * (7 if decode else 4) + "|"]
    for index, r in enumerate(figures["rounds"]):
        cells = [str(index + 1), str(r["seed_classify_ms_p50"]), str(r["moodbot_classify_ms_p50"]),
                 str(figures["classify_speedup_vs_seed_per_round"][index])]
        if decode:
            cells += [str(r["llamacpp_decode_tok_s"]), str(r["moodbot_decode_tok_s"]),
                      str(figures["decode_vs_llamacpp_per_round"][index])]
        lines.append("| " + " | ".join(cells) + " |")
    medians = ["median", str(figures["seed_classify_ms_p50"]), str(figures["moodbot_classify_ms_p50"]),
               str(figures["classify_speedup_vs_seed"])]
    if decode:
        medians += [str(figures["llamacpp_decode_tok_s"]), str(figures["moodbot_decode_tok_s"]),
                    str(figures["decode_vs_llamacpp"])]
    lines.append("| " + " | ".join(medians) + " |")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios of each moodbot precision against the seed recipe and llama.cpp from the same run."""
    seed, llama = results.get("seed", {}), results.get("llamacpp") or {}
    ratios = {}
    for name, figures in results.items():
        if not name.startswith("moodbot-") or "error" in figures:
            continue
        ratios[name] = {
            "classify_speedup_vs_seed": _ratio(seed.get("classify_ms_p50"), figures.get("classify_ms_p50")),
            "ttft_speedup_vs_seed": _ratio(seed.get("ttft_ms_10_turns"), figures.get("ttft_ms_10_turns_warm")),
            "decode_vs_seed": _ratio(figures.get("decode_tok_s"), seed.get("decode_tok_s")),
            "decode_vs_llamacpp": _ratio(figures.get("decode_tok_s"), llama.get("decode_tok_s")),
            "aggregate16_vs_single": _ratio(figures.get("aggregate_tok_s_16_chats"), figures.get("decode_tok_s")),
        }
    return ratios


ROWS = [
    ("classification p50 ms", "classify_ms_p50", "classify_ms_p50"),
    ("classification p95 ms", "classify_ms_p95", "classify_ms_p95"),
    ("classification ms/msg, batch of 8", None, "classify_ms_per_message_batch8"),
    ("TTFT 10 turns (463 tokens), new chat ms", "ttft_ms_10_turns", "ttft_ms_10_turns_cold"),
    ("TTFT 10 turns, running chat ms", "ttft_ms_10_turns", "ttft_ms_10_turns_warm"),
    ("TTFT 32-token prompt ms", "ttft_ms_32_tokens", None),
    ("decode tok/s, one stream", "decode_tok_s", "decode_tok_s"),
    ("decode tok/s, one stream, default sampling", None, "decode_tok_s_sampled"),
    ("aggregate tok/s, 1 chat", None, "aggregate_tok_s_1_chats"),
    ("aggregate tok/s, 4 chats", None, "aggregate_tok_s_4_chats"),
    ("aggregate tok/s, 16 chats", None, "aggregate_tok_s_16_chats"),
    ("p95 latency s, 16 chats", None, "p95_latency_s_16_chats"),
    ("load s", "load_s", "load_s"),
    ("peak RSS while loading MB", "load_peak_rss_mb", "load_peak_rss_mb"),
    ("RSS after load, idle MB", None, "rss_after_load_mb"),
    ("steady RSS after the 16-chat test MB", "steady_rss_mb", "steady_rss_mb"),
    ("of which prompt cache (conversations' KV) MB", None, "prompt_cache_mb_held"),
    ("RSS after 100 more messages of new lengths MB", None, "rss_after_100_new_lengths_mb"),
]


def table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per figure, one column per part."""
    parts = [name for name in results if name not in ("machine", "ratios", "interleaved")]
    lines = ["| figure | " + " | ".join(parts) + " |", "|---" * (len(parts) + 1) + "|"]
    for label, seed_key, moodbot_key in ROWS:
        cells = []
        for part in parts:
            figures = results[part] or {}
            key = seed_key if part in ("seed", "llamacpp") else moodbot_key
            value = figures.get(key) if key else None
            if part == "llamacpp" and "running chat" in label:
                value = None  # llama-cpp-python keeps no cache across conversations here
            cells.append("–" if value is None else str(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every part in its own process, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: seed, llamacpp, interleaved")
    parser.add_argument("--table", action="store_true", help="print the table of the last run's JSON and stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table:
        saved = json.loads(RESULTS.read_text(encoding="utf-8"))
        print(table(saved))
        if "interleaved" in saved:
            print(interleaved_table(saved["interleaved"]))
        return 0
    if args.child:
        print(json.dumps(_run_child(args.child, args)))
        return 0
    if not args.model.is_file():
        parser.error(f"model not found: {args.model} (python scripts/fetch_models.py qwen)")
    parts = [p for p in ("seed", "llamacpp") if p not in args.skip.split(",")]
    parts += [f"moodbot-{p}" for p in args.precisions.split(",")]
    results: dict[str, Any] = {
        "machine": {**cpu_description(), "threads": args.threads,
                    "python": platform.python_version(), "model": args.model.name, "quick": args.quick},
    }
    for part in parts:
        print(f"[bench] {part} …", file=sys.stderr, flush=True)
        results[part] = _child(part, args)
    results["ratios"] = summarise(results)
    if "interleaved" not in args.skip.split(","):
        print("[bench] interleaved rounds …", file=sys.stderr, flush=True)
        results["interleaved"] = _interleaved(args)
    print(table(results))
    print(json.dumps(results["ratios"], indent=2))
    if "interleaved" in results:
        print(interleaved_table(results["interleaved"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"[bench] wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
