"""Head to head in interleaved rounds: moodbot against llama.cpp (decode) and the seed recipe (classification).

    python -m bench.interleaved                       # 5 rounds, int8, ~5 min on 2 cores
    python -m bench.interleaved --rounds 7 --precision bf16

The main benchmark (bench/engine_bench.py) measures each part in its own process one after another, so a ratio
between two parts compares two time windows: on a shared machine whose speed drifts by 10-20% over minutes, that
moved the int8/llama.cpp decode ratio between 0.71 and 0.93 over six runs. Here all contenders are loaded at once,
each in its own process (one at a time, so loading peaks never overlap), and then take turns, so each round's ratio
compares measurements taken seconds apart; the order alternates every round, and only one process computes at a
time (the others wait on their stdin). Within a round each duel runs A-B-B-A, and each side's figure is the mean
of its two turns, so a steady drift within the round cancels. The headline figures are the medians of the
per-round ratios.

- decode: the same ~460-token 10-turn prompt for both; 128 tokens decoded greedily (no repetition penalty, stop
  tokens never end it), ``(tokens - 1) / time after the first token``, as in the main benchmark's llama.cpp part.
- classification: the 20 sample messages one at a time; the seed recipe's ``generate(max_new_tokens=10)`` step
  against ``engine.classify``; each turn's figure is the median over the 20 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from bench.baselines import (
    _HF,
    DEFAULT_MODEL,
    SAMPLE_MESSAGES,
    _LlamaOps,
    build_history,
    classify_messages,
    reply_prompt_text,
)
from bench.measure import bench_lock, cpu_description, median

DECODE_TOKENS = 128

# -- the contenders, each serving commands in its own process -------------------------------------------------


def _prompt_text() -> str:
    return reply_prompt_text(build_history(10))


def _serve(commands: dict[str, Callable[[], dict[str, Any]]], info: dict[str, Any]) -> None:
    """Print ``info`` as the ready line, then answer each command read from stdin with one JSON line."""
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            return
        print(json.dumps(commands[command]()), flush=True)


def serve_llamacpp(model: Path, threads: int) -> None:
    """llama.cpp (llama-cpp-python) on the GGUF as stored: ``decode``."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                          n_batch=512, verbose=False)
    ops = _LlamaOps(llama_cpp, llm)
    prompt = ops.tokens_of(_prompt_text())

    def decode() -> dict[str, Any]:
        generated, seconds = ops.greedy_decode(prompt, DECODE_TOKENS)
        return {"tok_s": (len(generated) - 1) / seconds}

    decode()  # warm-up: first touch of the weights
    _serve({"decode": decode}, {"prompt_tokens": len(prompt), "llama_cpp_python": llama_cpp.__version__})


def serve_seed(model: Path, threads: int) -> None:
    """The seed recipe (fp32 transformers, sentiment by ``generate(max_new_tokens=10)``): ``classify``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    hf_model = AutoModelForCausalLM.from_pretrained(str(model.parent), gguf_file=model.name, dtype=torch.float32)
    hf = _HF(hf_model.eval(), tokenizer, chatml=not getattr(tokenizer, "chat_template", None))

    def step(text: str) -> None:
        new_ids, _ = hf.generate(hf.render(classify_messages(text)), max_new_tokens=10, do_sample=False)
        tokenizer.decode(new_ids, skip_special_tokens=True)

    def classify() -> dict[str, Any]:
        return {"ms_p50": _median_ms(step, SAMPLE_MESSAGES)}

    step("Just a quick hello.")  # warm-up
    _serve({"classify": classify}, {})


def serve_moodbot(model: Path, threads: int, precision: str) -> None:
    """moodbot's engine at ``precision``: ``classify`` (``engine.classify``) and ``decode`` (a reply stream)."""
    asyncio.run(_serve_moodbot(model, threads, precision))


async def _serve_moodbot(model: Path, threads: int, precision: str) -> None:
    from engine import EngineSettings, LocalEngine
    from engine.local.companion import ReplyStream
    from engine.local.sampling import SamplingSettings

    engine = LocalEngine(EngineSettings(model=str(model), precision=precision, threads=threads))
    await engine.start()
    loaded = engine.loaded
    prompt = loaded.tokenizer.encode(_prompt_text(), add_special_tokens=False)
    greedy = SamplingSettings(max_new_tokens=DECODE_TOKENS, temperature=0.0, repetition_penalty=1.0)

    def decode() -> dict[str, Any]:  # runs on the engine's worker thread
        stream = ReplyStream(loaded.paths, loaded.tokenizer, prompt, greedy, frozenset())
        stream.step()  # prefill and the first token
        started = time.perf_counter()
        while not stream.done:
            stream.step()
        return {"tok_s": (len(stream.generated) - 1) / (time.perf_counter() - started)}

    async def classify() -> dict[str, Any]:
        latencies = []
        for text in SAMPLE_MESSAGES:
            started = time.perf_counter()
            await engine.classify(text)
            latencies.append((time.perf_counter() - started) * 1000)
        return {"ms_p50": median(latencies)}

    await engine.call(decode)  # warm-up
    await classify()
    print(json.dumps({"ready": True, "prompt_tokens": len(prompt), "precision": engine.settings.resolved_precision}),
          flush=True)
    while (line := (await asyncio.to_thread(sys.stdin.readline)).strip()) not in ("quit", ""):
        result = await engine.call(decode) if line == "decode" else await classify()
        print(json.dumps(result), flush=True)
    await engine.close()


def _median_ms(step: Callable[[str], None], texts: Sequence[str]) -> float:
    latencies = []
    for text in texts:
        started = time.perf_counter()
        step(text)
        latencies.append((time.perf_counter() - started) * 1000)
    return median(latencies)


# -- the referee ------------------------------------------------------------------------------------------------


class _Contender:
    """A serving child process: started, waited for until ready, then asked one command at a time."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        command = [sys.executable, "-m", "bench.interleaved", "--serve", name, "--model", str(args.model),
                   "--threads", str(args.threads), "--precision", args.precision]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._answer()

    def _answer(self) -> dict[str, Any]:
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        for line in stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.name} exited with {self.process.wait()} before answering")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)


def run(args: argparse.Namespace, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Load the contenders, play ``args.rounds`` rounds, return every round's figures and the medians."""
    try:
        import llama_cpp  # noqa: F401
        has_llamacpp = True
    except ImportError:
        has_llamacpp = False
    names = ["moodbot", "seed", *(["llamacpp"] if has_llamacpp else [])]
    contenders: dict[str, _Contender] = {}
    try:
        for name in names:
            progress(f"interleaved: loading {name}")
            contenders[name] = _Contender(name, args)
        rounds: list[dict[str, float]] = []
        for number in range(args.rounds):
            progress(f"interleaved: round {number + 1}/{args.rounds}")
            figures: dict[str, float] = {}
            duels = [("classify", "seed", "ms_p50"), *([("decode", "llamacpp", "tok_s")] if has_llamacpp else [])]
            for command, rival, key in duels:
                # A-B-B-A: each side's mean of two turns sits at the same point in time.
                first, second = (rival, "moodbot") if number % 2 == 0 else ("moodbot", rival)
                turns: dict[str, list[float]] = {first: [], second: []}
                for name in (first, second, second, first):
                    turns[name].append(contenders[name].ask(command)[key])
                for name, values in turns.items():
                    figures[f"{name}_{command}_{key}"] = round(sum(values) / len(values), 2)
            rounds.append(figures)
    finally:
        for contender in contenders.values():
            contender.close()
    return summarise(rounds, {name: c.info for name, c in contenders.items()}, args)


def summarise(rounds: list[dict[str, float]], info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per-round ratios and their medians (classification: seed ms / moodbot ms; decode: moodbot / llama.cpp)."""
    speedups = [r["seed_classify_ms_p50"] / r["moodbot_classify_ms_p50"] for r in rounds]
    result: dict[str, Any] = {
        "machine": cpu_description(),
        "precision": info["moodbot"].get("precision", args.precision), "threads": args.threads, "rounds": rounds,
        "classify_speedup_vs_seed_per_round": [round(s, 2) for s in speedups],
        "classify_speedup_vs_seed": round(median(speedups), 2),
        "seed_classify_ms_p50": round(median([r["seed_classify_ms_p50"] for r in rounds]), 1),
        "moodbot_classify_ms_p50": round(median([r["moodbot_classify_ms_p50"] for r in rounds]), 1),
    }
    if rounds and "llamacpp_decode_tok_s" in rounds[0]:
        ratios = [r["moodbot_decode_tok_s"] / r["llamacpp_decode_tok_s"] for r in rounds]
        result |= {
            "decode_vs_llamacpp_per_round": [round(x, 3) for x in ratios],
            "decode_vs_llamacpp": round(median(ratios), 3),
            "llamacpp_decode_tok_s": round(median([r["llamacpp_decode_tok_s"] for r in rounds]), 1),
            "moodbot_decode_tok_s": round(median([r["moodbot_decode_tok_s"] for r in rounds]), 1),
            "decode_prompt_tokens": {"moodbot": info["moodbot"]["prompt_tokens"],
                                     "llamacpp": info["llamacpp"]["prompt_tokens"]},
        }
    else:
        result["decode_skipped"] = "llama-cpp-python is not installed (pip install llama-cpp-python)"
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Referee by default; ``--serve NAME`` is how the referee starts each contender."""
    parser = argparse.ArgumentParser(prog="python -m bench.interleaved", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=("llamacpp", "seed", "moodbot"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve == "llamacpp":
        serve_llamacpp(args.model, args.threads)
    elif args.serve == "seed":
        serve_seed(args.model, args.threads)
    elif args.serve == "moodbot":
        serve_moodbot(args.model, args.threads, args.precision)
    else:
        if not args.model.is_file():
            parser.error(f"model not found: {args.model} (python scripts/fetch_models.py qwen)")
        with bench_lock():
            print(json.dumps(run(args, lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
