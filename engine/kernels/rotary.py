"""Rotary position embedding of queries and keys, in the two forms the fast paths use.

Both rotate the heads of one projection output (queries first, then keys) and both come from the model's own rotary
module's cos and sin. :class:`MultiplyAdd` is transformers' formula, ``x * cos + rotate_half(x) * sin``, for any
number of rows; :class:`Rotations` is the same rotation as one head_dim x head_dim matrix per head, applied in one
batched matmul: for a single row that is a few tensor operations instead of six, which a decode step's fixed costs
notice. Either form can carry the attention scaling in the queries' copy, so the attention skips that multiply.
"""

from __future__ import annotations

import torch
from transformers.models.llama.modeling_llama import rotate_half  # Qwen2's is the same function


def rotation_matrix(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(head_dim, head_dim) ``R`` with ``x @ R == x * cos + rotate_half(x) * sin`` for cos, sin of shape (head_dim,)."""
    return torch.diag_embed(cos) + rotate_half(torch.eye(cos.shape[-1], dtype=cos.dtype)) * sin


def scaled_for_queries(
    cos: torch.Tensor, sin: torch.Tensor, heads: int, kv_heads: int, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (..., head_dim) repeated for every query and key head (..., heads + kv_heads, head_dim), the
    queries' copy multiplied by the attention ``scaling``."""
    scaled = torch.tensor([scaling] * heads + [1.0] * kv_heads)[:, None]
    return cos[..., None, :] * scaled, sin[..., None, :] * scaled


class MultiplyAdd:
    """Rotates rows of query and key heads by ``x * cos + rotate_half(x) * sin``, transformers' own arithmetic."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor, head_dim: int) -> None:
        self.cos, self.sin, self.head_dim = cos, sin, head_dim

    def __call__(self, query_key: torch.Tensor) -> torch.Tensor:
        """(rows, (heads + kv_heads) * head_dim) -> (rows, heads + kv_heads, head_dim), rotated; cos and sin must
        broadcast against the result."""
        heads = query_key.view(query_key.shape[0], -1, self.head_dim)
        return heads * self.cos + rotate_half(heads) * self.sin


class Rotations:
    """Rotates the query and key heads of ONE row with one batched matmul by per-head rotation matrices."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor, heads: int, kv_heads: int, scaling: float) -> None:
        """cos, sin: one position's (head_dim) values; the queries' matrices carry ``scaling``, the keys' do not."""
        rotation = rotation_matrix(cos.view(-1), sin.view(-1))
        self.matrices = torch.cat([(rotation * scaling).expand(heads, -1, -1), rotation.expand(kv_heads, -1, -1)])
        self.head_dim = rotation.shape[-1]

    def __call__(self, query_key: torch.Tensor) -> torch.Tensor:
        """(1, (heads + kv_heads) * head_dim) -> (1, heads + kv_heads, head_dim), rotated."""
        rotated = torch.bmm(query_key.view(-1, 1, self.head_dim), self.matrices)  # (heads + kv_heads, 1, head_dim)
        return rotated.view(1, -1, self.head_dim)
