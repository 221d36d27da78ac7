"""A model folder's checkpoint read tensor by tensor into int8 gives the model that quantising after transformers'
from_pretrained gives, and a checkpoint it cannot map is left to from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from engine.kernels.int8 import Int8Embedding, quantize_model
from engine.loading.model import load_model
from engine.loading.safetensors_loader import load_safetensors_int8
from engine.settings import EngineSettings
from tests.support.tinymodel import build_tiny_qwen


@pytest.mark.parametrize("tied", [False, True], ids=["separate head", "tied head"])
def test_streamed_int8_load_matches_quantising_after_from_pretrained(tmp_path: Path, tied: bool) -> None:
    folder = build_tiny_qwen(tmp_path / "model", tie_word_embeddings=tied)
    if tied:
        assert "lm_head.weight" not in load_file(folder / "model.safetensors")  # transformers leaves it out
    streamed = load_safetensors_int8(folder)
    assert streamed is not None
    reference = quantize_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval())
    ids = torch.tensor([[3, 17, 42, 99, 5, 250]])
    with torch.inference_mode():
        assert torch.equal(streamed(ids).logits, reference(ids).logits)
    embedding, head = streamed.get_input_embeddings(), streamed.get_output_embeddings()
    assert isinstance(embedding, Int8Embedding)
    assert (head.weight_int8 is embedding.weight_int8) == tied
    assert not any(p.device.type == "meta" for p in streamed.parameters())
    assert streamed.generation_config.eos_token_id == reference.generation_config.eos_token_id
    assert not streamed.training


def test_checkpoint_with_other_names_is_left_to_from_pretrained(tmp_path: Path) -> None:
    folder = build_tiny_qwen(tmp_path / "model")
    tensors = load_file(folder / "model.safetensors")
    renamed = {name.replace("model.", "transformer.", 1): value for name, value in tensors.items()}
    save_file(renamed, folder / "model.safetensors", metadata={"format": "pt"})
    assert load_safetensors_int8(folder) is None
    assert load_safetensors_int8(tmp_path) is None  # no checkpoint at all
    # load_model still loads it, through from_pretrained (which reports the unexpected names and starts fresh).
    loaded = load_model(EngineSettings(model=str(folder), precision="int8", threads=1))
    assert isinstance(loaded.model.get_input_embeddings(), Int8Embedding)
