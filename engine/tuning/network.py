"""The base model as training uses it: loaded in float32, its decoder layers run by hand over a shared prefix.

With ``precision="bf16"`` the layers' products run in bf16 under CPU autocast; the weights, the LoRA matrices, the
optimiser's updates and the label logits stay float32. Where the CPU does bf16 natively (AVX-512 BF16 or AMX) a step
is about three times faster, but the adapters it trained were less accurate on the held-out sets than fp32's, so
fp32 is the default and bf16 a way to try recipes quickly (bench/RESULTS.md, "Training in bf16").

Only the upper layers carry the adapter, so the lower layers' output for a message never changes during training:
:func:`lower_features` computes it once per example (stored in bf16), and every step runs the upper layers only.
The prompt's fixed prefix goes through the upper layers once per batch; each message attends to its keys and
values, exactly as the analyst's prompt pass does at inference (the adapter changes the prefix's keys too).

The layer is written out (norm, projections, rotary, attention, MLP) rather than called through transformers'
forward, because that forward has no way to take a prefix computed once for a batch; the projections and norms
are the model's own modules, so peft's LoRA wrappers on them take part.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from engine.adapters.layout import AdaptedPromptLayout
from engine.errors import ModelLoadError
from engine.kernels.layer import unsupported_reason
from engine.loading.fingerprint import fingerprint
from engine.loading.model import load_checkpoint
from engine.loading.source import resolve_source
from engine.roles.chat_format import ensure_chat_template
from engine.settings import TRAINING_PRECISIONS, EngineSettings, cpu_has_fast_bf16

KeysValues = tuple[torch.Tensor, torch.Tensor]  # (1, kv_heads, prefix, head_dim) each
logger = logging.getLogger(__name__)


@dataclass
class TrainingModel:
    """The base model in float32 with its tokenizer, what identifies its weights, and the precision its products
    run in (``"fp32"`` or ``"bf16"``)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    fingerprint: str
    precision: str = "fp32"

    def computing(self) -> contextlib.AbstractContextManager:
        """A context in which the model's products run in this model's precision (bf16: under CPU autocast)."""
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers."""
        return self.model.model.layers


def training_precision(precision: str) -> str:
    """``precision`` checked (``"fp32"`` or ``"bf16"``), with a warning where bf16 would be slower than fp32: a CPU
    without native bf16 products emulates them."""
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"training precision must be one of {', '.join(TRAINING_PRECISIONS)}, not {precision!r}")
    if precision == "bf16" and not cpu_has_fast_bf16():
        logger.warning("this CPU has no native bf16 products (AVX-512 BF16 or AMX): training in bf16 will be "
                       "slower than in fp32, not faster")
    return precision


def load_training_model(spec: str, precision: str = "fp32") -> TrainingModel:
    """The model named by ``spec`` (hub id, folder or .gguf file) in float32, frozen, computing in ``precision``
    (``fp32`` or ``bf16``); ModelLoadError otherwise."""
    source = resolve_source(spec)
    try:
        model, tokenizer = load_checkpoint(source, EngineSettings(model=spec, precision="fp32"))
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelLoadError(f"cannot load model from {spec}: {str(exc).strip().splitlines()[0]}") from exc
    reason = unsupported_reason(model)
    if reason is not None:
        raise ModelLoadError(f"analyst adapters need a qwen2- or llama-shaped model; {spec} has {reason}")
    ensure_chat_template(tokenizer)
    model.eval()
    model.requires_grad_(False)
    return TrainingModel(model, tokenizer, spec, fingerprint(source.weights), training_precision(precision))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def run_layer(
    layer: nn.Module, hidden: torch.Tensor, rotary: KeysValues, prefix: KeysValues | None, mask: torch.Tensor | None
) -> tuple[torch.Tensor, KeysValues]:
    """One decoder layer over ``hidden`` (batch, tokens, hidden) after ``prefix``'s keys and values; returns the new
    hidden states and this pass's own keys and values. ``rotary``: cos and sin (batch or 1, tokens, head_dim);
    ``mask``: (1, 1, tokens, prefix + tokens) bool, or None for plain causal attention with no prefix."""
    attention = layer.self_attn
    batch, tokens, _ = hidden.shape
    head_dim = attention.head_dim
    normed = layer.input_layernorm(hidden)
    query = attention.q_proj(normed).view(batch, tokens, -1, head_dim).transpose(1, 2)
    key = attention.k_proj(normed).view(batch, tokens, -1, head_dim).transpose(1, 2)
    value = attention.v_proj(normed).view(batch, tokens, -1, head_dim).transpose(1, 2)
    cos, sin = (part[:, None] for part in rotary)
    query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
    own = (key, value)
    if prefix is not None:
        key = torch.cat([prefix[0].expand(batch, -1, -1, -1), key], dim=2)
        value = torch.cat([prefix[1].expand(batch, -1, -1, -1), value], dim=2)
    attended = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=mask is None, scale=attention.scaling, enable_gqa=True
    )
    hidden = hidden + attention.o_proj(attended.transpose(1, 2).reshape(batch, tokens, -1))
    hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return hidden, own


def prefix_mask(prefix_len: int, tokens: int) -> torch.Tensor:
    """(1, 1, tokens, prefix + tokens): every new token sees the whole prefix and the new tokens up to itself."""
    causal = torch.ones(tokens, tokens, dtype=torch.bool).tril()
    return torch.cat([torch.ones(tokens, prefix_len, dtype=torch.bool), causal], dim=1)[None, None]


class Stage:
    """A run of consecutive decoder layers over the prompt's prefix and padded batches of what follows it."""

    def __init__(self, model: PreTrainedModel, layers: Sequence[nn.Module]) -> None:
        self.rotary_emb = model.model.rotary_emb
        self.layers = list(layers)

    def prefix(self, hidden: torch.Tensor) -> tuple[torch.Tensor, list[KeysValues]]:
        """The prefix's (1, prefix, hidden) states after these layers, and its keys and values in each layer."""
        positions = torch.arange(hidden.shape[1])[None]
        rotary = self.rotary_emb(hidden, positions)
        keys_values = []
        for layer in self.layers:
            hidden, own = run_layer(layer, hidden, rotary, None, None)
            keys_values.append(own)
        return hidden, keys_values

    def after_prefix(self, hidden: torch.Tensor, prefix: list[KeysValues]) -> torch.Tensor:
        """States (batch, tokens, hidden) of right-padded rows that follow the prefix, after these layers
        (padding comes last in a row, so causal attention keeps it out of every real token's view)."""
        if not self.layers:  # no frozen layers below the adapted ones: the embeddings go up as they are
            return hidden
        prefix_len = prefix[0][0].shape[2]
        positions = torch.arange(prefix_len, prefix_len + hidden.shape[1])[None]
        rotary = self.rotary_emb(hidden, positions)
        mask = prefix_mask(prefix_len, hidden.shape[1])
        for layer, keys_values in zip(self.layers, prefix, strict=True):
            hidden, _ = run_layer(layer, hidden, rotary, keys_values, mask)
        return hidden


def pad_right(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """(batch, longest, hidden) from rows (len_i, hidden), zeros after each row's end."""
    width = max(row.shape[0] for row in rows)
    out = rows[0].new_zeros(len(rows), width, rows[0].shape[1])
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


@torch.no_grad()
def lower_features(
    training: TrainingModel, layout: AdaptedPromptLayout, messages: Sequence[list[int]], first_adapted: int,
    *, batch_tokens: int = 4096, progress=None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The input of layer ``first_adapted``: for the prefix (1, prefix, hidden) float32, and for each message's
    ``message + tail`` tokens (len, hidden) bf16. ``progress`` (optional) is called with the number of messages done."""
    with training.computing():
        return _lower_features(training, layout, messages, first_adapted, batch_tokens, progress)


def _lower_features(
    training: TrainingModel, layout: AdaptedPromptLayout, messages: Sequence[list[int]], first_adapted: int,
    batch_tokens: int, progress,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model = training.model
    embed = model.get_input_embeddings()
    stage = Stage(model, training.layers[:first_adapted])
    prefix_hidden, prefix_kv = stage.prefix(embed(torch.tensor([layout.prefix_ids])).float())
    rows = [ids + layout.tail_ids for ids in messages]
    features: list[torch.Tensor | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    start = 0
    while start < len(order):
        width = len(rows[order[start]])
        end = start + 1
        while end < len(order) and len(rows[order[end]]) * (end - start + 1) <= batch_tokens:
            end += 1
        group = order[start:end]
        width = len(rows[group[-1]])
        ids = torch.tensor([rows[i] + [0] * (width - len(rows[i])) for i in group])
        hidden = stage.after_prefix(embed(ids).float(), prefix_kv)
        for row, i in enumerate(group):
            features[i] = hidden[row, : len(rows[i])].to(torch.bfloat16).clone()
        if progress is not None:
            progress(len(group))
        start = end
    return prefix_hidden.float(), [f for f in features if f is not None]
