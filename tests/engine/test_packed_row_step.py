"""The single-chat int8 decode step (kernels/decode.py) computes what the general decode step computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import rotate_half

from engine.kernels import int8 as quantize
from engine.kernels import native
from engine.kernels.paths import FastPaths
from engine.kernels.rotary import rotation_matrix
from engine.loading.model import load_model
from engine.settings import EngineSettings

needs_onednn = pytest.mark.skipif(
    not quantize.onednn_int8_available(), reason="this torch build has no oneDNN int8 matmul (packed int8 only)"
)


def test_rotation_matrix_applies_the_rotary_embedding() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 64, generator=generator)
    angles = torch.rand(64, generator=generator) * 6.0
    cos, sin = angles.cos(), angles.sin()
    torch.testing.assert_close(x @ rotation_matrix(cos, sin), x * cos + rotate_half(x) * sin)


def _steps(paths: FastPaths, model: torch.nn.Module, prompt: list[int], tokens: list[int], packed_row: bool):
    step = paths.decode if packed_row else paths.decode_step  # the general step even for a single chat
    assert step is not None
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        logits = [step(torch.tensor([[t]]), torch.tensor([[len(prompt) + i]]), cache) for i, t in enumerate(tokens)]
    return torch.cat(logits), cache


@needs_onednn
def test_single_chat_int8_step_takes_the_packed_path_and_agrees_with_the_general_step(tiny_model_dir: Path) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    step = loaded.paths
    assert step.packed_step is not None and step.decode_step is not None
    assert step.packed_step.head is step.decode_step.head  # one output head (and one int8 twin of it) for both
    prompt, tokens = [5, 17, 42, 99, 7, 3, 64, 12], [11, 23, 31, 2, 77]
    lean, lean_cache = _steps(step, loaded.model, prompt, tokens, packed_row=True)
    general, general_cache = _steps(step, loaded.model, prompt, tokens, packed_row=False)
    torch.testing.assert_close(lean, general, atol=2e-2, rtol=2e-2)
    assert lean_cache.get_seq_length() == general_cache.get_seq_length() == len(prompt) + len(tokens)
    for ours, theirs in zip(lean_cache.layers, general_cache.layers, strict=True):
        assert ours.keys.dtype == theirs.keys.dtype == quantize.COMPUTE_DTYPE
        torch.testing.assert_close(ours.keys.float(), theirs.keys.float(), atol=3e-2, rtol=3e-2)
        torch.testing.assert_close(ours.values.float(), theirs.values.float(), atol=3e-2, rtol=3e-2)


def test_no_packed_path_without_onednn_or_outside_int8(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bf16 = load_model(EngineSettings(model=str(tiny_model_dir), precision="bf16", threads=1))
    assert bf16.paths.packed_step is None
    monkeypatch.setattr(quantize, "onednn_int8_available", lambda: False)  # weight-only int8, as on ARM
    monkeypatch.setattr(native, "avx2_int8", lambda: None)  # nor the AVX2 kernel
    weight_only = load_model(EngineSettings(model=str(tiny_model_dir), precision="int8", threads=1))
    assert weight_only.paths.packed_step is None


def _distance(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """Mean KL(reference || other) of the next-token distributions, and how often the top tokens agree."""
    ref_log, other_log = torch.log_softmax(reference, dim=-1), torch.log_softmax(other, dim=-1)
    kl = (ref_log.exp() * (ref_log - other_log)).sum(dim=-1).mean()
    return float(kl), float((reference.argmax(dim=-1) == other.argmax(dim=-1)).float().mean())


@needs_onednn
def test_real_model_packed_path_is_as_close_to_fp32_as_the_general_int8_step(smollm2_gguf: Path) -> None:
    reference = load_model(EngineSettings(model=str(smollm2_gguf), precision="fp32", threads=2))
    tokenizer = reference.tokenizer
    prompt = list(tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about your favourite season."}], add_generation_prompt=True,
        tokenize=True, return_dict=False,
    ))
    reply = tokenizer.encode("I love autumn: the leaves turn red and gold, and the air smells of rain.")
    expected, _ = _steps(reference.paths, reference.model, prompt, reply, packed_row=False)
    del reference
    loaded = load_model(EngineSettings(model=str(smollm2_gguf), precision="int8", threads=2))
    step = loaded.paths
    assert step.packed_step is not None and step.decode_step is not None
    assert step.packed_step.head is step.decode_step.head  # one output head (and one int8 twin of it) for both
    lean, _ = _steps(step, loaded.model, prompt, reply, packed_row=True)
    general, _ = _steps(step, loaded.model, prompt, reply, packed_row=False)
    lean_kl, lean_agreement = _distance(expected, lean)
    general_kl, general_agreement = _distance(expected, general)
    print(f"to fp32 over {len(reply)} tokens: packed path KL {lean_kl:.4f} top-1 {lean_agreement:.2f}; "
          f"general int8 step KL {general_kl:.4f} top-1 {general_agreement:.2f}")
    # Both are int8 (the 135M model moves ~0.03 from fp32 either way); the packed path must not be the worse one.
    assert lean_kl <= 1.25 * general_kl + 0.005
    assert lean_agreement >= general_agreement - 0.1
