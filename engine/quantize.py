"""int8 weights: each weight row stored as int8 with one bf16 scale.

Decoding reads every weight once per token, so halving the bytes read speeds it up almost in proportion, and the
model takes half the memory. Replies keep their activations in bf16 (weight-only int8), computed by torch's own
CPU kernel for exactly this layout, ``aten._weight_int8pack_mm``.

Classification (many tokens per pass, compute-bound) may also quantise the activations, inside
:func:`int8_activations`: each input row (one token) gets its own int8 scale, and the product runs on the CPU's
int8 dot products (``torch._int_mm``), about twice as fast as the bf16 path for a batch of messages. Per-token
scales keep sentiment accuracy within a point of fp32 on both dev sets (README, Sentiment quality), where
``quantize_dynamic``'s one scale per batch cost 10-19 points. Replies stay weight-only: with int8 activations the
next-token distribution moved 5-7 times further from bf16's (README, Performance).

The output head and the input embedding share one int8 matrix when the model ties them (per-row scales suit both:
a head row is a vocabulary entry, and so is an embedding row).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

import torch
from torch import nn

COMPUTE_DTYPE = torch.bfloat16


_activation_mode = threading.local()


@contextlib.contextmanager
def int8_activations() -> Iterator[None]:
    """Within this block, on this thread, every :class:`Int8Linear` also quantises its input per row (W8A8)."""
    previous = getattr(_activation_mode, "int8", False)
    _activation_mode.int8 = True
    try:
        yield
    finally:
        _activation_mode.int8 = previous


def int8_matmul_per_row(flat: torch.Tensor, weight_int8: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``flat @ (int8 * scales).T`` with ``flat`` (rows, in) quantised to int8 with one scale per row; returns
    (rows, out) in bf16."""
    as_float = flat.float()
    row_scales = as_float.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-8).div_(127.0)  # (rows, 1)
    quantized = torch.round(as_float / row_scales).to(torch.int8)
    accumulated = torch._int_mm(quantized, weight_int8.t())  # int32 (rows, out); the transpose is a view
    return accumulated.float().mul_(row_scales).mul_(scales.float()).to(COMPUTE_DTYPE)


ROW_CHUNK = 4096  # rows quantised at a time: the vocabulary matrix in float32 would be 545 MB at once


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``weight ≈ int8 * scale[:, None]``; returns (int8 (out, in), scales (out,))."""
    rows = weight.shape[0]
    quantized = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(rows, dtype=COMPUTE_DTYPE)
    for start in range(0, rows, ROW_CHUNK):
        w = weight[start : start + ROW_CHUNK].detach().float()
        # Round the scales to bf16 first and quantise against those, so int8 * stored scale is what we meant.
        chunk_scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8).to(COMPUTE_DTYPE)
        quantized[start : start + ROW_CHUNK] = torch.round(w / chunk_scales.float()[:, None]).clamp(-128, 127)
        scales[start : start + ROW_CHUNK] = chunk_scales
    return quantized, scales


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights and bf16 scales; computes in bf16."""

    def __init__(self, weight_int8: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(COMPUTE_DTYPE), requires_grad=False)
        self.in_features, self.out_features = weight_int8.shape[1], weight_int8.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantise an existing Linear."""
        return cls(*quantize_rows(linear.weight), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ (int8 * scales).T + bias`` in one 2-D kernel call (int8 activations inside int8_activations)."""
        flat = x.reshape(-1, x.shape[-1]).to(COMPUTE_DTYPE)
        if getattr(_activation_mode, "int8", False):
            out = int8_matmul_per_row(flat, self.weight_int8, self.scales)
        else:
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows with bf16 scales (shared with an Int8Linear head when tied)."""

    def __init__(self, weight_int8: torch.Tensor, scales: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)
        self.num_embeddings, self.embedding_dim = weight_int8.shape

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows for ``ids``, dequantised to bf16."""
        return self.weight_int8[ids].to(COMPUTE_DTYPE) * self.scales[ids].unsqueeze(-1)


def quantize_model(model: nn.Module) -> nn.Module:
    """Replace every Linear (and the embedding) by its int8 form in place, one module at a time."""
    input_embeddings = model.get_input_embeddings()
    if isinstance(input_embeddings, Int8Embedding):
        return model  # quantised while loading
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is input_embeddings.weight
    quantized_embedding = Int8Embedding(*quantize_rows(input_embeddings.weight))
    model.set_input_embeddings(quantized_embedding)
    if tied:
        model.set_output_embeddings(Int8Linear(quantized_embedding.weight_int8, quantized_embedding.scales, None))
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):  # the untied head too
                setattr(module, child_name, Int8Linear.from_linear(child))
    gc.collect()
    return model
