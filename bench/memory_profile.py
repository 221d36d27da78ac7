"""Where the engine's resident memory goes, phase by phase, next to llama.cpp holding the same GGUF file.

    python -m bench.memory_profile                 # the Qwen2.5 0.5B stand-in, int8 (~2 min on 2 cores)
    python -m bench.memory_profile --quick         # 4 chats instead of 16

Three fresh processes, one after another: the engine through its life (imports, start, classifications, a burst of
chats), the tokenizer alone (so its share can be told apart from the weights'), and llama.cpp loading the same file
and decoding once (skipped with a message where llama-cpp-python is not installed). Every figure is taken once the
process is idle and glibc has handed freed memory back (``malloc_trim``), as the inference worker does when quiet.
Resident memory is split into anonymous memory (the process's own) and file-backed pages (shared library code, and
for llama.cpp the memory-mapped weights), and the engine's last phase is accounted for: weights, KV caches, the rest.
Prints a table and writes JSON to ``bench/results/memory.json``. Figures are MiB (kB / 1024), as in engine_bench.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.baselines import DEFAULT_MODEL, SAMPLE_MESSAGES

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"


def resident() -> dict[str, int]:
    """This process's resident memory right now, settled: MiB in all, anonymous, and file-backed."""
    from engine.loading.memory import release_freed_memory

    gc.collect()
    release_freed_memory()
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Rss", "Anonymous"):
            fields[name] = round(int(value.split()[0]) / 1024)
    return {"rss": fields["Rss"], "anonymous": fields["Anonymous"], "file": fields["Rss"] - fields["Anonymous"]}


def weight_bytes(loaded: Any) -> int:
    """Bytes of the loaded model's weights: its tensors, plus oneDNN's packed int8 matrices (opaque to torch)."""
    import torch

    from engine.kernels.int8 import Int8Linear

    modules = list(loaded.model.modules())
    step = loaded.paths.decode_step
    if step is not None:  # fused q/k/v and gate/up matrices live on the decode step, not in the model
        modules += [m for layer in step.layers for part in (layer.qkv, layer.gate_up) for m in part.modules()]
    storages: dict[int, int] = {}
    packed = 0
    for module in {id(m): m for m in modules}.values():
        for tensor in [*module._parameters.values(), *module._buffers.values()]:
            if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided:
                storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        if isinstance(module, Int8Linear) and module.packed is not None:
            packed += module.in_features * module.out_features
    return sum(storages.values()) + packed


def _engine_phases(model: str, chats: int) -> dict[str, Any]:
    phases: dict[str, Any] = {"python": resident()}
    import torch  # noqa: F401

    phases["import torch"] = resident()
    from transformers import AutoModelForCausalLM, PreTrainedModel  # noqa: F401

    from engine import EngineSettings, LocalEngine
    from engine.local.worker import IDLE_TRIM_DELAY_S

    phases["import transformers' model code and the engine"] = resident()

    async def life() -> dict[str, Any]:
        settings = EngineSettings(model=model, precision="int8", threads=2, temperature=0.0, max_new_tokens=64,
                                  max_active_replies=16)
        engine = LocalEngine(settings)
        await engine.start()
        await asyncio.sleep(IDLE_TRIM_DELAY_S + 1)
        phases["engine started (model, tokenizer, prompt prefixes)"] = resident()
        for text in SAMPLE_MESSAGES:
            await engine.classify(text)
        await asyncio.gather(*(engine.classify(text) for text in SAMPLE_MESSAGES[:8]))
        await asyncio.sleep(IDLE_TRIM_DELAY_S + 1)
        phases["after 28 classifications"] = resident()
        await asyncio.gather(*(_chat(engine, i) for i in range(chats)))
        await asyncio.sleep(IDLE_TRIM_DELAY_S + 1)
        phases[f"after {chats} chats replying at once"] = resident()
        loaded = engine.loaded
        analyst = engine._worker.classify_batch.__self__  # type: ignore[union-attr]
        pinned = engine.prompt_cache.pinned
        packed_prefix = getattr(analyst.prompt_pass, "prefix_float", [])  # the packed pass's float32 copy
        held = {
            "weights": weight_bytes(loaded),
            "conversation KV caches (prompt cache)": engine.prompt_cache.total_bytes,
            "fixed prompt prefixes (analyst, companion)": analyst.prefix.nbytes() + (pinned.nbytes if pinned else 0)
            + sum(k.numel() * k.element_size() * 2 for k, _ in packed_prefix),
        }
        await engine.close()
        return {name: round(size / 2**20) for name, size in held.items()}

    held = asyncio.run(life())
    return {"phases": phases, "held": held}


async def _chat(engine: Any, index: int) -> None:
    from engine import ChatTurn

    history = [ChatTurn("user", f"Hi, I am user number {index}."), ChatTurn("assistant", "Hello! How are you today?")]
    async for _ in engine.reply(history, f"Chat {index}: tell me something kind."):
        pass


def _tokenizer_alone(model: str) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, PreTrainedModel  # noqa: F401

    from engine.loading.model import drop_tokenizer_construction_leftovers, resolve_source

    source = resolve_source(model)
    before = resident()
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.directory, **kwargs)
    drop_tokenizer_construction_leftovers(tokenizer)
    after = resident()
    return {"tokenizer": after["anonymous"] - before["anonymous"]}


def _llamacpp(model: str) -> dict[str, Any]:
    if not model.endswith(".gguf"):
        return {"skipped": "the model is not a GGUF file"}
    try:
        from llama_cpp import Llama
    except ImportError:
        return {"skipped": "llama-cpp-python is not installed (pip install llama-cpp-python)"}
    before = resident()
    llm = Llama(model_path=model, n_ctx=2048, n_threads=2, verbose=False)
    loaded = resident()
    llm("Tell me a long story.", max_tokens=128, temperature=0.0)
    return {"import": before, "loaded": loaded, "after a 128-token reply": resident()}


def _child(part: str, model: str, chats: int) -> dict[str, Any]:
    if part == "engine":
        return _engine_phases(model, chats)
    if part == "tokenizer":
        return _tokenizer_alone(model)
    return _llamacpp(model)


def profile_table(result: dict[str, Any]) -> str:
    """The phases, the accounting of the last one and llama.cpp, as Markdown tables."""
    lines = ["| engine phase | RSS | anonymous | file-backed |", "|---|---:|---:|---:|"]
    for name, figures in result["engine"]["phases"].items():
        lines.append(f"| {name} | {figures['rss']} | {figures['anonymous']} | {figures['file']} |")
    phases = list(result["engine"]["phases"].values())
    imports, last = phases[2], phases[-1]
    held = {"tokenizer": result["tokenizer"]["tokenizer"], **result["engine"]["held"]}
    rest = last["anonymous"] - imports["anonymous"] - sum(held.values())
    lines += ["", "| anonymous memory after the last phase | MiB |", "|---|---:|",
              f"| Python, torch, transformers' model code (imports) | {imports['anonymous']} |"]
    lines += [f"| {name} | {size} |" for name, size in held.items()]
    lines += [f"| the rest (oneDNN's set-up matmuls, allocator, Python objects) | {rest} |",
              f"| file-backed (library code) | {last['file']} |", f"| **RSS** | **{last['rss']}** |"]
    llama = result["llamacpp"]
    if "skipped" in llama:
        lines += ["", f"llama.cpp: {llama['skipped']}"]
    else:
        lines += ["", "| llama.cpp, same GGUF | RSS | anonymous | file-backed (mapped weights, code) |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {name} | {f['rss']} | {f['anonymous']} | {f['file']} |" for name, f in llama.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three processes one after another, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--quick", action="store_true", help="4 chats instead of 16")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chats = 4 if args.quick else 16
    if args.child:
        print(json.dumps(_child(args.child, str(args.model), chats)))
        return 0
    if not args.model.exists():
        print(f"{args.model} not found: python scripts/fetch_models.py qwen", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result: dict[str, Any] = {"model": str(args.model), "chats": chats}
    for part in ("engine", "tokenizer", "llamacpp"):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory_profile", "--model", str(args.model), "--child", part,
             *(["--quick"] if args.quick else [])],
            stdout=subprocess.PIPE, text=True, check=True,
        )
        result[part] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.perf_counter() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(profile_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
