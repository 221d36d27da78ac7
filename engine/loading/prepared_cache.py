"""Prepared int8 weights on disk: written once after a slow int8 load, memory-mapped back at the next start.

What is saved is the model as the loaders leave it, before engine.kernels builds its fast paths (fusing q/k/v and
gate/up, packing for oneDNN): every int8 matrix with its scales, the int8 embedding (and head), norms and biases,
plus the model's config and generation config, which modules are int8, which tensors are one and the same (a tied
head), and for a GGUF file its tokenizer (building it from the GGUF vocabulary takes 16 s for Qwen2.5; its saved
files load in under one). Loading rebuilds exactly that model on an empty skeleton, so the fast paths built on it
are the ones a slow load gives, bit for bit.

Memory: every large tensor gets a private mapping of just its own bytes (``mmap``, copy-on-write, read lazily).
oneDNN packs a layer into memory of its own and the layer lets go of the plain weights, which unmaps them, so their
pages leave the process as packing goes on: the peak stays below a slow load's and what stays (the embedding, read
from the page cache) is what a slow load keeps. A single mapping of the whole file, as ``safe_open`` makes, would
stay alive as long as any tensor in it (the embedding does forever) and with it every page packing had read. Small
tensors (norms, biases, scales) are read into memory of their own.

Every tensor starts on a 64-byte boundary of the file (filler entries between them keep it a valid safetensors
file), so also in memory once mapped: torch's kernels may assume the alignment its own allocator gives, and its int8
weight-only product crashed on an 8-byte-aligned head on AVX-512 (bench/RESULTS.md). Small tensors are read into
memory torch allocates, for the same reason.

Files are written to a temporary name in the same folder, synced and renamed into place, owner-only (0600 in a
0700 folder): a crash leaves no partial file under the real name, and a running bot that maps the old file keeps
reading it (renaming replaces the name, not the data).
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from engine.kernels.int8 import COMPUTE_DTYPE, Int8Embedding, Int8Linear
from engine.loading.memory import release_freed_memory
from engine.loading.prepared_files import (
    ALIGNMENT,
    PADDING_PREFIX,
    PARTIAL_SUFFIX,
    Header,
    PreparedFile,
    PreparedFileError,
    mismatch,
    read_header,
    remove_stale,
)

logger = logging.getLogger(__name__)

MAP_MIN_BYTES = 1 << 18  # tensors this large are memory-mapped; smaller ones are read (a mapping holds a file handle)
TOKENIZER_PREFIX = "tokenizer/"  # metadata keys holding the tokenizer's saved files, by file name
TORCH_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
    "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "U32": torch.uint32, "F32": torch.float32,
    "I64": torch.int64, "U64": torch.uint64, "F64": torch.float64,
}
SAFETENSORS_DTYPES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


@dataclass
class Prepared:
    """A model read back from its prepared file, and the tokenizer saved with it (None: load it from the source)."""

    model: PreTrainedModel
    tokenizer: Tokenizer | None


def load_prepared(file: PreparedFile) -> Prepared | None:
    """The model (and tokenizer) saved in ``file``; None when there is none, it was made for other weights or
    libraries, or it cannot be read (that one with a warning): the caller then loads from the checkpoint."""
    if not file.path.exists():
        return None
    try:
        header = read_header(file.path)
        outdated = mismatch(header, file.expected)
        if outdated:
            logger.info("prepared weights %s are outdated (%s): preparing them again", file.path, outdated)
            return None
        prepared = Prepared(restore_model(file.path, header), restore_tokenizer(header.metadata))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:  # PreparedFileError is a ValueError
        logger.warning("prepared weights %s are unusable (%s): loading from the checkpoint and preparing them again",
                       file.path, exc)
        return None
    logger.info("loaded prepared weights from %s", file.path)
    return prepared


def save_prepared(file: PreparedFile, model: PreTrainedModel, tokenizer: Tokenizer | None = None) -> bool:
    """Save ``model`` (as the loaders leave it, before fast paths) and, when given, ``tokenizer`` to ``file``; then
    remove the same model's outdated files. A failure (disk full, read-only folder) is one warning, and False."""
    try:
        tensors, metadata = model_state(model)
        metadata.update(file.expected, model=file.model)
        if tokenizer is not None:
            metadata.update(tokenizer_files(tokenizer))
        write_atomically(file.path, tensors, metadata)
    except (OSError, ValueError, RuntimeError) as exc:
        logger.warning("could not save prepared weights to %s (%s): the next start prepares them again",
                       file.path, exc)
        return False
    finally:
        release_freed_memory()  # the header's text (the tokenizer's files) is gone; without this the heap keeps it
    size_mb = file.path.stat().st_size / 2**20
    logger.info("saved prepared weights to %s (%.0f MB): the next start reads them", file.path, size_mb)
    for path in remove_stale(file):
        logger.info("removed outdated prepared weights %s", path)
    return True


def model_state(model: PreTrainedModel) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor of ``model`` once (a tensor held under two names is stored under its first), and metadata that
    rebuilds the model around them: config, generation config, int8 modules, and the second names (aliases)."""
    int8_modules: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, Int8Embedding):
            int8_modules[name] = "embedding"
        elif isinstance(module, Int8Linear):
            if module.packed is not None or module._shared is not None:
                raise ValueError(f"{name} is already packed: prepared weights are saved before the fast paths")
            int8_modules[name] = "linear"
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_names: dict[tuple[object, ...], str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        value = tensor.detach()
        identity = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                    value.stride(), value.dtype)
        if value.numel() and identity in first_names:
            aliases[name] = first_names[identity]
            continue
        first_names[identity] = name
        tensors[name] = value.contiguous()
    metadata = {
        "config": model.config.to_json_string(use_diff=False),
        "generation_config": model.generation_config.to_json_string(use_diff=False),
        "int8_modules": json.dumps(int8_modules),
        "aliases": json.dumps(aliases),
    }
    return tensors, metadata


def tokenizer_files(tokenizer: Tokenizer) -> dict[str, str]:
    """The files ``save_pretrained`` writes for ``tokenizer``, as metadata entries (all text for a fast tokenizer);
    none when one of them is binary (a SentencePiece model): the tokenizer then keeps loading from the source."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        try:
            return {f"{TOKENIZER_PREFIX}{path.name}": path.read_text(encoding="utf-8")
                    for path in sorted(Path(folder).iterdir()) if path.is_file()}
        except UnicodeDecodeError:
            return {}


def write_atomically(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file to ``path`` through a synced temporary file renamed into place (0600, folder 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp made it 0600
            write_aligned(handle, tensors, metadata)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_aligned(handle: BinaryIO, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """``tensors`` and ``metadata`` as a safetensors file, every tensor's bytes starting on an ALIGNMENT boundary of
    the file: the header is padded with spaces, and the gap before a tensor is a uint8 entry named PADDING_PREFIX..."""
    entries: dict[str, object] = {"__metadata__": metadata}
    pieces: list[torch.Tensor | bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        if tensor.dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: no safetensors type for {tensor.dtype}")
        gap = -offset % ALIGNMENT
        if gap:
            entries[f"{PADDING_PREFIX}{len(pieces)}"] = {
                "dtype": "U8", "shape": [gap], "data_offsets": [offset, offset + gap]}
            pieces.append(bytes(gap))
            offset += gap
        nbytes = tensor.numel() * tensor.element_size()
        entries[name] = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + nbytes]}
        pieces.append(tensor)
        offset += nbytes
    header = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    header += b" " * (-(8 + len(header)) % ALIGNMENT)  # the data, and with it the first tensor, on a boundary
    handle.write(struct.pack("<Q", len(header)))
    handle.write(header)
    for piece in pieces:
        handle.write(piece if isinstance(piece, bytes) else piece.contiguous().reshape(-1).view(torch.uint8).numpy())


def restore_model(path: Path, header: Header) -> PreTrainedModel:
    """The model saved in ``path``, rebuilt on an empty skeleton around its (mapped) tensors, in eval mode."""
    from accelerate import init_empty_weights

    metadata = header.metadata
    config_dict = json.loads(metadata["config"])
    config = CONFIG_MAPPING[config_dict["model_type"]].from_dict(config_dict)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=COMPUTE_DTYPE)
    model.generation_config = GenerationConfig.from_dict(json.loads(metadata["generation_config"]))
    tensors = read_tensors(path, header)
    for alias, name in json.loads(metadata["aliases"]).items():
        tensors[alias] = tensors[name]
    for name, kind in json.loads(metadata["int8_modules"]).items():
        weight, scales = tensors.pop(f"{name}.weight_int8"), tensors.pop(f"{name}.scales")
        if kind == "embedding":
            module: torch.nn.Module = Int8Embedding(weight, scales)
        else:
            module = Int8Linear(weight, scales, tensors.pop(f"{name}.bias", None))
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
    for name, value in tensors.items():
        put_tensor(model, name, value)
    empty = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if empty:
        raise PreparedFileError(f"no tensor for {empty[0]}")
    return model.eval()


def put_tensor(model: PreTrainedModel, name: str, value: torch.Tensor) -> None:
    """Put ``value`` in as the parameter or buffer ``name`` (dotted path) of ``model``."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    if attr in module._parameters:
        setattr(module, attr, torch.nn.Parameter(value, requires_grad=False))
    elif attr in module._buffers:
        module._buffers[attr] = value
    else:
        raise PreparedFileError(f"the model has no tensor {name}")


def read_tensors(path: Path, header: Header) -> dict[str, torch.Tensor]:
    """Every tensor of the file: large ones mapped (each its own copy-on-write mapping), small ones read."""
    tensors = {}
    with path.open("rb") as handle:
        for name, entry in header.tensors.items():
            dtype, nbytes = TORCH_DTYPES[entry.dtype], entry.end - entry.start
            tensor = None
            if nbytes == 0:
                tensor = torch.empty(entry.shape, dtype=dtype)
            elif nbytes >= MAP_MIN_BYTES:
                with contextlib.suppress(OSError):  # out of file handles or mappings: read it instead
                    tensor = mapped_tensor(handle, entry.start, nbytes, dtype)
            if tensor is None:  # into memory torch allocates: aligned as the kernels expect
                tensor = torch.empty(nbytes, dtype=torch.uint8)
                handle.seek(entry.start)
                if handle.readinto(tensor.numpy()) != nbytes:
                    raise PreparedFileError(f"tensor {name!r}: the file ends inside it")
                tensor = tensor.view(dtype)
            tensors[name] = tensor.view(entry.shape)
    return tensors


def mapped_tensor(handle: BinaryIO, start: int, nbytes: int, dtype: torch.dtype) -> torch.Tensor:
    """The ``nbytes`` at ``start`` of the open file as a 1-D tensor on a private mapping of just those pages; the
    mapping lives as long as the tensor (torch holds the mmap object) and is read on first touch. Each mapping holds
    a file handle (Python's mmap keeps a duplicate) until its tensor goes: 122 at once for Qwen2.5 0.5B, 2 once the
    fast paths are built."""
    aligned = start - start % mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(handle.fileno(), start + nbytes - aligned, offset=aligned, access=mmap.ACCESS_COPY)
    return torch.frombuffer(mapped, dtype=dtype, count=nbytes // dtype.itemsize, offset=start - aligned)


def restore_tokenizer(metadata: dict[str, str]) -> Tokenizer | None:
    """The tokenizer saved with the weights (rebuilt from its files in a temporary folder), or None."""
    files = {key.removeprefix(TOKENIZER_PREFIX): text for key, text in metadata.items()
             if key.startswith(TOKENIZER_PREFIX)}
    if not files:
        return None
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            (Path(folder) / Path(name).name).write_text(text, encoding="utf-8")
        return AutoTokenizer.from_pretrained(folder)
