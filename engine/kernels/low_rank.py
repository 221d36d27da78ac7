"""Low-rank (LoRA) updates on a stack's projections, for a prompt pass that runs them besides the shared base layers.

An update adds ``scaling * (x @ A.T) @ B.T`` to a projection's output (peft's convention), computed in float32 from
the projection's input as the pass feeds it: float rows as they are, quantised rows (packed int8) dequantised, so
the update sees exactly the numbers the base projection multiplies. Fused projections (q/k/v, gate/up) get one
update: the A matrices stacked, and a block-diagonal B whose zero blocks leave the projections without an update
alone, so a layer still makes one small matmul pair per fused projection.

:func:`adapted_stack` is a second :class:`~engine.kernels.layer.Stack` over the same modules: only the adapted
projections are wrapped (:class:`AdaptedProjection` holds the base module, not a copy), so nothing full-size is
added and whatever else runs the model (replies, the unadapted analyst) never meets an update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import nn

from engine.kernels.activations import QuantizedActivations
from engine.kernels.arithmetic import Arithmetic, OneRow
from engine.kernels.layer import Stack

# A Layer's fused projections and the model projections each one computes, outputs side by side in this order.
FUSED_PROJECTIONS: dict[str, tuple[str, ...]] = {
    "qkv": ("q_proj", "k_proj", "v_proj"),
    "output": ("o_proj",),
    "gate_up": ("gate_proj", "up_proj"),
    "down": ("down_proj",),
}


class LowRankPair(Protocol):
    """One projection's trained matrices: ``a`` (rank, in_features), ``b`` (out_features, rank)."""

    a: torch.Tensor
    b: torch.Tensor


class LowRankUpdate(nn.Module):
    """``x @ A.T @ B.T`` for rows x (rows, in) in float32, the scaling folded into B."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a.float().contiguous())  # (rank, in)
        self.register_buffer("b", b.float().contiguous())  # (out, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The update (rows, out) for float32 rows (rows, in)."""
        return nn.functional.linear(nn.functional.linear(x, self.a), self.b)

    @classmethod
    def fused(cls, widths: Sequence[int], in_features: int, pairs: Sequence[LowRankPair | None],
              scaling: float) -> LowRankUpdate:
        """One update for projections of one input whose outputs (``widths``) lie side by side; ``pairs[i]`` is
        projection i's matrices or None (no update there). ValueError when a pair's shape does not fit."""
        present = [(i, pair) for i, pair in enumerate(pairs) if pair is not None]
        rank = sum(pair.a.shape[0] for _, pair in present)
        a = torch.cat([pair.a.float() for _, pair in present])  # (rank, in): the ranks stacked
        b = torch.zeros(sum(widths), rank)  # block-diagonal: each projection's rows read only its own ranks
        starts = [sum(widths[:i]) for i in range(len(widths))]
        column = 0
        for i, pair in present:
            if pair.a.shape[1] != in_features or pair.b.shape[0] != widths[i]:
                raise ValueError(
                    f"shapes {tuple(pair.a.shape)}, {tuple(pair.b.shape)} do not fit a projection of "
                    f"{in_features} inputs and {widths[i]} outputs"
                )
            width, pair_rank = widths[i], pair.a.shape[0]
            b[starts[i] : starts[i] + width, column : column + pair_rank] = pair.b.float() * scaling
            column += pair_rank
        return cls(a, b)


class AdaptedProjection(nn.Module):
    """A base projection (shared, never copied) with a low-rank update on its output."""

    def __init__(self, base: nn.Module, update: LowRankUpdate) -> None:
        super().__init__()
        self.base, self.update = base, update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``base(x)`` plus the update of ``x``, in the base's output dtype."""
        out = self.base(x)
        return out + self.update(x.float()).to(out.dtype)


class LowRankArithmetic:
    """Another arithmetic (engine/kernels/arithmetic.py) whose projections also add their low-rank update, computed
    in float32 from the input the base projection gets (dequantised where it is quantised)."""

    def __init__(self, inner: Arithmetic) -> None:
        self.inner = inner

    def normed(self, hidden: torch.Tensor, norm: Any) -> Any:
        return self.inner.normed(hidden, norm)

    def quantized(self, x: torch.Tensor) -> Any:
        return self.inner.quantized(x)

    def project(self, linear: nn.Module, x: Any) -> torch.Tensor:
        if not isinstance(linear, AdaptedProjection):
            return self.inner.project(linear, x)
        out = self.inner.project(linear.base, x)
        return out + linear.update(float_rows(x)).to(out.dtype)


def float_rows(x: torch.Tensor | QuantizedActivations | OneRow) -> torch.Tensor:
    """The float32 rows a projection input stands for."""
    if isinstance(x, QuantizedActivations):
        return x.dequantized()
    if isinstance(x, tuple):  # one row: (uint8 values, scale, zero point)
        values, scale, zero_point = x
        return values.float().sub_(zero_point).mul_(scale)
    return x.float()


def adapted_stack(stack: Stack, pairs: Mapping[tuple[int, str], LowRankPair], scaling: float) -> Stack:
    """``stack`` with the projections ``pairs`` names ((layer index, projection name) -> matrices) wrapped in their
    update; every other module is the stack's own. ValueError names a pair that does not fit the model."""
    shape = stack.shape
    known = {name for names in FUSED_PROJECTIONS.values() for name in names}
    for index, projection in pairs:
        if projection not in known or not 0 <= index < len(stack.layers):
            raise ValueError(f"layer {index} {projection}: the model has no such projection")
    layers = list(stack.layers)
    for index, layer in enumerate(stack.layers):
        changes: dict[str, nn.Module] = {}
        for field_name, names in FUSED_PROJECTIONS.items():
            found = [pairs.get((index, name)) for name in names]
            if all(pair is None for pair in found):
                continue
            module = getattr(layer, field_name)
            in_features, out_features = _features(module)
            if field_name == "qkv":
                kv_width = shape.kv_heads * shape.head_dim
                widths = [out_features - 2 * kv_width, kv_width, kv_width]
            else:
                widths = [out_features // len(names)] * len(names)
            try:
                update = LowRankUpdate.fused(widths, in_features, found, scaling)
            except ValueError as exc:
                names_given = "/".join(n for n, p in zip(names, found, strict=True) if p is not None)
                raise ValueError(f"layer {index} {names_given}: {exc}") from None
            changes[field_name] = AdaptedProjection(module, update)
        if changes:
            layers[index] = replace(layer, **changes)
    return Stack(stack.inner, stack.head, layers, shape)


def _features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a projection module (a Linear, an Int8Linear, fused int8 projections)."""
    inner = getattr(module, "fused", module)  # FusedInt8Projections keeps its packed layer in .fused
    return int(inner.in_features), int(inner.out_features)


def update_nbytes(stack: Stack) -> int:
    """Bytes the low-rank updates of an adapted stack hold."""
    total = 0
    for layer in stack.layers:
        for field_name in FUSED_PROJECTIONS:
            module = getattr(layer, field_name)
            if isinstance(module, AdaptedProjection):
                total += sum(t.numel() * t.element_size() for t in module.update.buffers())
    return total

