"""int8 weights: each weight row stored as int8 with one bf16 scale.

Decoding reads every weight once per token, so halving the bytes read speeds it up almost in proportion, and the
model takes half the memory. Without oneDNN (below), replies keep their activations in bf16 (weight-only int8),
computed by torch's own CPU kernel for exactly this layout, ``aten._weight_int8pack_mm``, and classification (many
tokens per pass, compute-bound) also quantises the activations, on the copy of the model that
:func:`with_int8_activations` makes for it: each input row (one token) gets its own int8 scale and the product runs
on the CPU's int8 dot products (``torch._int_mm``). Per-token scales keep sentiment accuracy within a point of fp32
on both dev sets (README, Sentiment quality), where ``quantize_dynamic``'s one scale per batch cost 10-19 points.

The output head and the input embedding share one int8 matrix when the model ties them (per-row scales suit both:
a head row is a vocabulary entry, and so is an embedding row).

Where torch has oneDNN's int8 matmul (x86 builds), :func:`pack_linears` goes further for every linear layer but the
output head: the weights move into oneDNN's packed layout (replacing the plain copy, so memory does not grow) and
the layer always quantises its input, each row with its own asymmetric uint8 scale and zero point
(engine.kernels.activations.quantize_rows_of_activations). On the 2-core test server this kernel costs about the
same as the weight-only one for a single token but stays nearly flat as rows are added (16 rows: 3.4x faster, a 64-token
prompt: 4.8x), so long prompts, classification and batched decoding of many chats get faster (a single chat's
decode step and classification then skip transformers' forward: engine/kernels/decode.py and prompt_pass.py). The
price is a little distance from bf16 (mean KL to fp32 0.0034 against weight-only's 0.0016; bench/RESULTS.md); the
head is not packed, as the vocabulary-sized matrix is shared with the embedding and the most sensitive to activation
rounding. It stays weight-only except when nine or more chats decode together, where the decode step computes it
with int8 activations (engine.kernels.decode.HEAD_INT8_ACTIVATION_ROWS).

On CPUs with AVX2 but no int8 dot products, packing keeps the plain int8 rows instead and
:mod:`engine.kernels.native`'s AVX2 kernel computes the same products from the same seven-bit activations (exact
integer sums, as oneDNN's): there oneDNN streams a single row's weights at half the memory bandwidth, which is what a
reply's every token waits on (bench/RESULTS.md, "The AVX2 int8 kernel").
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Sequence

import torch
from torch import nn

from engine.kernels import native
from engine.kernels.activations import QuantizedActivations, quantize_rows_of_activations, symmetric_rows

COMPUTE_DTYPE = torch.bfloat16


def int8_matmul_per_row(flat: torch.Tensor, weight_int8: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``flat @ (int8 * scales).T`` with ``flat`` (rows, in) quantised to int8 with one scale per row; returns
    (rows, out) in bf16."""
    quantized, row_scales = symmetric_rows(flat)
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


def onednn_int8_available() -> bool:
    """Whether this torch build has oneDNN's int8 matmul with packed weights (x86 builds do)."""
    onednn = getattr(torch.ops, "onednn", None)
    return bool(torch.backends.mkldnn.is_available() and onednn is not None
                and hasattr(onednn, "qlinear_prepack") and hasattr(onednn, "qlinear_pointwise"))


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights and bf16 scales; computes in bf16.

    After :meth:`pack` the weights live only in oneDNN's packed layout (or, for the AVX2 kernel, as the plain rows
    it reads) and every input is quantised per row. Unpacked, it keeps its input in bf16 (weight-only), unless
    ``int8_activations`` is set: then each input row is quantised to int8 too (W8A8). Only
    :func:`with_int8_activations` sets it, on a copy that shares the weights. Where the AVX2 kernel is used, unpacked
    layers (the output head) compute in it either way (weight-only, or int8 x int8 with ``int8_activations``): there
    it is faster than torch's kernels.
    """

    int8_activations = False
    kernel: native.Avx2Int8 | None = None  # set by pack() on AVX2 CPUs without int8 dot products

    def __init__(self, weight_int8: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(COMPUTE_DTYPE), requires_grad=False)
        self.in_features, self.out_features = weight_int8.shape[1], weight_int8.shape[0]
        self.packed: torch.Tensor | None = None
        self._shared: tuple[FusedInt8Projections, int] | None = None

    def share(self, owner: FusedInt8Projections, index: int) -> None:
        """Compute this layer as output ``index`` of ``owner`` from now on, dropping its own weights."""
        object.__setattr__(self, "_shared", (owner, index))  # a plain reference: not a submodule of this layer
        self.weight_int8 = None
        self.scales = None
        self.bias = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantise an existing Linear."""
        return cls(*quantize_rows(linear.weight), linear.bias)

    def pack(self, *, native_kernel: bool = True) -> None:
        """Move the weights into oneDNN's packed int8 layout, dropping the plain copy (see the module docstring); on
        an AVX2 CPU without int8 dot products, keep the plain rows for the AVX2 kernel instead (engine.kernels.native),
        unless ``native_kernel`` is False (benchmarks compare the two)."""
        weight = self.weight_int8
        self.kernel = native.avx2_int8() if native_kernel else None
        if self.kernel is not None:
            self.packed = weight.contiguous()  # the kernel reads quantize_rows' layout as it is
        else:
            self.packed = torch.ops.onednn.qlinear_prepack(weight, None)
            self.register_buffer(  # oneDNN's argument for the weights' zero points (symmetric: all 0)
                "zero_weight_points", torch.zeros(self.out_features, dtype=torch.long), persistent=False
            )
        self.register_buffer("float_scales", self.scales.float(), persistent=False)
        # Σ_k w[o, k] * scale[o]: what a zero point shifts each output by.
        self.register_buffer("column_sums", weight.float().sum(dim=1).mul_(self.float_scales), persistent=False)
        self.register_buffer("float_bias", None if self.bias is None else self.bias.float(), persistent=False)
        self.weight_int8 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ (int8 * scales).T + bias`` in one 2-D kernel call (int8 activations when packed or when
        ``int8_activations`` is set)."""
        if self._shared is not None:
            owner, index = self._shared
            return owner.part(x, index)
        flat = x.reshape(-1, x.shape[-1]).to(COMPUTE_DTYPE)
        if self.packed is not None:
            return self.forward_quantized(quantize_rows_of_activations(flat)).view(*x.shape[:-1], self.out_features)
        kernel = native.avx2_int8()
        if kernel is not None and self.weight_int8.is_contiguous():
            # The output head on AVX2 without int8 dot products: torch's weight-only kernel reads one row's weights
            # below memory speed there, and torch._int_mm is many times slower still without VNNI
            # (bench/RESULTS.md); the AVX2 kernel computes both forms, with the same per-row int8 as _int_mm's.
            if self.int8_activations:
                out = kernel.signed_matmul(*symmetric_rows(flat), self.weight_int8, self.float_weight_scales())
            else:
                out = kernel.weight_only_matmul(flat, self.weight_int8, self.float_weight_scales())
            out = out.to(COMPUTE_DTYPE)
        elif self.int8_activations:
            out = int8_matmul_per_row(flat, self.weight_int8, self.scales)
        else:
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def float_weight_scales(self) -> torch.Tensor:
        """The weight scales in float32 (made once per scales tensor; the AVX2 weight-only product reads them so)."""
        scales, floats = self.__dict__.get("_float_weight_scales", (None, None))
        if scales is not self.scales:  # first use, or the scales were replaced (engine.kernels.layer.fuse_rows)
            scales, floats = self.scales, self.scales.float()
            self.__dict__["_float_weight_scales"] = (scales, floats)
        return floats

    def one_row(
        self, values: torch.Tensor, scale: float, zero_point: int, out_dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The packed layer's output (1, out), bias included, for one uint8 row ``scale * (values - zero_point)``."""
        if self.kernel is not None:
            out = self.kernel.matmul(values, self.packed, self.float_scales, self.column_sums, self.float_bias,
                                     scale=scale, zero_point=zero_point)
            return out if out_dtype == torch.float32 else out.to(out_dtype)
        return torch.ops.onednn.qlinear_pointwise(
            values, scale, zero_point, self.packed, self.float_scales, self.zero_weight_points,
            self.float_bias, 1.0, 0, out_dtype, "none", [], "",
        )

    def forward_quantized(
        self, activations: QuantizedActivations, out_dtype: torch.dtype = COMPUTE_DTYPE
    ) -> torch.Tensor:
        """The packed layer's output (rows, out) in ``out_dtype`` for already quantised input rows."""
        if activations.single_row is not None:  # the kernel applies the row's scale and zero point itself
            # Asked for bf16 output directly, oneDNN took a reference path on an AVX2-only CPU: ~200x slower than
            # float32 output (bench/RESULTS.md); the conversion of one row afterwards costs next to nothing.
            return self.one_row(activations.values, *activations.single_row, torch.float32).to(out_dtype)
        assert activations.scales is not None and activations.zero_points is not None
        if self.kernel is not None:
            return self.kernel.matmul(
                activations.values, self.packed, self.float_scales, self.column_sums, self.float_bias,
                row_scales=activations.scales, zero_points=activations.zero_points,
            ).to(out_dtype)
        # Several rows, each with its own scale and zero point: oneDNN multiplies the raw uint8 values, and the
        # per-row affine correction follows, so no row's result depends on another's range.
        accumulated = torch.ops.onednn.qlinear_pointwise(
            activations.values, 1.0, 0, self.packed, self.float_scales, self.zero_weight_points,
            None, 1.0, 0, torch.float32, "none", [], "",
        )
        out = torch.addr(accumulated, activations.zero_points.view(-1), self.column_sums, alpha=-1)
        out = out.mul_(activations.scales)
        if self.float_bias is not None:
            out = out.add_(self.float_bias)
        return out.to(out_dtype)


class FusedInt8Projections(nn.Module):
    """Projections of the same input (q/k/v, or gate/up) as one packed int8 matrix, computed by one kernel call.

    oneDNN's per-call cost is what dominates a single decode token's small projections, so three calls for q, k and
    v cost more than one for all three. The model's own layers stay where transformers calls them, each turned into
    a slice of this one (:meth:`Int8Linear.share`): the first of them computes all outputs for an input and the
    others take theirs, so memory holds each weight once and the prompt path makes one call too.
    """

    def __init__(self, linears: Sequence[Int8Linear]) -> None:
        super().__init__()
        biases = [layer.bias for layer in linears]
        bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])  # type: ignore[union-attr]
        self.fused = Int8Linear(
            torch.cat([layer.weight_int8 for layer in linears]), torch.cat([layer.scales for layer in linears]), bias
        )
        self.fused.pack()
        self.widths = [layer.out_features for layer in linears]
        self.out_features = sum(self.widths)
        self._input: torch.Tensor | None = None
        self._outputs: tuple[torch.Tensor, ...] = ()
        for index, layer in enumerate(linears):
            layer.share(self, index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All the projections of ``x``, side by side on the last dimension."""
        return self.fused(x)

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Projection ``index`` of ``x``, computed with the others on first request and handed out once."""
        if self._input is not x:
            self._outputs = self.fused(x).split(self.widths, dim=-1)
            self._input = x
        output = self._outputs[index]
        if index == len(self.widths) - 1:  # the last one asked for: let the input and outputs go
            self._input, self._outputs = None, ()
        return output


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


def pack_linears(model: nn.Module) -> int:
    """Pack every :class:`Int8Linear` but the output head for oneDNN's int8 matmul (see the module docstring);
    returns how many were packed, 0 where torch has no oneDNN. Layers already fused into a
    :class:`FusedInt8Projections` (engine.kernels.layer.fuse_rows) are packed there."""
    if not onednn_int8_available():
        return 0
    head = model.get_output_embeddings()
    packed = 0
    for module in model.modules():
        plain = type(module) is Int8Linear and module.weight_int8 is not None and module.packed is None
        if plain and module is not head:
            module.pack()  # drops the plain weights: their memory goes as soon as the reference does
            packed += 1
    return packed


def with_int8_activations(model: nn.Module) -> nn.Module:
    """``model`` as compute-bound passes (classification) run it: a copy of its module tree that shares every tensor,
    in which each :class:`Int8Linear` also quantises its input rows (W8A8). ``model`` itself when it has no int8
    layer whose input is not quantised anyway (float models; packed layers always quantise theirs).

    Built once at load time, so the choice between weight-only and W8A8 is which tree a caller runs, not a switch.
    """
    if not any(type(m) is Int8Linear and m.packed is None and m._shared is None for m in model.modules()):
        return model
    return _copy_tree(model, {})


def _copy_tree(module: nn.Module, twins: dict[int, nn.Module]) -> nn.Module:
    """A copy of ``module`` and its submodules with their own containers (parameters, buffers, hooks), holding the
    same tensors and other attributes; a module met twice is copied once."""
    if id(module) in twins:
        return twins[id(module)]
    twin = type(module).__new__(type(module))
    twins[id(module)] = twin
    # Containers are copied so that nothing added to one tree later (hooks, say) shows up in the other.
    twin.__dict__.update({
        name: copy.copy(value) if isinstance(value, (dict, set)) else value for name, value in module.__dict__.items()
    })
    twin.__dict__["_modules"] = {
        name: None if child is None else _copy_tree(child, twins) for name, child in module._modules.items()
    }
    if isinstance(twin, Int8Linear):
        twin.__dict__["int8_activations"] = True
    return twin
