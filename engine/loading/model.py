"""Load the one model, once: from a hub id, a local folder or a single ``.gguf`` file."""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from engine.errors import ModelLoadError
from engine.kernels.attention import use_decode_aware_attention
from engine.kernels.int8 import quantize_model
from engine.kernels.paths import FastPaths, build_fast_paths
from engine.loading.fingerprint import fingerprint
from engine.loading.gguf_loader import load_gguf_model
from engine.loading.memory import release_freed_memory
from engine.loading.prepared_cache import load_prepared, save_prepared
from engine.loading.prepared_files import prepared_file
from engine.loading.safetensors_loader import load_safetensors_int8
from engine.loading.source import ModelSource, resolve_source
from engine.roles.chat_format import ensure_chat_template
from engine.settings import EngineSettings

logger = logging.getLogger(__name__)

# dtype each explicit precision loads the weights in (int8 loads bf16, then quantises the weights layer by layer).
PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.bfloat16}

# oneDNN keeps every matmul it has set up, one per weight shape and row count, up to 1,024 by default, each with
# ~0.35 MB: every new message or prompt length adds four, so a long-running bot grew by ~330 MB (measured with the
# 0.5B model: +1.3 MB per distinct classification length until 256 lengths). 128 holds the decode shapes of 16
# chats (16 row counts x 4 weight shapes) and the recent prompt lengths, and bounds the growth to ~45 MB. A miss
# costs ~0.3 ms per shape (a new length paid it anyway), so a smaller cache would thrash decoding.
ONEDNN_PRIMITIVE_CACHE_CAPACITY = 128


# transformers' BPE tokenizers (Qwen2Tokenizer and its kin) keep the Python vocabulary and merge list they built the
# Rust tokenizer from, and nothing reads them afterwards: encode, decode and get_vocab are the Rust tokenizer's. For
# Qwen's 151,936 tokens they held 63 MB of a 98 MB tokenizer (loaded from a hub folder; a GGUF file's never had them).
TOKENIZER_CONSTRUCTION_LEFTOVERS = ("_vocab", "_merges")


def drop_tokenizer_construction_leftovers(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Empty the Python copies a Rust-backed tokenizer was built from; returns the names emptied.

    A tokenizer without a Rust backend is left alone: its Python vocabulary is what it tokenises with."""
    if not getattr(tokenizer, "is_fast", False):
        return []
    emptied = []
    for name in TOKENIZER_CONSTRUCTION_LEFTOVERS:
        value = getattr(tokenizer, name, None)
        if isinstance(value, (dict, list)) and value:
            setattr(tokenizer, name, type(value)())
            emptied.append(name)
    return emptied


def copy_float_tensors_off_checkpoint(model: PreTrainedModel) -> int:
    """Give every floating-point parameter and buffer its own memory; returns how many were copied.

    transformers maps a safetensors checkpoint into memory and hands out tensors that read straight from the file.
    Once int8 has replaced the big matrices only norms and biases (a few MB) still do, but they keep the whole
    mapping alive: after loading Qwen2.5 from a hub folder the process held the 988 MB file besides its int8
    weights (RSS 1.86 GB instead of 0.89). Tensors shared between modules stay shared."""
    copies: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for slots in (module._parameters, module._buffers):
            for name, tensor in slots.items():
                if tensor is None or not tensor.dtype.is_floating_point:
                    continue
                if id(tensor) not in copies:
                    copy = tensor.detach().clone()
                    is_parameter = slots is module._parameters
                    copies[id(tensor)] = torch.nn.Parameter(copy, requires_grad=False) if is_parameter else copy
                slots[name] = copies[id(tensor)]
    return len(copies)


def bound_onednn_primitive_cache() -> None:
    """Cap oneDNN's primitive cache at ONEDNN_PRIMITIVE_CACHE_CAPACITY unless the environment already sets it.

    oneDNN reads the variable when it sets up its first matmul, so this must run before the first model call of the
    process (load_model calls it first thing)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_PRIMITIVE_CACHE_CAPACITY))


@dataclass
class LoadedModel:
    """A model ready for inference, with its fast paths, its tokenizer and the ids that end a reply."""

    paths: FastPaths
    tokenizer: PreTrainedTokenizerBase
    name: str
    stop_token_ids: frozenset[int]
    load_seconds: float
    fingerprint: str  # of the checkpoint's weights (engine.loading.fingerprint), whatever precision they run in

    @property
    def model(self) -> PreTrainedModel:
        """The transformers model the fast paths were built on."""
        return self.paths.model


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every id that ends a reply: the tokenizer's EOS, the generation config's EOS list, and ChatML's end marks."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|eot_id|>", "<end_of_turn>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return frozenset(ids)


class FlatInputLinear(torch.nn.Linear):
    """A Linear that makes its input contiguous first.

    transformers computes logits for the last position only by slicing ``hidden[:, -1:, :]``; for a prompt longer
    than one token torch then runs the vocabulary-sized head as a batched matmul that copies the whole weight
    matrix (~270 MB for Qwen2.5 in bf16) on every forward pass: 300 ms of a 350 ms step here. A 2-D input avoids it.
    """

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The usual linear map, computed as one 2-D matmul on the (small) flattened input."""
        flat = hidden.reshape(-1, hidden.shape[-1])  # 2-D: torch takes the plain matmul path, no weight copy
        return torch.nn.functional.linear(flat, self.weight, self.bias).view(*hidden.shape[:-1], -1)


def use_flat_input_head(model: PreTrainedModel) -> None:
    """Swap the output head for :class:`FlatInputLinear`, sharing the same (possibly tied) weight."""
    head = model.get_output_embeddings()
    if type(head) is torch.nn.Linear:
        head.__class__ = FlatInputLinear


def load_folder_model(directory: Path, settings: EngineSettings) -> PreTrainedModel:
    """A model folder's weights in the configured precision. int8 streams the checkpoint into int8 tensor by tensor
    where its names allow (loading/safetensors_loader.py), else quantises after ``from_pretrained`` and then copies
    the norms and biases off the checkpoint file (see :func:`copy_float_tensors_off_checkpoint`)."""
    dtype = PRECISION_DTYPES[settings.resolved_precision]
    if settings.resolved_precision != "int8":
        return AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    model = load_safetensors_int8(directory)
    if model is None:
        model = quantize_model(AutoModelForCausalLM.from_pretrained(directory, dtype=dtype))
        copy_float_tensors_off_checkpoint(model)
    return model


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """The tokenizer of the source's folder, or the one inside its GGUF file (16 s for Qwen2.5's vocabulary)."""
    kwargs: dict[str, object] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    return AutoTokenizer.from_pretrained(source.directory, **kwargs)


def load_checkpoint(source: ModelSource, settings: EngineSettings) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model in the configured precision, read from the checkpoint (int8: quantised as it is read), and its
    tokenizer."""
    tokenizer = load_tokenizer(source)
    if source.gguf_file:
        model = load_gguf_model(
            source.weights, PRECISION_DTYPES[settings.resolved_precision],
            quantize_int8=settings.resolved_precision == "int8",
        )
    else:
        model = load_folder_model(Path(source.directory), settings)
    return model, tokenizer


def load_weights(
    source: ModelSource, settings: EngineSettings, weights_fingerprint: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer before fast paths: from the prepared-weights cache when it holds them for these
    weights and precision (seconds), else from the checkpoint (about a minute for a 0.5B model in int8), then cached
    for the next start. fp32 and bf16 are never cached: they load straight from the checkpoint already."""
    file = prepared_file(settings, weights_fingerprint)
    prepared = load_prepared(file) if file is not None else None
    if prepared is not None:
        return prepared.model, prepared.tokenizer or load_tokenizer(source)
    model, tokenizer = load_checkpoint(source, settings)
    if file is not None:  # a GGUF file's tokenizer is slow to build too; a folder's loads fast from its own files
        save_prepared(file, model, tokenizer if source.gguf_file else None)
    return model, tokenizer


def load_model(settings: EngineSettings) -> LoadedModel:
    """Load tokenizer and weights in the configured precision, ready for inference (eval mode, no grad)."""
    started = time.perf_counter()
    bound_onednn_primitive_cache()
    torch.set_num_threads(settings.torch_threads)
    source = resolve_source(settings.model)
    try:
        weights_fingerprint = fingerprint(source.weights)
        model, tokenizer = load_weights(source, settings, weights_fingerprint)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError, NotImplementedError) as exc:
        raise ModelLoadError(f"cannot load model from {settings.model}: {_first_line(exc)}") from exc
    model.eval()
    model.requires_grad_(False)
    use_flat_input_head(model)
    use_decode_aware_attention(model)
    paths = build_fast_paths(model, pack_int8=settings.resolved_precision == "int8")
    if ensure_chat_template(tokenizer):
        logger.info("tokenizer has no chat template: using ChatML")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    drop_tokenizer_construction_leftovers(tokenizer)
    gc.collect()
    release_freed_memory()  # loading leaves hundreds of MB freed but still held by the allocator
    elapsed = time.perf_counter() - started
    logger.info(
        "loaded %s (%s, %s, %d threads) in %.1f s",
        settings.model, type(model).__name__, settings.resolved_precision, settings.torch_threads, elapsed,
    )
    return LoadedModel(
        paths, tokenizer, settings.model, stop_token_ids(model, tokenizer), elapsed, weights_fingerprint
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
