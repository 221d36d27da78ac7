"""A single chat's decode step on packed int8 layers, in about half the tensor operations of the general step.

With one token per step the matmuls take about 17 of the ~24 ms an int8 step of the 0.5B model costs on 2 cores;
most of the rest is the fixed cost of ~90 small tensor operations per layer (each a few microseconds). For one row
on oneDNN-packed layers (engine.kernels.int8) this path computes the same thing with about 50:

- the residual stream stays float32 and the projections write float32, so nothing converts between them;
- an RMSNorm is never applied as such: its per-channel weight multiplies the input before quantisation, and its
  1/rms, a single number for a single row, goes into the activation scale the int8 kernel applies anyway;
- rotary position embedding of every query and key head is one batched matmul with a head_dim x head_dim rotation
  built once per step (``x @ R == x * cos + rotate_half(x) * sin``), the attention scaling folded into the
  queries' copy.

Batches of several chats keep the general step (engine/kernels/decode.py), whose per-row activation scales this
single-row arithmetic does not have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import rotate_half

from engine.kernels.int8 import COMPUTE_DTYPE, FusedInt8Projections, Int8Linear, quantize_one_row

if TYPE_CHECKING:
    from engine.kernels.decode import _Layer


@dataclass(frozen=True)
class _PackedLayer:
    input_gain: torch.Tensor  # float32 (hidden,): the input RMSNorm's weight
    input_eps: float
    qkv: Int8Linear
    query_key_width: int  # q and k outputs come first in qkv's output, v after them
    output: Int8Linear
    post_gain: torch.Tensor  # float32 (hidden,): the post-attention RMSNorm's weight
    post_eps: float
    gate_up: Int8Linear
    down: Int8Linear


def packed_linear(module: nn.Module) -> Int8Linear | None:
    """The packed int8 layer that computes ``module``, or None when it is not one."""
    if isinstance(module, FusedInt8Projections):
        return module.fused
    if type(module) is Int8Linear and module.packed is not None:
        return module
    return None


def _norm_gain_and_eps(norm: nn.Module) -> tuple[torch.Tensor, float] | None:
    weight, eps = getattr(norm, "weight", None), getattr(norm, "variance_epsilon", None)
    if not isinstance(weight, torch.Tensor) or not isinstance(eps, float):
        return None
    return weight.detach().float(), eps


def rotation_matrix(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(head_dim, head_dim) ``R`` with ``x @ R == x * cos + rotate_half(x) * sin`` for cos, sin of shape (head_dim,)."""
    return torch.diag_embed(cos) + rotate_half(torch.eye(cos.shape[-1], dtype=cos.dtype)) * sin


class PackedRowStep:
    """Feeds one token of one sequence through a model whose projections are all packed int8."""

    def __init__(self, inner: nn.Module, head: nn.Module, layers: Sequence[_PackedLayer], shape: _Layer) -> None:
        self.inner, self.head, self.layers = inner, head, list(layers)
        self.heads, self.kv_heads, self.head_dim = shape.heads, shape.kv_heads, shape.head_dim
        self.scaling = shape.scaling

    @classmethod
    def build(cls, inner: nn.Module, head: nn.Module, layers: Sequence[_Layer]) -> PackedRowStep | None:
        """The step for these decode-step layers, or None unless every projection is packed int8 and every layer
        has the same attention shape and RMSNorms with a weight and an epsilon."""
        packed: list[_PackedLayer] = []
        for layer in layers:
            linears = [packed_linear(m) for m in (layer.qkv, layer.output, layer.gate_up, layer.down)]
            norms = _norm_gain_and_eps(layer.input_norm), _norm_gain_and_eps(layer.post_norm)
            same_shape = (layer.heads, layer.kv_heads, layer.head_dim, layer.scaling) == (
                layers[0].heads, layers[0].kv_heads, layers[0].head_dim, layers[0].scaling)
            if any(linear is None for linear in linears) or None in norms or not same_shape:
                return None
            qkv, output, gate_up, down = linears
            (input_gain, input_eps), (post_gain, post_eps) = norms  # type: ignore[misc]
            packed.append(_PackedLayer(
                input_gain, input_eps, qkv, layer.split[0] + layer.split[1], output,  # type: ignore[arg-type]
                post_gain, post_eps, gate_up, down,  # type: ignore[arg-type]
            ))
        return cls(inner, head, packed, layers[0]) if packed else None

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """input_ids and position_ids (1, 1); appends to ``cache``; returns logits (1, vocab) in float32."""
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        hidden = self.inner.embed_tokens(input_ids).view(1, -1).float()  # the residual stream, float32
        cos, sin = self.inner.rotary_emb(hidden, position_ids)  # (1, 1, head_dim) in float32
        rotation = rotation_matrix(cos.view(-1), sin.view(-1))
        rotations = torch.cat([  # (heads + kv_heads, head_dim, head_dim): queries' scaled, keys' not
            (rotation * self.scaling).expand(heads, -1, -1), rotation.expand(kv_heads, -1, -1)
        ])
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv.one_row(*_normed_row(hidden, layer.input_gain, layer.input_eps))  # (1, q + k + v)
            width = layer.query_key_width
            query_key = torch.bmm(qkv[:, :width].view(heads + kv_heads, 1, head_dim), rotations)
            query = query_key[:heads].view(1, kv_heads, heads // kv_heads, head_dim)  # grouped by key/value head
            key = query_key[heads:].view(1, kv_heads, 1, head_dim).to(COMPUTE_DTYPE)
            value = qkv[:, width:].view(1, kv_heads, 1, head_dim).to(COMPUTE_DTYPE)
            keys, values = cache.update(key, value, index)
            scores = torch.matmul(query, keys.float().transpose(-1, -2))  # (1, kv_heads, group, length)
            attended = torch.matmul(torch.softmax(scores, dim=-1), values.float()).view(1, -1)  # float32 throughout
            hidden.add_(layer.output.one_row(*quantize_one_row(attended)))
            gate, up = layer.gate_up.one_row(*_normed_row(hidden, layer.post_gain, layer.post_eps)).chunk(2, dim=-1)
            hidden.add_(layer.down.one_row(*quantize_one_row(nn.functional.silu(gate).mul_(up))))
        return self.head(self.inner.norm(hidden)).float()


def _normed_row(hidden: torch.Tensor, gain: torch.Tensor, eps: float) -> tuple[torch.Tensor, float, int]:
    """RMSNorm(hidden) * gain for one row, quantised: the 1/rms factor rides in the returned scale."""
    mean_square = float(torch.linalg.vector_norm(hidden)) ** 2 / hidden.shape[-1]
    values, scale, zero_point = quantize_one_row(hidden * gain)
    return values, scale / math.sqrt(mean_square + eps), zero_point
