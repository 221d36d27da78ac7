"""How a layer's norms and projections are computed: the one thing that differs between the fast paths' layers.

The decoder layer (engine/kernels/layer.py) is written once and asks its arithmetic three things: the normed input of
a projection, an input quantised for a projection, and the projection itself.

- :data:`MODULES`: the model's own norm and projection modules in the model's dtype, exactly what transformers'
  forward computes (any precision; batched decoding).
- :data:`PACKED_ROWS` and :data:`PACKED_ROW`: oneDNN-packed int8 projections (engine/kernels/int8.py) on a float32
  residual stream, writing float32, so nothing converts between them. An RMSNorm is never applied as such: its
  weight multiplies the input before quantisation and its 1/rms, one number per row, joins the row's activation
  scale, which the int8 kernel applies anyway (:class:`FoldedNorm`). PACKED_ROW is the same arithmetic for a
  single row with its scale and zero point as Python numbers, which a single chat's decode step pays less for than
  for the small tensors of PACKED_ROWS.
- :class:`FloatStreamArithmetic`: the model's own modules (any precision) on a float32 residual stream, each
  projection's input cast to the modules' dtype and its output back to float32 (a prompt pass over a stack that is
  not packed: an adapted analyst's, engine/kernels/low_rank.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from engine.kernels.activations import QuantizedActivations, quantize_one_row, quantize_rows_of_activations
from engine.kernels.int8 import Int8Linear

OneRow = tuple[torch.Tensor, float, int]  # uint8 values (1, in), scale, zero point: ``scale * (values - zero_point)``


@dataclass(frozen=True)
class FoldedNorm:
    """An RMSNorm's weight and epsilon, to be folded into the quantisation of the next projection's input."""

    gain: torch.Tensor  # float32 (hidden,)
    eps: float

    @classmethod
    def of(cls, norm: nn.Module) -> FoldedNorm | None:
        """The fold of an RMSNorm module (a ``weight`` and a float ``variance_epsilon``), else None."""
        weight, eps = getattr(norm, "weight", None), getattr(norm, "variance_epsilon", None)
        if not isinstance(weight, torch.Tensor) or not isinstance(eps, float):
            return None
        return cls(weight.detach().float(), eps)

    def rows(self, hidden: torch.Tensor) -> QuantizedActivations:
        """RMSNorm(hidden) * gain for rows (rows, hidden), quantised per row: each row's 1/rms rides in its scale
        (one row too: :class:`PackedRowsArithmetic`)."""
        return quantize_rows_of_activations(hidden, self.gain, self.eps, one_row_as_numbers=False)

    def one_row(self, hidden: torch.Tensor) -> OneRow:
        """The same for one row (1, hidden), its scale and zero point as Python numbers."""
        return quantize_one_row(hidden, self.gain, self.eps)


class Arithmetic(Protocol):
    """What the decoder layer asks of the way its numbers are computed."""

    def normed(self, hidden: torch.Tensor, norm: Any) -> Any:
        """``norm`` applied to ``hidden``, ready to be projected."""
        ...

    def quantized(self, x: torch.Tensor) -> Any:
        """``x`` ready to be projected."""
        ...

    def project(self, linear: nn.Module, x: Any) -> torch.Tensor:
        """``linear`` applied to what :meth:`normed` or :meth:`quantized` returned."""
        ...


class ModuleArithmetic:
    """The model's own modules in its dtype: norms are the RMSNorm modules, projections any linear layer."""

    @staticmethod
    def normed(hidden: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return norm(hidden)

    @staticmethod
    def quantized(x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def project(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return linear(x)


class FloatStreamArithmetic:
    """The model's own modules on a float32 residual stream: norms compute in float32 (as transformers' RMSNorm
    does inside), projections take their input in ``dtype`` (the weights') and give float32 back."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    @staticmethod
    def normed(hidden: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return norm(hidden)

    @staticmethod
    def quantized(x: torch.Tensor) -> torch.Tensor:
        return x

    def project(self, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return linear(x.to(self.dtype)).float()


class PackedRowsArithmetic:
    """Packed int8 projections of float32 rows, each row quantised with its own scale and zero point, as tensors
    even for one row, so that a row's numbers do not depend on how many rows come with it (a prompt pass's last
    layer keeps one row per message: alone, that is one row in all). :class:`PackedRowArithmetic` is the one-row
    form a single chat's decode step uses."""

    @staticmethod
    def normed(hidden: torch.Tensor, norm: FoldedNorm) -> QuantizedActivations:
        return norm.rows(hidden)

    @staticmethod
    def quantized(x: torch.Tensor) -> QuantizedActivations:
        return quantize_rows_of_activations(x, one_row_as_numbers=False)

    @staticmethod
    def project(linear: Int8Linear, x: QuantizedActivations) -> torch.Tensor:
        return linear.forward_quantized(x, torch.float32)


class PackedRowArithmetic:
    """Packed int8 projections of ONE float32 row, its scale and zero point as Python numbers."""

    @staticmethod
    def normed(hidden: torch.Tensor, norm: FoldedNorm) -> OneRow:
        return norm.one_row(hidden)

    @staticmethod
    def quantized(x: torch.Tensor) -> OneRow:
        return quantize_one_row(x)

    @staticmethod
    def project(linear: Int8Linear, x: OneRow) -> torch.Tensor:
        return linear.one_row(*x)


MODULES = ModuleArithmetic()
PACKED_ROWS = PackedRowsArithmetic()
PACKED_ROW = PackedRowArithmetic()
