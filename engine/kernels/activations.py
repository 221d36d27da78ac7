"""Activations as int8 products take them: each row (one token) quantised on its own.

The packed int8 layers (engine/kernels/int8.py) take uint8 rows with a scale and a zero point each
(:func:`quantize_rows_of_activations`, an RMSNorm optionally folded in: engine.kernels.arithmetic.FoldedNorm); a
single row's scale and zero point can come as Python numbers (:func:`quantize_one_row`), which a decode step pays
less for. The output head, when many chats decode together, takes symmetric int8 rows (:func:`symmetric_rows`).
Where the AVX2 kernel is used (engine.kernels.native), it quantises a row in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.kernels import native
from engine.kernels.native import SEVEN_BIT_MAX
from engine.settings import cpu_has_int8_dot_products

# The highest uint8 value an activation for oneDNN's products may take. Without int8 dot-product instructions
# (AVX2-only CPUs), oneDNN multiplies uint8 by int8 with vpmaddubsw, which adds pairs of products into int16 and
# saturates: two products of 255 * 127 overflow it and the sum comes back wrong. Seven bits (0..127) keep every pair
# within int16, at the cost of one bit of activation precision; with VNNI the products accumulate in int32 and all
# eight bits are used. Where the AVX2 kernel does the products, it quantises the activations itself, always to
# seven bits (native.SEVEN_BIT_MAX), whatever this says: see activation_max().
ONEDNN_ACTIVATION_MAX = 255 if cpu_has_int8_dot_products() else SEVEN_BIT_MAX


def activation_max() -> int:
    """The top of the uint8 range activations are quantised to here: seven bits where the AVX2 kernel does the
    products, else :data:`ONEDNN_ACTIVATION_MAX`."""
    return SEVEN_BIT_MAX if native.avx2_int8() is not None else ONEDNN_ACTIVATION_MAX


@dataclass(frozen=True)
class QuantizedActivations:
    """Rows of activations as uint8: ``x[r] ≈ scales[r] * (values[r] - zero_points[r])``."""

    values: torch.Tensor  # uint8 (rows, in)
    scales: torch.Tensor | None = None  # float32 (rows, 1); None for a single row (see single_row)
    zero_points: torch.Tensor | None = None  # float32 (rows, 1), whole numbers in [0, activation_max()]
    single_row: tuple[float, int] | None = None  # (scale, zero point) as Python numbers when there is one row

    def dequantized(self) -> torch.Tensor:
        """The rows these values stand for, (rows, in) in float32: what a projection of them multiplies."""
        if self.single_row is not None:
            scale, zero_point = self.single_row
            return self.values.float().sub_(zero_point).mul_(scale)
        assert self.scales is not None and self.zero_points is not None
        return self.values.float().sub_(self.zero_points).mul_(self.scales)


def quantize_rows_of_activations(
    flat: torch.Tensor, gain: torch.Tensor | None = None, eps: float = 0.0, *, one_row_as_numbers: bool = True
) -> QuantizedActivations:
    """Asymmetric uint8 quantisation of each row of ``flat`` (rows, in) on its own (range widened to include 0).

    Asymmetric, because activations are often lopsided (after SiLU, or with one large channel): with every layer
    quantised this way the next-token distribution was closer to fp32's than with one symmetric scale per row
    (mean KL 0.0050 vs 0.0073, bench/RESULTS.md).

    With ``gain`` (float32 (in,)), the rows quantised are ``RMSNorm(flat) * gain`` with epsilon ``eps``: ``flat *
    gain`` is quantised and each row's 1/rms joins its scale (engine.kernels.arithmetic.FoldedNorm). Where the AVX2
    kernel is used, it does all of this in one call (about twenty small tensor operations otherwise).

    A single row comes with its scale and zero point as Python numbers (cheaper for a decode step, but multiplied in
    another order) unless ``one_row_as_numbers`` is False: prompt passes keep one arithmetic for any number of rows.
    """
    if flat.shape[0] == 1 and one_row_as_numbers:  # a decode step: plain numbers cost less than six small tensor ops
        values, scale, zero_point = quantize_one_row(flat.float(), gain, eps)
        return QuantizedActivations(values, single_row=(scale, zero_point))
    kernel = native.avx2_int8()
    if kernel is not None:
        return QuantizedActivations(*kernel.quantize_rows(flat, gain, eps))
    as_float = flat.float()
    inverse_rms = None if gain is None else as_float.square().mean(dim=-1, keepdim=True).add_(eps).rsqrt_()
    if gain is not None:
        as_float = as_float * gain
    # Two reductions: torch.aminmax along a dimension measured 7-10x slower than amin and amax (torch 2.13, CPU).
    low = as_float.amin(dim=-1, keepdim=True).clamp_(max=0)
    high = as_float.amax(dim=-1, keepdim=True).clamp_(min=0)
    scales = high.sub_(low).div_(float(ONEDNN_ACTIVATION_MAX)).clamp_(min=1e-12)
    inverse = scales.reciprocal()
    zero_points = low.mul_(inverse).neg_().round_()
    values = as_float.mul(inverse).round_().add_(zero_points).clamp_(0, ONEDNN_ACTIVATION_MAX).to(torch.uint8)
    return QuantizedActivations(values, scales if inverse_rms is None else scales * inverse_rms, zero_points)


def quantize_one_row(
    row: torch.Tensor, gain: torch.Tensor | None = None, eps: float = 0.0
) -> tuple[torch.Tensor, float, int]:
    """One float32 row (1, in) as asymmetric uint8 with its scale and zero point as Python numbers:
    ``row ≈ scale * (values - zero_point)``; ``gain`` and ``eps`` as for :func:`quantize_rows_of_activations`."""
    kernel = native.avx2_int8()
    if kernel is not None:
        return kernel.quantize_row(row, gain, eps)
    if gain is not None:
        mean_square = float(torch.linalg.vector_norm(row)) ** 2 / row.shape[-1]
        values, scale, zero_point = quantize_one_row(row * gain)
        return values, scale / math.sqrt(mean_square + eps), zero_point
    low, high = (float(v) for v in torch.aminmax(row))
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / ONEDNN_ACTIVATION_MAX, 1e-12)
    zero_point = round(-low / scale)
    values = row.mul(1.0 / scale).round_().add_(zero_point).clamp_(0, ONEDNN_ACTIVATION_MAX).to(torch.uint8)
    return values, scale, zero_point


def symmetric_rows(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of ``flat`` (rows, in) as int8 in -127..127 with its own scale: (values, scales (rows, 1) float32)."""
    as_float = flat.float()
    row_scales = as_float.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-8).div_(127.0)  # (rows, 1)
    return torch.round(as_float / row_scales).to(torch.int8), row_scales
