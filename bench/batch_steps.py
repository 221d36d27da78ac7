"""One decode step of many chats together: the general step against the packed int8 step, in one process.

    python -m bench.batch_steps                      # 16 chats, 200 cached tokens each, int8, 2 threads
    python -m bench.batch_steps --chats 4
    MOODBOT_NATIVE_KERNEL=off python -m bench.batch_steps   # oneDNN doing the products, as on VNNI CPUs

Both steps run on the same loaded model: ``DecodeStep`` (the model's own modules in bf16, each packed projection
quantising its input) and ``PackedDecodeStep`` (float32 residual stream, folded norms, per-row scales), which is what
the worker uses for a batch. Each round measures both, in alternating order, on a fresh cache filled by one prompt
pass; a figure is the median over rounds of the mean ms per step. The CPU (vector features, int8 kernel) is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.baselines import DEFAULT_MODEL
from bench.measure import cpu_description


def _ms_per_step(model: torch.nn.Module, step: Callable[..., torch.Tensor], chats: int, cached: int,
                 steps: int) -> float:
    from transformers import DynamicCache

    prompt = torch.randint(3, 1000, (chats, cached), generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(3, 1000, (chats, 1), generator=torch.Generator().manual_seed(1))
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=prompt, cache=cache, use_cache=True)
        step(tokens, torch.full((chats, 1), cached), cache)  # first-call set-up, not timed
        started = time.perf_counter()
        for position in range(cached + 1, cached + 1 + steps):
            step(tokens, torch.full((chats, 1), position), cache)
        return (time.perf_counter() - started) / steps * 1000


def measure(model_path: Path, chats: int, cached: int, steps: int, rounds: int, threads: int) -> dict[str, Any]:
    """Median ms per step of both steps (see the module docstring)."""
    from engine.loading.model import load_model
    from engine.settings import EngineSettings

    loaded = load_model(EngineSettings(model=str(model_path), precision="int8", threads=threads))
    paths = loaded.paths
    if paths.decode_step is None or paths.packed_step is None:
        raise SystemExit("this model has no packed int8 layers here (no oneDNN and no AVX2 kernel)")
    contenders = {"general step": paths.decode_step, "packed step": paths.packed_step}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(rounds):
        names = list(contenders) if index % 2 == 0 else list(reversed(contenders))
        for name in names:
            times[name].append(_ms_per_step(loaded.model, contenders[name], chats, cached, steps))
    result: dict[str, Any] = {"machine": cpu_description(), "chats": chats, "cached_tokens": cached}
    for name, values in times.items():
        median = statistics.median(values)
        result[name] = {"ms_per_step": round(median, 1), "tok_s": round(chats * 1000 / median, 1),
                        "rounds": [round(v, 1) for v in values]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--chats", type=int, default=16)
    parser.add_argument("--cached", type=int, default=200, help="tokens already in each chat's cache")
    parser.add_argument("--steps", type=int, default=12, help="steps timed per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, args.chats, args.cached, args.steps, args.rounds, args.threads), indent=1))


if __name__ == "__main__":
    main()
