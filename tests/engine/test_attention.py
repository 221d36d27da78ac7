"""The single-query decode attention agrees with SDPA, alone and inside a loaded model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from engine.kernels.attention import ATTENTION_IMPLEMENTATION, grouped_single_query_attention
from engine.loading.model import load_model
from engine.settings import EngineSettings


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_query_attention_matches_sdpa_with_grouped_heads(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, length, dim = 2, 14, 2, 37, 64
    query = torch.randn(batch, heads, 1, dim, generator=generator).to(dtype)
    key = torch.randn(batch, kv_heads, length, dim, generator=generator).to(dtype)
    value = torch.randn(batch, kv_heads, length, dim, generator=generator).to(dtype)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query.float(), key.float(), value.float(), scale=0.125, enable_gqa=True
    )
    got = grouped_single_query_attention(query, key, value, 0.125)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert got.shape == expected.shape
    torch.testing.assert_close(got.float(), expected, atol=tolerance, rtol=tolerance)
    # Each query head reads its own group's keys: moving the second group's keys changes only heads 7-13.
    key[:, 1] = torch.randn(batch, length, dim, generator=generator).to(dtype)
    moved = grouped_single_query_attention(query, key, value, 0.125)
    torch.testing.assert_close(moved[:, :7], got[:, :7])
    assert (moved[:, 7:].float() - got[:, 7:].float()).abs().max() > 0.05


def test_loaded_model_uses_it_and_decodes_like_sdpa(tiny_model_dir: Path) -> None:
    loaded = load_model(EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1))
    assert loaded.model.config._attn_implementation == ATTENTION_IMPLEMENTATION
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    prompt = torch.tensor([[5, 17, 42, 99, 7, 3, 64, 12]])
    with torch.inference_mode():
        logits = {}
        for name, model in (("ours", loaded.model), ("sdpa", reference)):
            cache = DynamicCache()
            model(input_ids=prompt, cache=cache, use_cache=True)
            steps = [model(input_ids=torch.tensor([[t]]), cache=cache, use_cache=True).logits
                     for t in (11, 23, 31)]
            logits[name] = torch.cat(steps, dim=1)
    torch.testing.assert_close(logits["ours"], logits["sdpa"], atol=1e-5, rtol=1e-5)
