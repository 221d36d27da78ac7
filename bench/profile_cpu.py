"""Where the time goes: torch's profiler around moodbot's single-chat decode and one-at-a-time classification.

    python -m bench.profile_cpu                      # int8, the Qwen2.5 0.5B stand-in, 2 threads
    python -m bench.profile_cpu --precision fp32 --tokens 32
    python -m bench.profile_cpu --chats 1             # without the 16 chats decoding together

Each operator's self time is put in one bucket (int8 products, weight-only int8 products, quantising
activations, attention, norms and element-wise work, copies); "outside operators" is the wall time no operator
accounts for: Python, the dispatcher, the sampler. A figure is one run on this machine (the CPU is printed with
it): read it as shares, not as a speed. The speed figures come from ``bench.interleaved``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.baselines import DEFAULT_MODEL, SAMPLE_MESSAGES, build_history, reply_prompt_text
from bench.measure import cpu_description

# Operator name fragments -> bucket; the first match wins (checked in this order).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("int8 products (AVX2 kernel)", ("moodbot::avx2_int8",)),
    ("int8 x int8 output head (AVX2 kernel)", ("moodbot::avx2_head_int8",)),
    ("weight-only int8 products", ("moodbot::avx2_weight_only", "_weight_int8pack_mm")),
    ("int8 products (oneDNN packed)", ("onednn::qlinear", "qlinear", "mkldnn", "onednn")),
    ("int8 products (torch._int_mm)", ("_int_mm",)),
    ("float products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("quantising activations", ("moodbot::avx2_quantize", "aten::round", "aten::clamp", "aten::amax",
                                "aten::aminmax", "aten::quantize", "aten::_to_copy", "aten::to", "aten::abs",
                                "aten::div")),
    ("attention", ("scaled_dot_product", "_flash_attention", "aten::softmax", "aten::_softmax")),
    ("norms, rotary, element-wise", ("aten::mul", "aten::add", "aten::rsqrt", "aten::pow", "aten::mean",
                                     "aten::silu", "aten::neg", "aten::cat", "aten::sub", "aten::sigmoid")),
    ("copies and views", ("aten::copy_", "aten::index", "aten::empty", "aten::slice", "aten::view",
                          "aten::transpose", "aten::contiguous", "aten::clone", "aten::reshape", "aten::select",
                          "aten::narrow", "aten::expand", "aten::unsqueeze", "aten::as_strided", "aten::t")),
)


def bucket_of(name: str) -> str:
    """The bucket an operator's self time counts in."""
    lowered = name.lower()
    for bucket, fragments in BUCKETS:
        if any(fragment in lowered for fragment in fragments):
            return bucket
    return "other operators"


def summarise(events: Any, wall_ms: float, units: int) -> dict[str, Any]:
    """Self CPU time per bucket (ms per unit) and the ten costliest operators, from a profiler's key averages."""
    buckets: dict[str, float] = defaultdict(float)
    top = []
    for event in events:
        self_ms = event.self_cpu_time_total / 1000
        buckets[bucket_of(event.key)] += self_ms
        top.append((self_ms, event.key, event.count))
    top.sort(reverse=True)
    accounted = sum(buckets.values())
    buckets["outside operators (Python, dispatch)"] = max(0.0, wall_ms - accounted)
    return {
        "wall_ms_per_unit": round(wall_ms / units, 2),
        "buckets_ms_per_unit": {k: round(v / units, 2) for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
        "top_operators": [
            {"op": key, "ms_per_unit": round(ms / units, 2), "calls_per_unit": round(count / units, 1)}
            for ms, key, count in top[:10]
        ],
    }


def label_native_products() -> None:
    """Let the profiler see the AVX2 kernel's calls (ctypes calls are no torch operator) as ``moodbot::avx2_int8``;
    only here, so the bot's own calls carry no profiler marks."""
    from torch.profiler import record_function

    from engine.kernels.native import Avx2Int8

    def labelled(method: Any, label: str) -> Any:
        def call(self: Avx2Int8, *args: Any, **kwargs: Any) -> Any:
            with record_function(label):
                return method(self, *args, **kwargs)

        return call

    Avx2Int8.matmul = labelled(Avx2Int8.matmul, "moodbot::avx2_int8")  # type: ignore[method-assign]
    Avx2Int8.weight_only_matmul = labelled(  # type: ignore[method-assign]
        Avx2Int8.weight_only_matmul, "moodbot::avx2_weight_only"
    )
    Avx2Int8.signed_matmul = labelled(Avx2Int8.signed_matmul, "moodbot::avx2_head_int8")  # type: ignore[method-assign]
    Avx2Int8.quantize_rows = labelled(Avx2Int8.quantize_rows, "moodbot::avx2_quantize")  # type: ignore[method-assign]
    Avx2Int8.quantize_row = labelled(Avx2Int8.quantize_row, "moodbot::avx2_quantize")  # type: ignore[method-assign]


async def _profile(model: Path, threads: int, precision: str, tokens: int, chats: int) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    label_native_products()

    from engine import EngineSettings, LocalEngine
    from engine.local.companion import ReplyStream
    from engine.local.sampling import SamplingSettings

    engine = LocalEngine(EngineSettings(model=str(model), precision=precision, threads=threads))
    await engine.start()
    loaded = engine.loaded
    prompt = loaded.tokenizer.encode(reply_prompt_text(build_history(10)), add_special_tokens=False)
    greedy = SamplingSettings(max_new_tokens=tokens + 1, temperature=0.0, repetition_penalty=1.0)

    def decode() -> dict[str, Any]:  # on the engine's worker thread, where the model lives
        stream = ReplyStream(loaded.paths, loaded.tokenizer, prompt, greedy, frozenset())
        stream.step()  # prefill and the first token, outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            started = time.perf_counter()
            while not stream.done:
                stream.step()
            wall_ms = (time.perf_counter() - started) * 1000
        steps = len(stream.generated) - 1
        return summarise(profiler.key_averages(), wall_ms, steps) | {"unit": "decode step", "steps": steps}

    tokens_per_chat = max(4, tokens // 4)

    def decode_together() -> dict[str, Any]:  # ``chats`` chats' decode steps as one batch, as the worker runs them
        from transformers import DynamicCache

        step = loaded.paths.decode  # what the worker runs for a batch of chats
        prompt_ids = torch.randint(3, 1000, (chats, 40), generator=torch.Generator().manual_seed(0))
        tokens = torch.randint(3, 1000, (chats, 1), generator=torch.Generator().manual_seed(1))
        cache = DynamicCache()
        with torch.inference_mode():
            loaded.model(input_ids=prompt_ids, cache=cache, use_cache=True)
            step(tokens, torch.full((chats, 1), 40), cache)  # outside the profile: first-call set-up
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                started = time.perf_counter()
                for position in range(41, 41 + tokens_per_chat):
                    step(tokens, torch.full((chats, 1), position), cache)
                wall_ms = (time.perf_counter() - started) * 1000
        return summarise(profiler.key_averages(), wall_ms, tokens_per_chat) | {
            "unit": f"decode step of {chats} chats together", "steps": tokens_per_chat}

    classify_batch = engine._worker.classify_batch  # the analyst itself, past the queue

    def classify() -> dict[str, Any]:
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            started = time.perf_counter()
            for text in SAMPLE_MESSAGES:
                classify_batch([text])
            wall_ms = (time.perf_counter() - started) * 1000
        return summarise(profiler.key_averages(), wall_ms, len(SAMPLE_MESSAGES)) | {"unit": "message"}

    await engine.call(decode)  # warm-up: first touch of the weights, one-off allocations
    await engine.call(lambda: [classify_batch([t]) for t in SAMPLE_MESSAGES[:3]])
    result = {
        "machine": cpu_description(), "precision": engine.settings.resolved_precision, "threads": threads,
        "torch": torch.__version__, "decode": await engine.call(decode), "classify": await engine.call(classify),
    }
    if chats > 1 and loaded.paths.decode_step is not None:
        result["decode_together"] = await engine.call(decode_together)
    await engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64, help="decode steps profiled")
    parser.add_argument("--chats", type=int, default=16, help="chats decoding together in the batched profile")
    args = parser.parse_args()
    result = asyncio.run(_profile(args.model, args.threads, args.precision, args.tokens, args.chats))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
