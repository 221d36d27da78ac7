"""One decoding step (one new token per sequence) for Qwen2- and Llama-shaped models, in plain torch calls.

A decode step runs the same ~25 small operations in each layer. transformers' generic model code wraps them in
module calls, output-recording hooks, mask construction and the attention-interface lookup, which on a 2-core CPU
cost more than the operations themselves: 2-3 ms of a ~24 ms int8 step for the 0.5B model. This module computes the
same numbers directly (the model's own norm and rotary modules, the cache update and the grouped single-query
attention of kernels/attention.py), in the style of gpt-fast's hand-written model. Prompts and classification keep
transformers' forward: there the matmuls dominate and per-call overhead does not matter.

It also computes the query/key/value projections as one matmul and the gate/up projections as another. The fused
weights are built once, and the model's own q/k/v and gate/up layers are re-pointed at row slices of them (in int8
with oneDNN: become slices of one packed matrix, engine.kernels.int8.FusedInt8Projections), so the memory does not grow
and transformers' forward (used for prompts) computes exactly what it did before.

Models of other shapes (anything but ``qwen2``/``llama`` with SiLU, RMSNorm and full attention) get no
:class:`DecodeStep` and keep transformers' forward for every step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.models.llama.modeling_llama import rotate_half  # Qwen2's is the same function

from engine.kernels import int8 as quantize
from engine.kernels.attention import grouped_single_query_attention
from engine.kernels.int8 import FusedInt8Projections, Int8Linear
from engine.kernels.packed_row_step import PackedRowStep

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = frozenset({"qwen2", "llama"})
# From this many chats decoding together, an int8 output head quantises its input rows too (per row, symmetric) and
# multiplies int8 by int8 (torch._int_mm) on the plain weights it shares with the embedding. torch's weight-only
# kernel costs ~5 ms for 1-4 rows of the 151,936-row head but steps up past 8 (16 rows: 16-20 ms), while _int_mm
# stays at 8-10 ms from two rows on (2 cores). The price, teacher-forced on 256 reply tokens: mean KL to fp32
# 0.0037 -> 0.0048, top-1 agreement unchanged (97.3%); single chats and small batches keep the weight-only head.
HEAD_INT8_ACTIVATION_ROWS = 9
_ATTRIBUTE = "_moodbot_decode_step"


@dataclass(frozen=True)
class _Layer:
    input_norm: nn.Module
    qkv: nn.Module  # q, k and v projections as one matrix
    split: tuple[int, int, int]  # output widths of q, k, v
    output: nn.Module
    post_norm: nn.Module
    gate_up: nn.Module  # gate and up projections as one matrix
    down: nn.Module
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float


def fuse_rows(linears: Sequence[nn.Module]) -> nn.Module | None:
    """One layer computing ``linears`` (same input, outputs side by side) in one matmul, or None if they differ in
    kind. The originals are re-pointed at row slices of the fused weights, so no memory is added. With oneDNN, int8
    layers become one packed :class:`FusedInt8Projections` whose slices the originals then compute."""
    plain_int8 = all(type(layer) is Int8Linear and layer.packed is None for layer in linears)
    if plain_int8 and quantize.onednn_int8_available():
        return FusedInt8Projections(linears)  # type: ignore[arg-type]
    if plain_int8:
        weight_name, scale_name = "weight_int8", "scales"
    elif all(type(layer) is nn.Linear for layer in linears):
        weight_name, scale_name = "weight", None
    else:
        return None
    biases = [layer.bias for layer in linears]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return None
    weight = torch.cat([getattr(layer, weight_name) for layer in linears])
    scales = torch.cat([layer.scales for layer in linears]) if scale_name else None
    bias = None if biases[0] is None else torch.cat(biases)
    start = 0
    for layer in linears:
        end = start + layer.out_features
        if scale_name:
            layer.weight_int8, layer.scales = weight[start:end], scales[start:end]
        else:
            layer.weight = nn.Parameter(weight[start:end], requires_grad=False)
        if bias is not None:
            layer.bias = nn.Parameter(bias[start:end], requires_grad=False)
        start = end
    if scale_name:
        return Int8Linear(weight, scales, bias)
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused


def _supported(model: PreTrainedModel) -> str | None:
    """Why ``model`` cannot use :class:`DecodeStep`, or None when it can."""
    config = model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {config.model_type!r}"
    if getattr(config, "hidden_act", None) != "silu":
        return f"activation {getattr(config, 'hidden_act', None)!r}"
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return "sliding-window layers"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "tensor-parallel pretraining split"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or not hasattr(inner, "layers"):
        return "unexpected module layout"
    return None


class DecodeStep:
    """Feeds one token per sequence through the model and returns the next-token logits (float32)."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.inner = model.model
        self.head = model.get_output_embeddings()
        self.layers: list[_Layer] = []
        for layer in self.inner.layers:
            attention, mlp = layer.self_attn, layer.mlp
            projections = (attention.q_proj, attention.k_proj, attention.v_proj)
            qkv = fuse_rows(projections)
            gate_up = fuse_rows((mlp.gate_proj, mlp.up_proj))
            if qkv is None or gate_up is None:
                raise ValueError("projection layers of different kinds")
            head_dim = attention.head_dim
            self.layers.append(_Layer(
                input_norm=layer.input_layernorm, qkv=qkv,
                split=tuple(p.out_features for p in projections),  # type: ignore[arg-type]
                output=attention.o_proj, post_norm=layer.post_attention_layernorm, gate_up=gate_up, down=mlp.down_proj,
                heads=attention.q_proj.out_features // head_dim, kv_heads=attention.k_proj.out_features // head_dim,
                head_dim=head_dim, scaling=attention.scaling,
            ))

    @cached_property
    def packed_row(self) -> PackedRowStep | None:
        """The leaner single-sequence step when every projection is packed int8 (kernels/packed_row_step.py), else
        None. Built on first use: load_model packs the output and down projections after attaching this step."""
        return PackedRowStep.build(self.inner, self.head, self.layers)

    @torch.inference_mode()
    def __call__(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids and position_ids (batch, 1); ``attention_mask`` (batch, cached + 1) with 0 at padding, or None
        when no row is padded. Appends to ``cache``; returns logits (batch, vocab) in float32."""
        batch = input_ids.shape[0]
        if batch == 1 and attention_mask is None and self.packed_row is not None:
            return self.packed_row(input_ids, position_ids, cache)
        hidden = self.inner.embed_tokens(input_ids)  # (batch, 1, hidden)
        cos, sin = self.inner.rotary_emb(hidden, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, 1, head_dim): broadcast over heads
        bias = None
        if attention_mask is not None:
            bias = torch.zeros(attention_mask.shape, dtype=torch.float32)
            bias = bias.masked_fill_(attention_mask == 0, float("-inf"))[:, None, None, :]
        for index, layer in enumerate(self.layers):
            normed = layer.input_norm(hidden)
            q, k, v = layer.qkv(normed).split(layer.split, dim=-1)
            q = q.view(batch, 1, layer.heads, layer.head_dim).transpose(1, 2)
            k = k.view(batch, 1, layer.kv_heads, layer.head_dim).transpose(1, 2)
            v = v.view(batch, 1, layer.kv_heads, layer.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            keys, values = cache.update(k, v, index)
            attended = grouped_single_query_attention(q, keys, values, layer.scaling, bias)
            hidden = hidden + layer.output(attended.reshape(batch, 1, -1))
            gate, up = layer.gate_up(layer.post_norm(hidden)).chunk(2, dim=-1)
            hidden = hidden + layer.down(nn.functional.silu(gate) * up)
        hidden = self.inner.norm(hidden)
        return self._head(hidden.view(batch, -1)).float()

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output head for (batch, hidden): int8 × int8 from HEAD_INT8_ACTIVATION_ROWS rows on (see there).
        ``int8_activations`` changes only a plain :class:`Int8Linear`; any other head computes as usual."""
        if hidden.shape[0] < HEAD_INT8_ACTIVATION_ROWS:
            return self.head(hidden)
        with quantize.int8_activations():
            return self.head(hidden)


def attach_decode_step(model: PreTrainedModel) -> DecodeStep | None:
    """Build the model's :class:`DecodeStep` (fusing its projections) and remember it on the model; None if the
    model's shape is not supported, in which case decoding keeps transformers' forward."""
    reason = _supported(model)
    if reason is not None:
        logger.info("decoding through transformers' forward: %s is not supported by the fast decode step", reason)
        return None
    try:
        step = DecodeStep(model)
    except ValueError as exc:
        logger.info("decoding through transformers' forward: %s", exc)
        return None
    setattr(model, _ATTRIBUTE, step)
    return step


def decode_step_of(model: nn.Module) -> DecodeStep | None:
    """The :class:`DecodeStep` attached to ``model`` by :func:`attach_decode_step`, if any."""
    return getattr(model, _ATTRIBUTE, None)
