"""Prefix KV cache: a fixed prompt beginning (system prompt, instructions) prefilled once and reused.

Each request gets its own DynamicCache built from the stored keys/values (``DynamicCache.update`` concatenates, so
the stored tensors are never written to), expanded along the batch dimension when several requests run together.
A request then only pays for its own tokens.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel


class PrefixCache:
    """Keys and values of ``prefix_ids`` for every layer, computed once."""

    def __init__(self, prefix_ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``layers``: each layer's keys and values, (1, kv_heads, prefix_len, head_dim) each."""
        self.prefix_ids = list(prefix_ids)
        self.layers = layers

    @classmethod
    def prefilled(cls, model: PreTrainedModel, prefix_ids: list[int]) -> PrefixCache:
        """The keys and values transformers' forward of ``model`` computes for ``prefix_ids``."""
        cache = DynamicCache()
        with torch.inference_mode():
            model(input_ids=torch.tensor([list(prefix_ids)]), cache=cache, use_cache=True, logits_to_keep=1)
        return cls(prefix_ids, [(layer.keys, layer.values) for layer in cache.layers])

    def __len__(self) -> int:
        return len(self.prefix_ids)

    def for_batch(self, batch_size: int) -> DynamicCache:
        """A fresh cache holding the prefix once per row of a batch."""
        return DynamicCache(
            ddp_cache_data=[
                (keys.expand(batch_size, -1, -1, -1), values.expand(batch_size, -1, -1, -1))
                for keys, values in self.layers
            ]
        )

    def nbytes(self) -> int:
        """Memory held by the cached keys and values."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)
