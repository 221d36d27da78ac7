"""The tensor-by-tensor GGUF loader gives the same model as transformers' own GGUF path, with less memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.gguf_loader import load_gguf_model

pytestmark = pytest.mark.real_model


def test_streaming_gguf_loader_matches_transformers(smollm2_gguf: Path) -> None:
    ours = load_gguf_model(smollm2_gguf, torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    )
    ids = torch.tensor([[1, 4093, 28, 253, 2234, 314, 260, 1345, 30, 2]])
    with torch.inference_mode():
        assert torch.equal(ours(ids).logits, reference(ids).logits)
    assert not any(p.device.type == "meta" for p in ours.parameters())
    assert ours.get_output_embeddings().weight is ours.get_input_embeddings().weight  # tied, stored once


def test_streaming_gguf_loader_in_bf16(smollm2_gguf: Path) -> None:
    model = load_gguf_model(smollm2_gguf, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.training
