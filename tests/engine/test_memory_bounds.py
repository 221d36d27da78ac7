"""Memory a long-running bot must not accumulate or hold for nothing: oneDNN's cache of set-up matmuls is bounded,
and the tokenizer drops the Python copies it was built from."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from engine.kernels import int8 as quantize
from engine.loading.model import ONEDNN_PRIMITIVE_CACHE_CAPACITY, load_model
from engine.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[2]


def test_load_model_caps_the_onednn_cache_unless_the_environment_sets_it(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    load_model(EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1))
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_PRIMITIVE_CACHE_CAPACITY)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")  # the self-hoster's choice wins
    load_model(EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1))
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"


def test_loaded_tokenizer_drops_its_construction_copies_and_tokenises_the_same(tiny_model_dir: Path) -> None:
    as_built = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert len(as_built._vocab) > 100 and len(as_built._merges) > 100  # what transformers keeps after building
    tokenizer = load_model(EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1)).tokenizer
    assert not tokenizer._vocab and not tokenizer._merges
    text = "I feel happy and grateful today, 今天很好 🙂"
    ids = tokenizer.encode(text)
    assert ids == as_built.encode(text) and tokenizer.decode(ids) == as_built.decode(ids)
    assert tokenizer.get_vocab() == as_built.get_vocab()
    messages = [{"role": "user", "content": text}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) != ""


# Runs in a fresh process: oneDNN reads its cache size once, when the process sets up its first matmul.
_MANY_LENGTHS = """
import ctypes, gc, json, sys
from bench.measure import rss_mb
from engine.local.analyst import Analyst
from engine.loading.model import load_model
from engine.settings import EngineSettings
loaded = load_model(EngineSettings(model=sys.argv[1], precision="int8", threads=2))
analyst = Analyst(loaded.paths, loaded.tokenizer, calibrate=False)
def settled():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()
analyst.classify_batch(["hello"])
start = settled()
for n in range(1, 151):
    analyst.classify_batch(["word " * n])  # 150 messages, each of a length not seen before
print(json.dumps({"growth_mb": settled() - start}))
"""


@pytest.mark.skipif(not quantize.onednn_int8_available(), reason="only oneDNN's packed int8 matmuls are cached")
def test_classifying_messages_of_many_lengths_does_not_grow_memory_without_bound(smollm2_gguf: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ONEDNN_PRIMITIVE_CACHE_CAPACITY", None)
    result = subprocess.run([sys.executable, "-c", _MANY_LENGTHS, str(smollm2_gguf)], capture_output=True,
                            text=True, check=True, env=env, cwd=ROOT)
    growth = json.loads(result.stdout.strip().splitlines()[-1])["growth_mb"]
    print(f"RSS growth over 150 new message lengths: {growth:.0f} MB")
    # oneDNN's default (1,024 set-ups) measured +210 MB here; the bounded cache ~45 MB.
    assert growth < 100


def test_int8_model_from_a_folder_lets_go_of_the_checkpoint_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoModelForCausalLM

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")  # a path no other test's model has mapped
    # Stored in bf16, like the hub's Qwen checkpoints: loading in bf16 then copies nothing.
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(folder)
    checkpoint = str((folder / "model.safetensors").resolve())

    def mapped() -> bool:
        return checkpoint in Path("/proc/self/maps").read_text()

    bf16 = load_model(EngineSettings(model=str(folder), precision="bf16", threads=1))
    assert mapped(), "transformers reads a folder's weights through a memory map"
    del bf16
    gc.collect()
    loaded = load_model(EngineSettings(model=str(folder), precision="int8", threads=1))
    gc.collect()
    assert not mapped()
    norm = loaded.model.model.layers[0].input_layernorm.weight
    assert norm.dtype == torch.bfloat16 and not norm.requires_grad


def test_copying_tensors_off_the_checkpoint_keeps_shared_tensors_shared() -> None:
    from engine.loading.model import copy_float_tensors_off_checkpoint

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied, as a head and an embedding can be
    model.register_buffer("steps", torch.arange(3))  # not floating point: left as it is
    original, steps = model[0].weight, model.steps
    assert copy_float_tensors_off_checkpoint(model) == 3  # one shared weight, two biases
    assert model[1].weight is model[0].weight and model[0].weight is not original
    assert torch.equal(model[0].weight, original) and model.steps is steps
