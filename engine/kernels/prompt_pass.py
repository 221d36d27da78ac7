"""Prompt passes: many new tokens over a fixed, cached prefix, reading the final hidden states at a few positions.

A classification pass feeds one message (~20 tokens) and a fixed tail over the analyst's cached prefix (~280 tokens)
and reads the hidden state at one or two positions. Both kinds here take the same inputs and give the same numbers
up to int8 rounding; the model's fast paths pick one at load time (engine/kernels/paths.py):

- :class:`ForwardPromptPass`: transformers' forward over the prefix's cache, on the model's int8-activation copy.
- :class:`StackPromptPass`, when every projection is packed int8: transformers' forward spent about as long around
  the matmuls as in them (~40 ms for a 10-token message on 2 cores, ~21 in projections and attention): module calls
  and hooks, mask preparation, a per-request copy of the prefix cache, bf16 <-> fp32 conversions around every norm
  and projection, SDPA. This pass runs the decoder layer of engine/kernels/layer.py on packed rows (float32 residual
  stream, norms folded into the activation scales), rotates with cos/sin computed once per pass (the attention
  scaling folded into the queries' copy), attends with two float32 matmuls over the prefix's keys and values held
  in float32 (a few MB) and never copied into a cache (SDPA for batches of long messages), and in the last layer
  takes only the rows whose hidden state is asked for past the keys and values. In a batch of messages of several
  lengths each one attends over the prefix and its own tokens only, in the shapes it has alone, so its verdict does
  not depend on the lengths of the others (measured: within 1e-5 in log-odds, the hidden states bit for bit).

Nothing is cached: a pass's own keys and values are dropped with it.

:class:`StackPromptPass` takes its arithmetic as a parameter, so it also runs a stack that is not packed (the
model's own modules on a float32 residual stream) and an adapted analyst's stack (engine/kernels/low_rank.py), whose
prefix it computes itself, through the same layers (:meth:`StackPromptPass.over_own_prefix`): the prefix's keys and
values then carry the adapter's updates too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from engine.kernels.arithmetic import PACKED_ROWS, Arithmetic
from engine.kernels.attention import prompt_attention
from engine.kernels.layer import AttentionShape, Stack, run_layer
from engine.kernels.prefix import PrefixCache
from engine.kernels.rotary import MultiplyAdd, scaled_for_queries


class ForwardPromptPass:
    """Hidden states of new tokens over a fixed prefix, through transformers' forward."""

    def __init__(self, model: nn.Module, prefix: PrefixCache) -> None:
        """``model``: the copy of the model that classification runs (engine.kernels.int8.with_int8_activations)."""
        self.model, self.prefix = model, prefix

    @torch.inference_mode()
    def hidden_at(
        self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, columns: list[int]
    ) -> torch.Tensor:
        """Final hidden states (batch, len(columns), hidden) at ``columns`` of ``input_ids`` (batch, width), whose
        tokens sit at ``positions`` (batch, width); ``mask`` (batch, 1, width, prefix + width) says which keys each
        query sees."""
        return self.model.base_model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions,
            cache=self.prefix.for_batch(input_ids.shape[0]), use_cache=True,
        ).last_hidden_state[:, columns]


class PrefixAttention:
    """A prompt pass's attention block: rotate the new tokens' queries and keys, attend over the prefix and the new
    tokens; in the last layer only the rows in ``keep`` go on."""

    def __init__(
        self, prefix: list[tuple[torch.Tensor, torch.Tensor]], shape: AttentionShape, rotate: MultiplyAdd,
        bias: torch.Tensor, batch: int, width: int, keep: Sequence[int],
        record: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        """``record``: when given, each layer's keys and values (batch, kv_heads, prefix + width, head_dim) are
        appended to it."""
        self.prefix, self.shape, self.rotate, self.bias = prefix, shape, rotate, bias
        self.batch, self.width, self.keep, self.record = batch, width, keep, record
        self.last = len(prefix) - 1
        self.queries = width  # rows per sequence still going on
        self.padding = leading_padding(bias, width)

    def __call__(self, index: int, qkv: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention output (batch * queries, heads * head_dim) for layer ``index``'s q/k/v (batch * width, ...)."""
        heads, kv_heads, head_dim = self.shape.heads, self.shape.kv_heads, self.shape.head_dim
        batch, width, split, bias = self.batch, self.width, self.shape.query_key_width, self.bias
        query_key = self.rotate(qkv[:, :split]).view(batch, width, heads + kv_heads, head_dim)
        query = query_key[:, :, :heads]
        if index == self.last and len(self.keep) < width:  # from here on only the rows asked for matter
            columns = torch.tensor(list(self.keep))
            query, bias, self.queries = query[:, columns], bias[..., columns, :], len(self.keep)
            hidden = hidden.view(batch, width, -1)[:, columns].reshape(batch * self.queries, -1)
        prefix_keys, prefix_values = self.prefix[index]
        new_keys = query_key[:, :, heads:]  # (batch, width, kv_heads, head_dim)
        new_values = qkv[:, split:].view(batch, width, kv_heads, head_dim)
        if any(self.padding):
            assert self.record is None, "a prefix is recorded from one unpadded row"
            attended = self._each_as_if_alone(query, bias, prefix_keys, prefix_values, new_keys, new_values)
        else:
            keys = _append(prefix_keys, new_keys, batch)  # (batch, kv_heads, prefix + width, head_dim)
            values = _append(prefix_values, new_values, batch)
            if self.record is not None:
                self.record.append((keys, values))
            attended = prompt_attention(query, keys, values, bias)  # (batch, queries, heads, head_dim)
        return attended.reshape(batch * self.queries, heads * head_dim), hidden

    def _each_as_if_alone(
        self, query: torch.Tensor, bias: torch.Tensor, prefix_keys: torch.Tensor, prefix_values: torch.Tensor,
        new_keys: torch.Tensor, new_values: torch.Tensor,
    ) -> torch.Tensor:
        """:func:`prompt_attention` of each padded row over the prefix and its own tokens only, the keys and values
        built as for that message alone. Summed over the masked padding too, a message's attention rounded
        differently beside longer messages (the int8 layers after it turned that into whole steps: bench/RESULTS.md),
        so a verdict depended on the lengths of the other messages in its batch. Padding rows attend to nothing
        (zeros): no one sees them."""
        prefix = prefix_keys.shape[1]
        attended = new_values.new_zeros(query.shape)
        for row, pad in enumerate(self.padding):
            if pad == self.width:  # nothing of its own to attend from
                continue
            own = slice(pad, None) if query.shape[1] == self.width else slice(None)  # the last layer: own rows only
            one = slice(row, row + 1)
            row_bias = bias[one, :, own]
            row_bias = torch.cat([row_bias[..., :prefix], row_bias[..., prefix + pad:]], dim=-1)
            row_query = query[one, own]
            row_keys = _append(prefix_keys, new_keys[one, pad:], 1)
            row_values = _append(prefix_values, new_values[one, pad:], 1)
            attended[one, own] = prompt_attention(row_query, row_keys, row_values, row_bias).reshape(row_query.shape)
        return attended


class StackPromptPass:
    """Hidden states of new tokens over a fixed prefix, through a stack's layers in the given arithmetic: packed
    int8 (the default), or any other with a float32 residual stream."""

    def __init__(self, stack: Stack, prefix: PrefixCache, arithmetic: Arithmetic = PACKED_ROWS) -> None:
        """``stack``: the layers in the form ``arithmetic`` computes them (for PACKED_ROWS folded norms and packed
        layers, engine.kernels.layer.packed_stack)."""
        self.stack, self.prefix, self.arithmetic = stack, prefix, arithmetic
        # Each (kv_heads, prefix_len, head_dim) in float32: ~3.4 MB for the 0.5B model's 276-token analyst prefix.
        self.prefix_float = [(keys[0].float(), values[0].float()) for keys, values in prefix.layers]

    @classmethod
    @torch.inference_mode()
    def over_own_prefix(cls, stack: Stack, prefix_ids: list[int], arithmetic: Arithmetic) -> StackPromptPass:
        """A pass whose prefix's keys and values are computed by this same stack and arithmetic (one causal pass
        over ``prefix_ids``)."""
        shape = stack.shape
        empty = torch.zeros(1, shape.kv_heads, 0, shape.head_dim)
        bare = cls(stack, PrefixCache([], [(empty, empty)] * len(stack.layers)), arithmetic)
        width = len(prefix_ids)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        bias = torch.zeros(1, 1, width, width).masked_fill_(~causal, float("-inf"))
        recorded: list[tuple[torch.Tensor, torch.Tensor]] = []  # each (1, kv_heads, prefix_len, head_dim)
        bare(torch.tensor([prefix_ids]), torch.arange(width)[None], bias, keep=[width - 1], record=recorded)
        return cls(stack, PrefixCache(prefix_ids, recorded), arithmetic)

    @torch.inference_mode()
    def hidden_at(
        self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, columns: list[int]
    ) -> torch.Tensor:
        """As :meth:`ForwardPromptPass.hidden_at`."""
        distinct = sorted(set(columns))
        bias = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
        hidden = self(input_ids, positions, bias, keep=distinct)
        return hidden[:, [distinct.index(column) for column in columns]]

    @torch.inference_mode()
    def __call__(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, bias: torch.Tensor, keep: Sequence[int],
        record: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states (batch, len(keep), hidden) at columns ``keep`` of ``input_ids`` (batch, width).

        ``position_ids`` (batch, width); ``bias`` (batch, 1, width, prefix + width) float32, added to the attention
        scores (``-inf`` hides a key from a query). ``record``: see :class:`PrefixAttention`.
        """
        batch, width = input_ids.shape
        inner, shape = self.stack.inner, self.stack.shape
        hidden = inner.embed_tokens(input_ids).float().view(batch * width, -1)  # the residual stream
        cos, sin = inner.rotary_emb(hidden, position_ids)  # (batch, width, head_dim)
        # (batch * width, heads + kv_heads, head_dim): the queries' copy carries the attention scaling.
        cos, sin = (c.view(batch * width, -1, shape.head_dim) for c in scaled_for_queries(
            cos, sin, shape.heads, shape.kv_heads, shape.scaling))
        rotate = MultiplyAdd(cos, sin, shape.head_dim)
        attention = PrefixAttention(self.prefix_float, shape, rotate, bias, batch, width, keep, record)
        for index, layer in enumerate(self.stack.layers):
            hidden = run_layer(layer, self.arithmetic, index, hidden, attention)
        return inner.norm(hidden).float().view(batch, attention.queries, -1)


def leading_padding(bias: torch.Tensor, width: int) -> list[int]:
    """For each row of ``bias`` (batch, 1, width, prefix + width), how many of its new tokens come first and are
    hidden from every query: its left padding."""
    hidden = torch.isneginf(bias[:, 0, :, bias.shape[-1] - width:]).all(dim=1)  # (batch, width)
    return [int(row.int().argmin()) if not bool(row.all()) else width for row in hidden]


def _append(prefix: torch.Tensor, new: torch.Tensor, batch: int) -> torch.Tensor:
    """The prefix's (kv_heads, prefix_len, dim) followed by each row's new (batch, width, kv_heads, dim)."""
    return torch.cat([prefix.expand(batch, -1, -1, -1), new.transpose(1, 2)], dim=2)
