"""Building a model one weight at a time: shared by the GGUF and safetensors loaders, so that loading never holds
much more than the finished model."""

from __future__ import annotations

import torch

from engine.kernels.int8 import Int8Embedding, Int8Linear, quantize_rows


def set_parameter(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Put ``value`` in as the model's parameter ``name`` (dotted path), replacing a placeholder on the meta device."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    setattr(module, attr, torch.nn.Parameter(value, requires_grad=False))


def quantize_in_place(model: torch.nn.Module, target: str, tied: bool) -> bool:
    """Turn the module that just received weight ``target`` into its int8 form (only once its weight is in); with
    ``tied``, the embedding's int8 matrix also becomes the output head. Returns whether ``target`` was quantised
    (False for norms, biases and the like, which stay as they are)."""
    module_name, _, attr = target.rpartition(".")
    module = model.get_submodule(module_name)
    if attr != "weight":
        return False
    if module is model.get_input_embeddings():
        embedding = Int8Embedding(*quantize_rows(module.weight))
        model.set_input_embeddings(embedding)
        if tied:
            model.set_output_embeddings(Int8Linear(embedding.weight_int8, embedding.scales, None))
        return True
    if isinstance(module, torch.nn.Linear):
        parent_name, _, child = module_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear.from_linear(module))
        return True
    return False
