"""Attention with grouped key/value heads, written once: two float32-score matmuls, no repeated keys or values.

Every fast path calls :func:`grouped_attention`: the decode steps with one query per sequence, the prompt pass with
many. The query heads that share a key/value head (consecutive, as transformers' ``repeat_kv`` pairs them) are
stacked into one matrix, so keys and values are read once per group. Scores and softmax are computed in float32, as
SDPA's CPU kernel does; the second matmul runs in the values' dtype (the caller's choice).

Why not SDPA: on CPU, torch's SDPA sends an unmasked single query with grouped key/value heads to its
flash-attention kernel, whose setup dwarfs the work: with the 0.5B model's 14 query and 2 key/value heads it took
83 µs per layer with 100 cached tokens and 332 µs with 500 (bf16, 2 cores), against 64 and 89 µs for the grouped
matmuls. Over 24 layers that made a single chat's decode step 28 ms instead of 24 ms once a conversation had 500
tokens (int8, same run). For one message over the analyst's prefix the matmuls took ~270 µs per layer against
SDPA's ~350. Scores are materialised, though, so a batch of long messages goes to SDPA, which works in blocks
(:func:`prompt_attention`). transformers' own forward (prompts) calls :func:`decode_aware_attention`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_IMPLEMENTATION = "moodbot_decode"

# Attention scores (float32 elements) above which a prompt pass uses SDPA instead of materialising them: 4M = 16 MB,
# so a single message or a batch of short ones (8 x 20 tokens: ~1M) takes the faster matmuls.
MATERIALISED_SCORES_LIMIT = 4 * 2**20


def grouped_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    scaling: float | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of stacked query heads: ``query`` (batch, kv_heads, rows, dim), each key/value head's query heads
    one after the other (rows = group x queries; one query per sequence when decoding), ``keys`` and ``values``
    (batch, kv_heads, length, dim). Returns (batch, kv_heads, rows, dim) in the values' dtype.

    ``scaling`` multiplies the scores (None: the queries are scaled already). ``bias`` (batch, 1, queries, length),
    float32, is added to the scores of every head: ``-inf`` hides a key from a query.
    """
    scores = torch.matmul(_float(query), _float(keys).transpose(-1, -2))  # (batch, kv_heads, rows, length)
    if scaling is not None:
        scores = scores * scaling
    if bias is not None:
        batch, kv_heads, rows, length = scores.shape
        queries = bias.shape[-2]
        grouped = scores.view(batch, kv_heads, rows // queries, queries, length)
        scores = grouped.add_(bias[:, :, None]).view(batch, kv_heads, rows, length)
    weights = torch.softmax(scores, dim=-1)
    if values.dtype != weights.dtype:
        weights = weights.to(values.dtype)
    return torch.matmul(weights, values)


def _float(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32; a float32 tensor as it is, without a call into torch (decode steps count them)."""
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def grouped_single_query_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`grouped_attention` in transformers' layout for one query: query (batch, heads, 1, dim), key/value
    (batch, kv_heads, length, dim), ``bias`` (batch, 1, 1, length); returns (batch, heads, 1, dim)."""
    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)
    return grouped_attention(grouped, key, value, scaling, bias).view(batch, heads, 1, dim)


def prompt_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention of already scaled queries (batch, queries, heads, dim) over keys/values (batch, kv_heads, length,
    dim), ``bias`` (batch, 1, queries, length) added to the scores; returns (batch, queries, heads, dim).

    :func:`grouped_attention` while its scores stay under MATERIALISED_SCORES_LIMIT; a batch of long messages
    (4 x 512 tokens: 90 MB of scores, twice) goes to SDPA instead.
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
    attended = grouped_attention(grouped.reshape(batch, kv_heads, group * queries, dim), keys, values, bias=bias)
    return attended.view(batch, kv_heads, group, queries, dim).permute(0, 3, 1, 2, 4)


def decode_aware_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """transformers attention-interface function: the grouped matmuls for an unmasked single query, else SDPA."""
    single_query = query.shape[2] == 1 and attention_mask is None
    if not single_query or dropout or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs  # type: ignore[arg-type]
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    output = grouped_single_query_attention(query, key, value, scale)
    return output.transpose(1, 2).contiguous(), None  # (batch, 1, heads, dim), as every implementation returns


def use_decode_aware_attention(model: nn.Module) -> None:
    """Switch a loaded transformers model to :func:`decode_aware_attention` (masks built as for SDPA)."""
    AttentionInterface.register(ATTENTION_IMPLEMENTATION, decode_aware_attention)
    AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, sdpa_mask)
    model.set_attn_implementation(ATTENTION_IMPLEMENTATION)
