"""Decode steps: one new token per sequence through the decoder layer of engine/kernels/layer.py, keys and values
appended to the sequence's cache.

:class:`DecodeStep` runs a batch of chats in the model's own arithmetic (any precision), each row left-padded to
the batch's cache length. :class:`PackedDecodeStep` runs chats on packed int8 layers in about half the tensor
operations: with one token the matmuls take most of a step of the 0.5B model, and much of the rest is the fixed cost
of small tensor operations (each a few microseconds). It keeps the residual stream in float32 with the norms folded
into the activation scales (engine/kernels/arithmetic.py); a single chat rotates queries and keys with one matmul
(engine/kernels/rotary.py) and takes its activation scale as a Python number, a batch per-row scale tensors.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from engine.kernels.arithmetic import MODULES, PACKED_ROW, PACKED_ROWS, Arithmetic
from engine.kernels.attention import grouped_attention
from engine.kernels.int8 import COMPUTE_DTYPE, with_int8_activations
from engine.kernels.layer import AttentionShape, Stack, run_layer
from engine.kernels.rotary import MultiplyAdd, Rotations, scaled_for_queries

# From this many chats decoding together, an int8 output head quantises its input rows too (per row, symmetric) and
# multiplies int8 by int8 (torch._int_mm) on the plain weights it shares with the embedding. torch's weight-only
# kernel costs ~5 ms for 1-4 rows of the 151,936-row head but steps up past 8 (16 rows: 16-20 ms), while _int_mm
# stays at 8-10 ms from two rows on (2 cores). The price, teacher-forced on 256 reply tokens: mean KL to fp32
# 0.0037 -> 0.0048, top-1 agreement unchanged (97.3%); single chats and small batches keep the weight-only head.
# (Those figures are from a CPU with VNNI. Without it, where the AVX2 kernel is used, that kernel computes the same
# per-row int8 x int8 product: 16 rows ~27 ms against ~41 weight-only, 1 row about the same; Int8Linear.forward.)
HEAD_INT8_ACTIVATION_ROWS = 9


class CachedAttention:
    """A decode step's attention block: rotate the new token's queries and keys, append its keys and values to the
    cache, attend over everything cached (engine/kernels/attention.py)."""

    def __init__(
        self,
        shape: AttentionShape,
        cache: DynamicCache,
        rotate: MultiplyAdd | Rotations,
        *,
        scaling: float | None,
        bias: torch.Tensor | None = None,
        cache_dtype: torch.dtype | None = None,
        values_dtype: torch.dtype | None = None,
    ) -> None:
        """``scaling``: None when ``rotate`` scales the queries. ``bias`` (batch, 1, 1, cached + 1) hides padding.
        ``cache_dtype``: what new keys and values are stored as (None: as computed); ``values_dtype``: what the
        attention reads the values as (None: as stored)."""
        self.cache, self.rotate, self.scaling, self.bias = cache, rotate, scaling, bias
        self.cache_dtype, self.values_dtype = cache_dtype, values_dtype
        # Plain numbers read in every layer.
        self.heads, self.kv_heads, self.head_dim = shape.heads, shape.kv_heads, shape.head_dim
        self.group, self.split = shape.group, shape.query_key_width

    def __call__(self, index: int, qkv: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention output (batch, heads * head_dim) for layer ``index``'s q/k/v (batch, q + k + v)."""
        heads, kv_heads, head_dim, batch, split = self.heads, self.kv_heads, self.head_dim, qkv.shape[0], self.split
        query_key = self.rotate(qkv[:, :split])  # (batch, heads + kv_heads, head_dim)
        query = query_key[:, :heads].view(batch, kv_heads, self.group, head_dim)  # grouped by key/value head
        key = query_key[:, heads:].view(batch, kv_heads, 1, head_dim)
        value = qkv[:, split:].view(batch, kv_heads, 1, head_dim)
        if self.cache_dtype is not None:
            key, value = key.to(self.cache_dtype), value.to(self.cache_dtype)
        keys, values = self.cache.update(key, value, index)
        if self.values_dtype is not None:
            values = values.to(self.values_dtype)
        attended = grouped_attention(query, keys, values, self.scaling, self.bias)  # (batch, kv_heads, group, dim)
        return attended.view(batch, heads * head_dim), hidden


class OutputHead:
    """The output head as a decode step of ``rows`` chats computes it: int8 x int8 from HEAD_INT8_ACTIVATION_ROWS
    rows on (see there), weight-only below."""

    def __init__(self, head: torch.nn.Module) -> None:
        self.head = head
        self.int8_activations = with_int8_activations(head)  # itself unless it is a plain int8 layer

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (rows, vocab) for final-norm hidden states (rows, hidden)."""
        if hidden.shape[0] < HEAD_INT8_ACTIVATION_ROWS:
            return self.head(hidden)
        return self.int8_activations(hidden)


class DecodeStep:
    """Feeds one token per sequence through the model in its own arithmetic; returns next-token logits (float32)."""

    def __init__(self, stack: Stack, head: OutputHead | None = None) -> None:
        """``head``: an :class:`OutputHead` of ``stack.head`` another step already made (one copy of its int8 twin)."""
        self.stack = stack
        self.layers = stack.layers  # the model's own modules, q/k/v and gate/up fused
        self.head = head or OutputHead(stack.head)

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
        batch, inner, shape = input_ids.shape[0], self.stack.inner, self.stack.shape
        hidden = inner.embed_tokens(input_ids).view(batch, -1)  # (batch, hidden), the residual stream
        cos, sin = inner.rotary_emb(hidden, position_ids)  # (batch, 1, head_dim): broadcast over heads
        attention = CachedAttention(shape, cache, MultiplyAdd(cos, sin, shape.head_dim), scaling=shape.scaling,
                                    bias=padding_bias(attention_mask))
        for index, layer in enumerate(self.stack.layers):
            hidden = run_layer(layer, MODULES, index, hidden, attention)
        return self.head(inner.norm(hidden)).float()


def padding_bias(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(batch, 1, 1, cached + 1) float32 scores' bias hiding padding (0 in ``attention_mask``), or None."""
    if attention_mask is None:
        return None
    bias = torch.zeros(attention_mask.shape, dtype=torch.float32)
    return bias.masked_fill_(attention_mask == 0, float("-inf"))[:, None, None, :]


class PackedDecodeStep:
    """Feeds one token per sequence through a model whose projections are all packed int8: a float32 residual
    stream with the norms folded into the activation scales, each row quantised on its own. A single chat's row
    takes its scale and zero point as Python numbers and rotates with one matmul; a batch of chats
    (left-padded, as for :class:`DecodeStep`) takes per-row scale tensors, the arithmetic prompt passes use, so a
    chat computes the same numbers alone or with others, without the bf16 conversions around every projection
    the general step makes."""

    def __init__(self, stack: Stack, head: OutputHead | None = None) -> None:
        """``stack``: folded norms and packed layers (engine.kernels.layer.packed_stack); ``head`` as for
        :class:`DecodeStep`."""
        self.stack = stack
        self.head = head or OutputHead(stack.head)

    @torch.inference_mode()
    def __call__(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """As :meth:`DecodeStep.__call__`."""
        batch, inner, shape = input_ids.shape[0], self.stack.inner, self.stack.shape
        hidden = inner.embed_tokens(input_ids).view(batch, -1).float()  # the residual stream, float32
        cos, sin = inner.rotary_emb(hidden, position_ids)  # (batch, 1, head_dim) in float32
        if batch == 1 and attention_mask is None:
            rotate: MultiplyAdd | Rotations = Rotations(cos, sin, shape.heads, shape.kv_heads, shape.scaling)
            arithmetic: Arithmetic = PACKED_ROW
        else:  # queries' copy of cos and sin scaled: (batch, heads + kv_heads, head_dim)
            cos, sin = (c.view(batch, -1, shape.head_dim) for c in scaled_for_queries(
                cos, sin, shape.heads, shape.kv_heads, shape.scaling))
            rotate, arithmetic = MultiplyAdd(cos, sin, shape.head_dim), PACKED_ROWS
        # Keys and values are cached in bf16, as the general step caches them; attention reads them in float32.
        attention = CachedAttention(shape, cache, rotate, scaling=None, bias=padding_bias(attention_mask),
                                    cache_dtype=COMPUTE_DTYPE, values_dtype=torch.float32)
        for index, layer in enumerate(self.stack.layers):
            hidden = run_layer(layer, arithmetic, index, hidden, attention)
        return self.head(inner.norm(hidden)).float()
