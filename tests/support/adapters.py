"""Analyst adapter files for tests: random but non-trivial low-rank matrices for a tiny model, and the reference
they must match (transformers' forward of a plain fp32 copy with the updates merged into its weights)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from engine.adapters.file import AnalystAdapter, LoraPair
from engine.loading.fingerprint import fingerprint
from engine.roles.prompts import ADAPTED_ANALYST_PROMPT_VERSION, ADAPTED_LABEL_WORDS

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_PROJECTIONS = (*ATTENTION_PROJECTIONS, "gate_proj", "up_proj", "down_proj")
# Some of each fused group in each layer, none of others: partial q/k/v and gate/up updates are the tricky case.
MIXED: dict[int, tuple[str, ...]] = {
    0: ("q_proj", "v_proj", "gate_proj", "down_proj"),
    1: ("k_proj", "o_proj", "up_proj"),
}


def plain_model(model_dir: Path) -> PreTrainedModel:
    """The checkpoint as transformers loads it in fp32, untouched by moodbot's loading."""
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def projection(model: PreTrainedModel, layer: int, name: str) -> torch.nn.Linear:
    """A transformers model's projection ``name`` in decoder layer ``layer``."""
    block = model.model.layers[layer]
    return getattr(block.self_attn if name in ATTENTION_PROJECTIONS else block.mlp, name)


def random_adapter(
    model_dir: Path, model: PreTrainedModel, projections: Mapping[int, Iterable[str]], *,
    rank: int = 4, std: float = 0.2, scaling: float = 2.0, seed: int = 0, zero_b: bool = False,
    base_fingerprint: str | None = None, prompt_version: int = ADAPTED_ANALYST_PROMPT_VERSION,
) -> AnalystAdapter:
    """An adapter for ``model`` (loaded from ``model_dir``) on ``projections`` (layer -> names). With ``zero_b`` it
    changes nothing (B = 0, as peft initialises it)."""
    generator = torch.Generator().manual_seed(seed)
    pairs = {}
    for layer, names in projections.items():
        for name in names:
            linear = projection(model, layer, name)
            a = torch.randn(rank, linear.in_features, generator=generator) * std
            b = torch.randn(linear.out_features, rank, generator=generator) * std
            pairs[(layer, name)] = LoraPair(a, torch.zeros_like(b) if zero_b else b)
    return AnalystAdapter(
        base_model=str(model_dir),
        base_fingerprint=base_fingerprint or fingerprint(model_dir),
        prompt_version=prompt_version,
        labels=("positive", "neutral", "negative"),
        label_words=dict(ADAPTED_LABEL_WORDS),
        scaling=scaling,
        pairs=pairs,
        recipe={"made by": "tests"},
    )


@torch.no_grad()
def merge(model: PreTrainedModel, adapter: AnalystAdapter) -> PreTrainedModel:
    """``model`` with every update merged into its weights: W + scaling * B @ A (in place; returns it)."""
    for (layer, name), pair in adapter.pairs.items():
        projection(model, layer, name).weight += adapter.scaling * pair.b @ pair.a
    return model


@torch.no_grad()
def last_logits(model: PreTrainedModel, ids: list[int], token_ids: list[int]) -> torch.Tensor:
    """Logits of ``token_ids`` at the last position of the prompt ``ids``, by transformers' plain forward."""
    return model(input_ids=torch.tensor([ids])).logits[0, -1, token_ids].float()
