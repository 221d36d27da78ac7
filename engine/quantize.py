"""Weight-only int8: each weight row stored as int8 with one bf16 scale, activations stay bf16.

Decoding reads every weight once per token, so halving the bytes read speeds it up almost in proportion, and the
model takes half the memory. Activations are not quantised: the dynamic int8 recipe that quantises them too
(``quantize_dynamic``) cost 10-19 points of sentiment accuracy on the stand-in model. The matmul is torch's own
CPU kernel for exactly this layout, ``aten._weight_int8pack_mm``.

The output head and the input embedding share one int8 matrix when the model ties them (per-row scales suit both:
a head row is a vocabulary entry, and so is an embedding row).
"""

from __future__ import annotations

import gc

import torch
from torch import nn

COMPUTE_DTYPE = torch.bfloat16


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
        """``x @ (int8 * scales).T + bias`` as one 2-D kernel call."""
        flat = x.reshape(-1, x.shape[-1]).to(COMPUTE_DTYPE)
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
