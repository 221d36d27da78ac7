"""The tensor-by-tensor GGUF loader gives the same model as transformers' own GGUF path, with less memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.loading.gguf_loader import load_gguf_model

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


def test_vocabulary_fields_are_dropped_before_the_first_weight_arrives(
    smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gguf

    from engine.loading import gguf_loader

    readers: list[gguf.GGUFReader] = []
    fields_at_first_weight: list[set[str]] = []

    class RecordingReader(gguf.GGUFReader):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            readers.append(self)

    set_parameter = gguf_loader.set_parameter

    def recording_set_parameter(model, name, value) -> None:
        if not fields_at_first_weight:
            fields_at_first_weight.append(set(readers[-1].fields))
        set_parameter(model, name, value)

    monkeypatch.setattr(gguf, "GGUFReader", RecordingReader)
    monkeypatch.setattr(gguf_loader, "set_parameter", recording_set_parameter)
    load_gguf_model(smollm2_gguf, torch.bfloat16)
    assert "tokenizer.ggml.tokens" in set(gguf.GGUFReader(str(smollm2_gguf)).fields)  # what a reader parses
    assert fields_at_first_weight and not any(name.startswith("tokenizer.") for name in fields_at_first_weight[0])
    assert any(name.startswith("general.") for name in fields_at_first_weight[0])  # only the vocabulary went
