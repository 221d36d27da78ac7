"""Load a GGUF file tensor by tensor, straight into the target dtype, so loading never needs much more RAM than
the finished model.

transformers' own GGUF path dequantises every tensor to float32 and keeps them all before building the model
(3.8 GB peak for a 0.5B model). Here the model skeleton is created without memory (accelerate's
``init_empty_weights``), then each tensor is dequantised (the two vocabulary-sized matrices in row chunks),
converted and put in place, and its float32 copy freed before the next one.

Tied embeddings: llama.cpp's converter often writes a tied model's matrix twice, as ``token_embd`` and ``output``,
quantised differently. When both are present and agree up to quantisation noise we keep one copy (the ``output``
one, usually the more precise) for both roles: the model Hugging Face ships, and 136M fewer parameters for Qwen2.5.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from engine.loading.memory import release_freed_memory
from engine.loading.streaming import quantize_in_place, set_parameter

logger = logging.getLogger(__name__)

EMBEDDING_NAMES = ("token_embd.weight", "output.weight")
ROW_CHUNK = 8192
TIE_TOLERANCE = 0.1  # relative difference of two quantisations of the same matrix (Q5_0 vs Q8_0: ~0.04)


def drop_vocabulary_fields(reader) -> None:
    """Forget the tokenizer fields a ``GGUFReader`` parsed (the tokenizer is loaded on its own).

    For Qwen's 151,936 tokens and merges they are ~300,000 small numpy objects. Dropped before the first weight is
    allocated, they free whole pages; dropped at the end of loading, they left 30-60 MB of pages that a few small
    allocations made in between kept resident (measured: the engine started at 983 MiB, now 924)."""
    for name in [name for name in reader.fields if name.startswith("tokenizer.")]:
        del reader.fields[name]


def _dequantize_rows(tensor, start: int, stop: int) -> np.ndarray:
    from gguf import dequantize

    return dequantize(tensor.data[start:stop], tensor.tensor_type)


def _same_matrix(first, second) -> bool:
    if tuple(first.shape) != tuple(second.shape):
        return False
    a, b = _dequantize_rows(first, 0, 256), _dequantize_rows(second, 0, 256)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)) < TIE_TOLERANCE


def _dequantize_in_chunks(tensor, dtype: torch.dtype) -> torch.Tensor:
    rows = tensor.data.shape[0]
    first = _dequantize_rows(tensor, 0, min(ROW_CHUNK, rows))
    out = torch.empty((rows, *first.shape[1:]), dtype=dtype)
    out[: first.shape[0]] = torch.from_numpy(first)
    for start in range(ROW_CHUNK, rows, ROW_CHUNK):
        out[start : start + ROW_CHUNK] = torch.from_numpy(_dequantize_rows(tensor, start, start + ROW_CHUNK))
    return out


def load_gguf_model(path: Path, dtype: torch.dtype, quantize_int8: bool = False) -> PreTrainedModel:
    """Build the transformers model for a GGUF file in ``dtype``, one tensor at a time.

    With ``quantize_int8`` every linear layer (and the embedding) is turned into weight-only int8 as soon as its
    weight is in, so the bf16 copy of the whole model never exists.
    """
    from accelerate import init_empty_weights
    from gguf import GGUFReader, dequantize
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
    )

    parsed = {"config": load_gguf_checkpoint(str(path), return_tensors=False)["config"]}  # drop the vocabulary
    config = CONFIG_MAPPING[parsed["config"]["model_type"]].from_dict(parsed["config"])
    gc.collect()
    release_freed_memory()  # the vocabulary parsed above is large and gone
    reader = GGUFReader(str(path))
    drop_vocabulary_fields(reader)
    tensors = {t.name: t for t in reader.tensors}
    tied = "output.weight" not in tensors or (
        "token_embd.weight" in tensors and _same_matrix(tensors["token_embd.weight"], tensors["output.weight"])
    )
    config.tie_word_embeddings = tied
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    architecture = parsed["config"].get("model_type", config.model_type)
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])
    names = get_gguf_hf_weights_map(model, processor)

    for gguf_name, tensor in tensors.items():
        if tied and gguf_name == "token_embd.weight" and "output.weight" in tensors:
            continue  # the output copy serves both roles
        target = names.get(gguf_name)
        if tied and gguf_name == "output.weight":
            target = names["token_embd.weight"]
        if target is None:
            continue
        if gguf_name in EMBEDDING_NAMES:
            value = _dequantize_in_chunks(tensor, dtype)
        else:
            processed = processor.process(
                weights=dequantize(tensor.data, tensor.tensor_type), name=gguf_name,
                tensor_key_mapping=names, parsed_parameters=parsed,
            )
            value = torch.from_numpy(np.ascontiguousarray(processed.weights)).to(dtype, copy=True)
        set_parameter(model, target, value)
        if quantize_int8:
            quantize_in_place(model, target, tied)
        release_freed_memory()

    if tied and not quantize_int8:
        model.get_output_embeddings().weight = model.get_input_embeddings().weight
    missing = [name for name, param in model.named_parameters() if param.device.type == "meta"]
    if missing:
        raise ValueError(f"GGUF file has no tensor for {', '.join(missing[:3])}")
    model.eval()
    logger.info("loaded %s tensor by tensor (%s, tied embeddings: %s)", path.name, dtype, tied)
    return model
