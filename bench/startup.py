"""Start-up: how long an int8 start takes with and without the prepared weights, each start a fresh process.

    python -m bench.startup                       # the Qwen2.5 0.5B GGUF, 2 rounds (~5 min on 2 cores)
    python -m bench.startup --rounds 3 --drop-caches

Each round runs three starts, one after another: with the prepared-weights cache off (the model is prepared from the
checkpoint, as at every start before the cache existed), the first start with an empty cache folder (preparing, then
writing the file) and a start from that file (memory-mapped). A start is ``load_model`` in a new process, then one
forward pass (the head then touches every row, so the process holds what a slow start holds). With
``--drop-caches`` (root only) the kernel's page cache is emptied before each start, as after a reboot, so the file is
read from disk rather than from memory. Prints the CPU, a table of medians and writes JSON to
``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.baselines import DEFAULT_MODEL
from bench.measure import bench_lock, cpu_description, median, peak_rss_mb, rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
STARTS = ("cache off", "first start, writing the file", "from the prepared file")


def _start(model: str, cache_dir: str, threads: int) -> dict[str, float]:
    """One start in this process: load the model, then one forward pass; seconds and MiB."""
    import torch

    from engine import EngineSettings
    from engine.loading.model import load_model

    settings = EngineSettings(model=model, precision="int8", threads=threads, prepared_cache_dir=cache_dir)
    with bench_lock():
        started = time.perf_counter()
        loaded = load_model(settings)
        load_s = time.perf_counter() - started
        after_load = round(rss_mb(), 1)
        ids = loaded.tokenizer.encode("How was your day?", add_special_tokens=False)
        with torch.inference_mode():
            loaded.paths.prompt_logits(ids)
        to_first_forward = time.perf_counter() - started
        return {
            "load_s": round(load_s, 2), "to_first_forward_s": round(to_first_forward, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_after_load_mb": after_load,
            "rss_after_forward_mb": round(rss_mb(), 1),
        }


def _drop_page_cache() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _child(model: Path, cache_dir: str, threads: int, drop_caches: bool) -> dict[str, float]:
    if drop_caches:
        _drop_page_cache()
    command = [sys.executable, "-m", "bench.startup", "--child", cache_dir, "--model", str(model),
               "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a start failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(model: Path, rounds: int, threads: int, drop_caches: bool) -> dict[str, Any]:
    """``rounds`` rounds of the three starts; every start's figures and the medians of each kind."""
    starts: dict[str, list[dict[str, float]]] = {name: [] for name in STARTS}
    for round_number in range(1, rounds + 1):
        with tempfile.TemporaryDirectory(prefix="moodbot-prepared-") as folder:
            for name, cache_dir in zip(STARTS, ("off", folder, folder), strict=True):
                print(f"[startup] round {round_number}: {name} …", file=sys.stderr, flush=True)
                starts[name].append(_child(model, cache_dir, threads, drop_caches))
            written = sum(f.stat().st_size for f in Path(folder).iterdir())
    medians = {name: {key: median([s[key] for s in runs]) for key in runs[0]} for name, runs in starts.items()}
    return {
        "machine": {**cpu_description(), "threads": threads, "model": model.name, "drop_caches": drop_caches},
        "prepared_file_mb": round(written / 2**20), "starts": starts, "medians": medians,
    }


def table(results: dict[str, Any]) -> str:
    """The medians as a Markdown table."""
    lines = ["| start (int8) | load_model s | to first forward s | peak RSS MiB | RSS after loading MiB | after one "
             "forward MiB |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in results["medians"].items():
        lines.append(f"| {name} | {m['load_s']:.1f} | {m['to_first_forward_s']:.1f} | {m['peak_rss_mb']:.0f} | "
                     f"{m['rss_after_load_mb']:.0f} | {m['rss_after_forward_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds (or, with --child, one start), print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--drop-caches", action="store_true", help="empty the page cache before each start (root)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_start(str(args.model), args.child, args.threads)))
        return 0
    if not args.model.is_file():
        parser.error(f"model not found: {args.model} (python scripts/fetch_models.py qwen)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results = run(args.model, args.rounds, args.threads, args.drop_caches)
    print(json.dumps(results["machine"]))
    print(f"prepared file: {results['prepared_file_mb']} MiB")
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"[startup] wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
