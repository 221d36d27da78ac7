"""Where prepared int8 weights are cached, what a cached file must match, and how to read its header; free of torch.

Preparing int8 weights (dequantising a GGUF file or reading a bf16 checkpoint, then quantising every matrix) takes
about a minute for a 0.5B model on a 2-core CPU; reading the result back takes seconds. engine/loading/
prepared_cache.py writes and reads the file; this module knows its name, its folder and its header, which is all
``moodbot doctor`` needs to say whether a start will be quick.

One safetensors file per model: ``<fingerprint>-<precision>-v<FORMAT_VERSION>.safetensors`` in
``$XDG_CACHE_HOME/moodbot/prepared`` (default ``~/.cache/moodbot/prepared``) or ``[engine] prepared_cache_dir``.
Its metadata repeats the key and adds the versions of the libraries that computed it: a file written by another
torch, transformers or gguf is prepared again, since their arithmetic made the numbers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import struct
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path

from engine.errors import ModelLoadError
from engine.loading.fingerprint import fingerprint
from engine.loading.source import resolve_source
from engine.settings import EngineSettings

logger = logging.getLogger(__name__)

# Bump whenever what the file holds, or how it maps onto the model, changes: older files are then prepared again.
# 2: every tensor starts on an ALIGNMENT boundary (version 1's were 8-byte aligned, and torch's int8 weight-only
# product crashed on such a head on AVX-512 CPUs once four chats decoded together).
FORMAT_VERSION = 2
ALIGNMENT = 64  # bytes: a cache line, and what torch's own allocator gives every tensor
PADDING_PREFIX = "__padding__."  # filler entries between tensors: a safetensors file may have no unnamed bytes
FORMAT_NAME = "moodbot-prepared-weights"
CACHED_PRECISIONS = frozenset({"int8"})  # fp32 and bf16 load straight from the checkpoint: nothing to prepare
OFF = "off"
SUFFIX = ".safetensors"
PARTIAL_SUFFIX = ".partial"  # a file being written: ".<name>.<random>.partial", renamed to <name> when complete
PARTIAL_MAX_AGE_S = 3600
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
LIBRARIES = ("torch", "transformers", "gguf")  # whose arithmetic produced the prepared numbers

# Bytes per element of each safetensors dtype that a prepared file may hold.
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


class PreparedFileError(ValueError):
    """A prepared weights file that cannot be read: truncated, not safetensors, or inconsistent."""


@dataclass(frozen=True)
class PreparedFile:
    """Where one model's prepared weights live, and the metadata a file there must carry to be used."""

    path: Path
    expected: dict[str, str]  # format, format_version, fingerprint, precision, versions
    model: str  # which configured model it belongs to (model_key), so its older files can be removed


@dataclass(frozen=True)
class TensorEntry:
    """One tensor in a safetensors file: dtype name, shape, and its bytes as absolute offsets in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    """A safetensors file's header, checked against the file's size."""

    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]


@dataclass(frozen=True)
class PreparedWeights:
    """What the cache holds for a configuration (``moodbot doctor``): ``state`` is "cached" (``path`` exists and
    matches), "not yet" (the next start prepares ``path``), "off" or "not used" (``detail`` says why)."""

    state: str
    path: Path | None = None
    size_bytes: int = 0
    detail: str = ""


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/moodbot/prepared``, or ``~/.cache/moodbot/prepared`` (XDG ignores relative paths)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return root / "moodbot" / "prepared"


def cache_folder(setting: str) -> Path | None:
    """The folder ``[engine] prepared_cache_dir`` names: empty = the default, "off" = None (no cache)."""
    if setting.strip().lower() == OFF:
        return None
    return Path(setting).expanduser() if setting.strip() else default_folder()


def model_key(spec: str) -> str:
    """The configured model, the same however a local path is written (a hub id stays as it is)."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def library_versions() -> str:
    """``torch=… transformers=… gguf=…`` for the installed libraries among LIBRARIES."""
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name}={package_metadata.version(name)}")
        except package_metadata.PackageNotFoundError:
            continue
    return " ".join(found)


def prepared_file(settings: EngineSettings, weights_fingerprint: str) -> PreparedFile | None:
    """The prepared file for these settings and weights; None when the precision is not cached or the cache is off."""
    precision = settings.resolved_precision
    folder = cache_folder(settings.prepared_cache_dir)
    if folder is None or precision not in CACHED_PRECISIONS:
        return None
    expected = {
        "format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "fingerprint": weights_fingerprint,
        "precision": precision, "versions": library_versions(),
    }
    name = f"{weights_fingerprint}-{precision}-v{FORMAT_VERSION}{SUFFIX}"
    return PreparedFile(folder / name, expected, model_key(settings.model))


def read_header(path: Path) -> Header:
    """The header of the safetensors file at ``path``; PreparedFileError when it is not one, or is cut short."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise PreparedFileError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise PreparedFileError("header length past the end of the file")
        try:
            raw = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PreparedFileError(f"header is not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise PreparedFileError("header is not a JSON object")
    data_start = 8 + length
    metadata = raw.pop("__metadata__", None) or {}
    tensors = {name: _entry(name, value, data_start) for name, value in raw.items()
               if not name.startswith(PADDING_PREFIX)}
    data_end = max((entry.end for entry in tensors.values()), default=data_start)
    if data_end != size:
        raise PreparedFileError(f"{size} bytes where the header describes {data_end}")
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise PreparedFileError("metadata values are not all text")
    return Header(metadata, tensors)


def _entry(name: str, value: object, data_start: int) -> TensorEntry:
    try:
        dtype, shape, (start, end) = value["dtype"], value["shape"], value["data_offsets"]  # type: ignore[index]
        shape = tuple(int(n) for n in shape)
        start, end = int(start), int(end)
        expected_bytes = math.prod(shape) * DTYPE_BYTES[dtype]
    except (TypeError, KeyError, ValueError) as exc:
        raise PreparedFileError(f"tensor {name!r}: malformed entry") from exc
    if min(shape, default=0) < 0 or start < 0 or end - start != expected_bytes:
        raise PreparedFileError(f"tensor {name!r}: offsets do not match its shape")
    return TensorEntry(dtype, shape, data_start + start, data_start + end)


def mismatch(header: Header, expected: dict[str, str]) -> str | None:
    """The first expected metadata key whose value the file does not carry, as ``key: found != expected``."""
    for key, value in expected.items():
        found = header.metadata.get(key)
        if found != value:
            return f"{key}: {found!r} != {value!r}"
    return None


def remove_stale(file: PreparedFile) -> list[Path]:
    """Remove the other prepared files of the same model (or the same weights): earlier fingerprints, precisions or
    format versions, which no start will read again; and temporary files a killed writer left (an hour old: a live
    one finishes in seconds). Returns the paths removed."""
    removed = []
    for partial in file.path.parent.glob(f".*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if time.time() - partial.stat().st_mtime > PARTIAL_MAX_AGE_S:
                partial.unlink()
                removed.append(partial)
    for candidate in sorted(file.path.parent.glob(f"*{SUFFIX}")):
        if candidate == file.path:
            continue
        try:
            found = read_header(candidate).metadata
        except (OSError, PreparedFileError):
            continue  # not one of ours, or unreadable: not ours to delete
        ours = found.get("format") == FORMAT_NAME
        if ours and (found.get("model") == file.model or found.get("fingerprint") == file.expected["fingerprint"]):
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError as exc:
                logger.warning("could not remove the outdated prepared weights %s: %s", candidate, exc)
    return removed


def prepared_weights_state(settings: EngineSettings) -> PreparedWeights:
    """Whether a start with ``settings`` finds its prepared weights cached; reads headers only, downloads nothing."""
    if settings.backend != "local":
        return PreparedWeights("not used", detail=f"the model runs on the {settings.backend} server")
    if cache_folder(settings.prepared_cache_dir) is None:
        return PreparedWeights("off", detail='engine.prepared_cache_dir = "off"')
    precision = settings.resolved_precision
    if precision not in CACHED_PRECISIONS:
        return PreparedWeights("not used", detail=f"{precision} weights load straight from the checkpoint")
    try:
        file = prepared_file(settings, fingerprint(resolve_source(settings.model, download=False).weights))
    except (ModelLoadError, OSError) as exc:
        return PreparedWeights("not yet", detail=f"the model is not available yet ({exc})")
    assert file is not None  # the precision is cached and the cache is on
    try:
        usable = mismatch(read_header(file.path), file.expected) is None
    except (OSError, PreparedFileError):
        usable = False
    if usable:
        return PreparedWeights("cached", file.path, file.path.stat().st_size)
    return PreparedWeights("not yet", file.path)
