"""int8 products one layer shape at a time: the AVX2 kernel against oneDNN and torch's weight-only kernel.

    python -m bench.kernels                 # the Qwen2.5 0.5B shapes, 2 threads
    python -m bench.kernels --rounds 7 --threads 1

Each shape's weights are random and copied until they fill ``--megabytes`` (more than any cache), and the calls walk
through the copies, so every call reads its weights from memory, as a decode step does. The kernels take turns call
by call (alternating), and a figure is the median over rounds of each kernel's mean time per call. GB/s counts the
int8 weight bytes read per call. The CPU (vector features, chosen int8 kernel) is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.measure import cpu_description
from engine.kernels import native
from engine.kernels.activations import quantize_rows_of_activations
from engine.kernels.int8 import COMPUTE_DTYPE, Int8Linear, quantize_rows

# (name, out, in) of the Qwen2.5 0.5B layers as moodbot runs them (q/k/v and gate/up fused) and its output head.
SHAPES = (("q, k, v", 1152, 896), ("o", 896, 896), ("gate, up", 9728, 896), ("down", 896, 4864))
HEAD = ("output head", 151936, 896)


def _timed(calls: list[Callable[[], Any]], rounds: int) -> list[float]:
    """Median over ``rounds`` of each callable's mean ms per call, the callables taking turns within a round."""
    per_round: list[list[float]] = [[] for _ in calls]
    repeats = 20
    for _ in range(rounds):
        totals = [0.0] * len(calls)
        for _ in range(repeats):
            for index, call in enumerate(calls):
                started = time.perf_counter()
                call()
                totals[index] += time.perf_counter() - started
        for index, total in enumerate(totals):
            per_round[index].append(total / repeats * 1000)
    return [statistics.median(times) for times in per_round]


def _layers(out: int, width: int, megabytes: int, kernel: bool) -> list[Int8Linear]:
    """Copies of one random layer, enough to fill ``megabytes``; packed for the AVX2 kernel or for oneDNN."""
    weight, scales = quantize_rows(torch.randn(out, width) * 0.05)
    copies = max(2, megabytes * 2**20 // (out * width))
    layers = []
    for _ in range(copies):
        layer = Int8Linear(weight.clone(), scales.clone(), None)
        layer.pack(native_kernel=kernel)
        layers.append(layer)
    return layers


def _cycling(layers: list[Int8Linear], call: Callable[[Int8Linear], Any]) -> Callable[[], Any]:
    position = [0]

    def next_call() -> Any:
        position[0] = (position[0] + 1) % len(layers)
        return call(layers[position[0]])

    return next_call


def measure(rows_list: tuple[int, ...], rounds: int, megabytes: int) -> list[dict[str, Any]]:
    """One result per (shape, rows): ms per call and GB/s of weights for each kernel."""
    kernel = native.avx2_int8()
    if kernel is None:
        raise SystemExit("the AVX2 kernel is not chosen on this CPU (see `moodbot doctor`): nothing to compare")
    results = []
    for name, out, width in SHAPES:
        ours, theirs = _layers(out, width, megabytes, True), _layers(out, width, megabytes, False)
        for rows in rows_list:
            activations = quantize_rows_of_activations(torch.randn(rows, width))
            times = _timed([
                _cycling(ours, lambda layer, a=activations: layer.forward_quantized(a, torch.float32)),
                _cycling(theirs, lambda layer, a=activations: layer.forward_quantized(a, torch.float32)),
            ], rounds)
            results.append(_row(name, out, width, rows, {"AVX2 kernel": times[0], "oneDNN": times[1]}))
        del ours, theirs
    name, out, width = HEAD
    head = [Int8Linear(*quantize_rows(torch.randn(out, width) * 0.05), None)]  # 136 MB: more than any cache
    for rows in (1, 4, 16):  # one chat, a few, and the many-chat decode step
        x = torch.randn(rows, width).to(COMPUTE_DTYPE)
        times = _timed([
            _cycling(head, lambda layer, x=x: kernel.weight_only_matmul(
                x, layer.weight_int8, layer.float_weight_scales())),
            _cycling(head, lambda layer, x=x: torch.ops.aten._weight_int8pack_mm(x, layer.weight_int8, layer.scales)),
        ], rounds)
        results.append(_row(name, out, width, rows, {"AVX2 weight-only": times[0], "torch weight-only": times[1]}))
    return results


def _row(name: str, out: int, width: int, rows: int, times: dict[str, float]) -> dict[str, Any]:
    gigabytes = out * width / 1e9
    return {
        "shape": f"{name} ({out} x {width})", "rows": rows,
        "ms": {kernel: round(ms, 3) for kernel, ms in times.items()},
        "weights_GB_per_s": {kernel: round(gigabytes / (ms / 1000), 1) for kernel, ms in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 25])
    parser.add_argument("--megabytes", type=int, default=256, help="weights cycled through per shape")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        results = measure(tuple(args.rows), args.rounds, args.megabytes)
    print(json.dumps({"machine": cpu_description(), "threads": args.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
