"""Classification's forward pass on packed int8 layers: many new tokens over a cached prefix, in plain torch calls.

A classification pass feeds one message (~20 tokens) and a fixed tail over the analyst's cached prefix (~280
tokens) and reads the hidden state at one or two positions. transformers' forward spent about as long around the
matmuls as in them (~40 ms for a 10-token message on 2 cores, ~21 in projections and attention): module calls and
hooks, mask preparation, a per-request copy of the prefix cache, bf16 <-> fp32 conversions around every norm and
projection, SDPA. This pass computes the same thing with the habits of kernels/packed_row_step.py, for several rows:

- the residual stream stays float32 and the packed int8 projections write float32;
- an RMSNorm's weight multiplies the input before quantisation and its per-row 1/rms joins the per-row activation
  scale, so the norm is never applied as such;
- rotary embedding of the queries and keys is one multiply-add with cos/sin computed once per pass (the attention
  scaling folded into the queries' copy);
- attention is two float32 matmuls with the query heads grouped by the key/value head they share (SDPA for batches
  of long messages), over the prefix's keys and values held in float32 (a few MB) and never copied into a cache;
  the mask arrives as an additive bias;
- in the last layer only the rows whose hidden state is asked for go past the keys and values.

Nothing is cached: the pass's own keys and values are dropped with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half

from engine.kernels.int8 import Int8Linear, QuantizedActivations, quantize_rows_of_activations
from engine.kernels.packed_row_step import PackedRowStep

KeyValues = Sequence[tuple[torch.Tensor, torch.Tensor]]

# Attention scores (float32 elements) above which a pass uses SDPA instead of materialising them: 4M = 16 MB, so a
# single message or a batch of short ones (8 x 20 tokens: ~1M) takes the faster matmuls.
MATERIALISED_SCORES_LIMIT = 4 * 2**20


class PackedPromptPass:
    """Hidden states of new tokens over a fixed prefix, for a model whose projections are all packed int8."""

    def __init__(self, step: PackedRowStep, prefix: KeyValues) -> None:
        self.inner, self.layers = step.inner, step.layers
        self.heads, self.kv_heads, self.head_dim, self.scaling = step.heads, step.kv_heads, step.head_dim, step.scaling
        # Each (kv_heads, prefix_len, head_dim) in float32: ~3.4 MB for the 0.5B model's 276-token analyst prefix.
        self.prefix = [(keys[0].float(), values[0].float()) for keys, values in prefix]

    @torch.inference_mode()
    def __call__(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, bias: torch.Tensor, keep: Sequence[int]
    ) -> torch.Tensor:
        """Final-norm hidden states (batch, len(keep), hidden) at columns ``keep`` of ``input_ids`` (batch, width).

        ``position_ids`` (batch, width); ``bias`` (batch, 1, width, prefix + width) float32, added to the attention
        scores (``-inf`` hides a key from a query).
        """
        batch, width = input_ids.shape
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        hidden = self.inner.embed_tokens(input_ids).float().view(batch * width, -1)  # the residual stream
        cos, sin = self.inner.rotary_emb(hidden, position_ids)  # (batch, width, head_dim)
        # (batch, width, heads + kv_heads, head_dim): the queries' copy carries the attention scaling.
        scaled = torch.tensor([self.scaling] * heads + [1.0] * kv_heads)[:, None]
        cos, sin = cos[:, :, None] * scaled, sin[:, :, None] * scaled
        queries = width
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            qkv = _project(layer.qkv, _normed_rows(hidden, layer.input_gain, layer.input_eps)).view(batch, width, -1)
            split = layer.query_key_width
            query_key = qkv[..., :split].reshape(batch, width, heads + kv_heads, head_dim)
            query_key = query_key * cos + rotate_half(query_key) * sin
            query = query_key[:, :, :heads]
            if index == last and len(keep) < width:  # from here on only the rows asked for matter
                columns = torch.tensor(list(keep))
                query, bias, queries = query[:, columns], bias[..., columns, :], len(keep)
                hidden = hidden.view(batch, width, -1)[:, columns].reshape(batch * queries, -1)
            prefix_keys, prefix_values = self.prefix[index]
            keys = _append(prefix_keys, query_key[:, :, heads:], batch)  # (batch, kv_heads, prefix + width, dim)
            values = _append(prefix_values, qkv[..., split:].view(batch, width, kv_heads, head_dim), batch)
            attended = _attention(query, keys, values, bias).reshape(batch * queries, heads * head_dim)
            hidden.add_(_project(layer.output, quantize_rows_of_activations(attended)))
            gate_up = _project(layer.gate_up, _normed_rows(hidden, layer.post_gain, layer.post_eps))
            gate, up = gate_up.chunk(2, dim=-1)
            hidden.add_(_project(layer.down, quantize_rows_of_activations(nn.functional.silu(gate).mul_(up))))
        return self.inner.norm(hidden).float().view(batch, queries, -1)


def _attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention of already scaled queries (batch, queries, heads, dim) over keys/values (batch, kv_heads, length,
    dim), ``bias`` (batch, 1, queries, length) added to the scores; returns (batch, queries, heads, dim).

    Two float32 matmuls with the query heads grouped by the key/value head they share (consecutive, as transformers
    pairs them): ~270 µs per layer for one message against SDPA's ~350. Their scores are materialised, though, so a
    batch of long messages (4 x 512 tokens: 90 MB of scores, twice) goes to SDPA, which works in blocks.
    """
    batch, queries, heads, dim = query.shape
    kv_heads, length = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    if batch * heads * queries * length > MATERIALISED_SCORES_LIMIT:
        attended = nn.functional.scaled_dot_product_attention(
            query.transpose(1, 2), keys, values, attn_mask=bias, scale=1.0, enable_gqa=True
        )
        return attended.transpose(1, 2)
    grouped = query.reshape(batch, queries, kv_heads, group, dim).permute(0, 2, 3, 1, 4)
    scores = torch.matmul(grouped.reshape(batch, kv_heads, group * queries, dim), keys.transpose(-1, -2))
    scores = scores.view(batch, kv_heads, group, queries, length).add_(bias[:, :, None])
    weights = torch.softmax(scores, dim=-1).view(batch, kv_heads, group * queries, length)
    attended = torch.matmul(weights, values).view(batch, kv_heads, group, queries, dim)
    return attended.permute(0, 3, 1, 2, 4)


def _project(linear: Int8Linear, activations: QuantizedActivations) -> torch.Tensor:
    """A packed layer's float32 output for quantised rows."""
    return linear.forward_quantized(activations, torch.float32)


def _append(prefix: torch.Tensor, new: torch.Tensor, batch: int) -> torch.Tensor:
    """The prefix's (kv_heads, prefix_len, dim) followed by each row's new (batch, width, kv_heads, dim)."""
    return torch.cat([prefix.expand(batch, -1, -1, -1), new.transpose(1, 2)], dim=2)


def _normed_rows(hidden: torch.Tensor, gain: torch.Tensor, eps: float) -> QuantizedActivations:
    """RMSNorm(hidden) * gain for rows (rows, hidden), quantised per row: each row's 1/rms rides in its scale."""
    inverse_rms = hidden.square().mean(dim=-1, keepdim=True).add_(eps).rsqrt_()  # (rows, 1)
    quantized = quantize_rows_of_activations(hidden * gain)
    if quantized.single_row is not None:
        scale, zero_point = quantized.single_row
        return QuantizedActivations(quantized.values, single_row=(scale * float(inverse_rms), zero_point))
    assert quantized.scales is not None
    return QuantizedActivations(quantized.values, quantized.scales * inverse_rms, quantized.zero_points)
