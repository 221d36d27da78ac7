"""The decoder layer of a Qwen2- or Llama-shaped model, written once for every fast path, and the model as a stack.

transformers' generic model code wraps a layer's ~25 small operations in module calls, output-recording hooks, mask
construction and the attention-interface lookup, which on a 2-core CPU cost more than the operations themselves
when few tokens go through (2-3 ms of a ~24 ms int8 decode step for the 0.5B model). The fast paths compute the same
numbers directly, in the style of gpt-fast's hand-written model: :func:`run_layer` is the one layer they share.
What differs between them is passed in: the arithmetic of norms and projections (engine/kernels/arithmetic.py) and
the attention block, which knows where keys and values live (a decode step's cache, or a prompt pass's prefix).

The query/key/value projections run as one matmul and the gate/up projections as another (:func:`fuse_rows`). The
fused weights are built once, and the model's own q/k/v and gate/up layers are re-pointed at row slices of them (in
int8 with oneDNN: become slices of one packed matrix, engine.kernels.int8.FusedInt8Projections), so the memory does
not grow and transformers' forward (used for prompts) computes exactly what it did before.

Models of other shapes (anything but ``qwen2``/``llama`` with SiLU, RMSNorm and full attention) get no stack and keep
transformers' forward for everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from engine.kernels import int8
from engine.kernels.arithmetic import Arithmetic, FoldedNorm
from engine.kernels.int8 import FusedInt8Projections, Int8Linear

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = frozenset({"qwen2", "llama"})


@dataclass(frozen=True)
class AttentionShape:
    """The attention heads of every layer."""

    heads: int
    kv_heads: int
    head_dim: int
    scaling: float

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    @property
    def query_key_width(self) -> int:
        """Outputs of the fused projection that are queries and keys (the values follow them)."""
        return (self.heads + self.kv_heads) * self.head_dim


@dataclass(frozen=True)
class Layer:
    """One decoder layer's norms and (fused) projections, in the form its arithmetic computes them: the model's
    modules, or folded norms (engine.kernels.arithmetic.FoldedNorm) and packed int8 layers."""

    input_norm: Any
    qkv: nn.Module  # q, k and v projections as one matrix, q and k first
    output: nn.Module
    post_norm: Any
    gate_up: nn.Module  # gate and up projections as one matrix
    down: nn.Module


# The attention block of a layer: (layer index, fused q/k/v output, residual stream) -> (attention output ready for
# the output projection, residual stream; a prompt pass may keep fewer of its rows from here on).
AttentionBlock = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def run_layer(
    layer: Layer, arithmetic: Arithmetic, index: int, hidden: torch.Tensor, attention: AttentionBlock
) -> torch.Tensor:
    """The residual stream (rows, hidden) after decoder layer ``layer`` (number ``index``); updated in place."""
    qkv = arithmetic.project(layer.qkv, arithmetic.normed(hidden, layer.input_norm))  # (rows, q + k + v)
    attended, hidden = attention(index, qkv, hidden)
    hidden.add_(arithmetic.project(layer.output, arithmetic.quantized(attended)))
    gate, up = arithmetic.project(layer.gate_up, arithmetic.normed(hidden, layer.post_norm)).chunk(2, dim=-1)
    hidden.add_(arithmetic.project(layer.down, arithmetic.quantized(nn.functional.silu(gate).mul_(up))))
    return hidden


@dataclass(frozen=True)
class Stack:
    """A model as the fast paths run it: its embedding, rotary module and final norm (``inner``), its layers, its
    output head."""

    inner: nn.Module  # the transformers base model: embed_tokens, rotary_emb, norm
    head: nn.Module
    layers: Sequence[Layer]
    shape: AttentionShape


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why ``model`` cannot be run as a :class:`Stack`, or None when it can."""
    config = model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {config.model_type!r}"
    if getattr(config, "hidden_act", None) != "silu":
        return f"activation {getattr(config, 'hidden_act', None)!r}"
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return "sliding-window layers"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "tensor-parallel pretraining split"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or not hasattr(inner, "layers"):
        return "unexpected module layout"
    return None


def model_stack(model: PreTrainedModel) -> Stack | None:
    """The model's layers as its own modules, with q/k/v and gate/up fused (see the module docstring); None, and
    transformers' forward for everything, when the model's shape is not supported."""
    reason = unsupported_reason(model)
    if reason is None:
        try:
            return _model_stack(model)
        except ValueError as exc:
            reason = str(exc)
    logger.info("decoding through transformers' forward: %s is not supported by the fast paths", reason)
    return None


def _model_stack(model: PreTrainedModel) -> Stack:
    inner = model.model
    layers, shapes = [], set()
    for layer in inner.layers:
        attention, mlp = layer.self_attn, layer.mlp
        qkv = fuse_rows((attention.q_proj, attention.k_proj, attention.v_proj))
        gate_up = fuse_rows((mlp.gate_proj, mlp.up_proj))
        if qkv is None or gate_up is None:
            raise ValueError("projection layers of different kinds")
        head_dim = attention.head_dim
        shapes.add(AttentionShape(
            heads=attention.q_proj.out_features // head_dim, kv_heads=attention.k_proj.out_features // head_dim,
            head_dim=head_dim, scaling=attention.scaling,
        ))
        layers.append(Layer(layer.input_layernorm, qkv, attention.o_proj, layer.post_attention_layernorm, gate_up,
                            mlp.down_proj))
    if len(shapes) != 1:
        raise ValueError("layers of different attention shapes")
    return Stack(inner, model.get_output_embeddings(), layers, shapes.pop())


def packed_stack(stack: Stack) -> Stack | None:
    """``stack`` with folded norms and packed int8 layers (engine/kernels/arithmetic.py), or None unless every
    projection is packed int8 and every norm an RMSNorm with a weight and an epsilon."""
    packed = []
    for layer in stack.layers:
        linears = [packed_linear(m) for m in (layer.qkv, layer.output, layer.gate_up, layer.down)]
        input_norm, post_norm = FoldedNorm.of(layer.input_norm), FoldedNorm.of(layer.post_norm)
        if any(linear is None for linear in linears) or input_norm is None or post_norm is None:
            return None
        qkv, output, gate_up, down = linears
        packed.append(Layer(input_norm, qkv, output, post_norm, gate_up, down))  # type: ignore[arg-type]
    return Stack(stack.inner, stack.head, packed, stack.shape) if packed else None


def packed_linear(module: nn.Module) -> Int8Linear | None:
    """The packed int8 layer that computes ``module``, or None when it is not one."""
    if isinstance(module, FusedInt8Projections):
        return module.fused
    if type(module) is Int8Linear and module.packed is not None:
        return module
    return None


def fuse_rows(linears: Sequence[nn.Module]) -> nn.Module | None:
    """One layer computing ``linears`` (same input, outputs side by side) in one matmul, or None if they differ in
    kind. The originals are re-pointed at row slices of the fused weights, so no memory is added. With oneDNN, int8
    layers become one packed :class:`FusedInt8Projections` whose slices the originals then compute."""
    plain_int8 = all(type(layer) is Int8Linear and layer.packed is None for layer in linears)
    if plain_int8 and int8.onednn_int8_available():
        return FusedInt8Projections(linears)  # type: ignore[arg-type]
    if plain_int8:
        weight_name, scale_name = "weight_int8", "scales"
    elif all(type(layer) is nn.Linear for layer in linears):
        weight_name, scale_name = "weight", None
    else:
        return None
    biases = [layer.bias for layer in linears]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return None
    weight = torch.cat([getattr(layer, weight_name) for layer in linears])
    scales = torch.cat([layer.scales for layer in linears]) if scale_name else None
    bias = None if biases[0] is None else torch.cat(biases)
    start = 0
    for layer in linears:
        end = start + layer.out_features
        if scale_name:
            layer.weight_int8, layer.scales = weight[start:end], scales[start:end]
        else:
            layer.weight = nn.Parameter(weight[start:end], requires_grad=False)
        if bias is not None:
            layer.bias = nn.Parameter(bias[start:end], requires_grad=False)
        start = end
    if scale_name:
        return Int8Linear(weight, scales, bias)
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused
