"""Continuous batching: the replies generating at the same time share one forward pass per token.

Decoding is bound by memory bandwidth (every step reads all the weights), so a step for 8 replies costs little more
than a step for one. Each reply is prefilled alone (its prompt is usually mostly cached), then joins the batch;
a finished reply leaves at once and a new one joins without waiting for the others.

Rows of the batched KV cache are left-padded to a common length; the attention mask hides the padding and each
row's position ids count only its own tokens. The cache is rebuilt only when the membership changes.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from engine.kernels.paths import FastPaths
from engine.local.companion import ReplyStream
from engine.local.prompt_cache import KeyValues, snapshot


def _left_pad(tensor: torch.Tensor, amount: int) -> torch.Tensor:
    if amount == 0:
        return tensor
    batch, heads, _, dim = tensor.shape
    return torch.cat([tensor.new_zeros(batch, heads, amount, dim), tensor], dim=2)


class DecodeBatch:
    """The replies currently decoding together, with their shared, left-padded KV cache."""

    def __init__(self, paths: FastPaths) -> None:
        self.paths = paths
        self.streams: list[ReplyStream] = []
        self.padding: list[int] = []  # leading pad positions of each row
        self.cache: DynamicCache | None = None

    def __len__(self) -> int:
        return len(self.streams)

    @property
    def length(self) -> int:
        """Positions in the batched cache (padding included)."""
        return self.cache.get_seq_length() if self.cache is not None else 0

    def add(self, stream: ReplyStream) -> None:
        """Join a prefilled, unfinished stream; its own cache moves into the batch."""
        assert stream.cache is not None and not stream.done
        own = stream.cache
        stream.cache = None
        if self.cache is None:
            self.cache, self.padding, self.streams = own, [0], [stream]
            return
        new_length, length = own.get_seq_length(), self.length
        grow = max(0, new_length - length)  # existing rows need this much more padding
        for layer, (keys, values) in zip(self.cache.layers, snapshot(own), strict=True):
            layer.keys = torch.cat([_left_pad(layer.keys, grow), _left_pad(keys, length + grow - new_length)])
            layer.values = torch.cat([_left_pad(layer.values, grow), _left_pad(values, length + grow - new_length)])
        self.padding = [p + grow for p in self.padding] + [length + grow - new_length]
        self.streams.append(stream)

    def remove(self, stream: ReplyStream) -> None:
        """Leave the batch; drops padding columns nobody needs any more."""
        index = self.streams.index(stream)
        keep = [i for i in range(len(self.streams)) if i != index]
        del self.streams[index], self.padding[index]
        if not self.streams:
            self.cache = None
            return
        assert self.cache is not None
        trim = min(self.padding)
        rows = torch.tensor(keep)
        for layer in self.cache.layers:
            layer.keys = layer.keys[rows, :, trim:, :]
            layer.values = layer.values[rows, :, trim:, :]
        self.padding = [p - trim for p in self.padding]

    def row(self, stream: ReplyStream) -> KeyValues:
        """This stream's keys/values without padding (views)."""
        assert self.cache is not None
        i = self.streams.index(stream)
        pad = self.padding[i]
        return [(layer.keys[i : i + 1, :, pad:, :], layer.values[i : i + 1, :, pad:, :]) for layer in self.cache.layers]

    def _pick(self, logits: torch.Tensor) -> list[int]:
        """Each stream's next token from its row of ``logits``: in one call when they share sampling settings."""
        first = self.streams[0].sampling
        if all(stream.sampling == first for stream in self.streams):
            return first.pick_batch(logits, [s.context for s in self.streams], [s.generator for s in self.streams])
        return [
            stream.sampling.pick_batch(logits[i : i + 1], [stream.context], [stream.generator])[0]
            for i, stream in enumerate(self.streams)
        ]

    @torch.inference_mode()
    def step(self) -> list[str]:
        """Feed every stream its pending token in one forward pass; return each stream's newly visible text."""
        assert self.cache is not None
        batch, length = len(self.streams), self.length
        input_ids = torch.tensor([[s.pending_token] for s in self.streams])  # (batch, 1)
        attention_mask = torch.ones(batch, length + 1, dtype=torch.long)  # (batch, cached + new)
        for i, pad in enumerate(self.padding):
            attention_mask[i, :pad] = 0
        position_ids = torch.tensor([[length - pad] for pad in self.padding])  # (batch, 1): true lengths
        padded = any(self.padding)
        logits = self.paths.decode(input_ids, position_ids, self.cache, attention_mask if padded else None)
        deltas = [stream.accept_token(token) for stream, token in zip(self.streams, self._pick(logits), strict=True)]
        for stream in [s for s in self.streams if s.done]:
            stream.remember(self.row(stream))
        return deltas
