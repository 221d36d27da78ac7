"""A short fingerprint of a model's weights, read from its checkpoint files without loading them.

Used to tie things derived from one model to exactly that model: an analyst adapter trained on it (an adapter
loaded on another base model is refused), and anything cached from its weights. Hashing whole checkpoints would
read hundreds of MB at every start; instead each weight file contributes its size and 32 slices of 64 KiB spread
evenly over it (header, tensor data, end), about 2 MiB read per file. Two different checkpoints of the same
architecture differ in their tensor bytes, so they differ here; the same file gives the same fingerprint whatever
precision it is loaded in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SLICES = 32
SLICE_BYTES = 64 * 1024
WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".bin")


def weight_files(source: Path) -> list[Path]:
    """The checkpoint files of a model: the file itself (a .gguf), or a folder's weight files in name order."""
    if source.is_file():
        return [source]
    return sorted(p for p in source.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def fingerprint(source: Path | str) -> str:
    """A 16-hex-digit fingerprint of the weights at ``source`` (a .gguf file or a model folder)."""
    digest = hashlib.sha256()
    files = weight_files(Path(source))
    if not files:
        raise FileNotFoundError(f"no weight files in {source}")
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.suffix}:{size}:".encode())
        with path.open("rb") as handle:
            for index in range(SLICES):
                handle.seek(max(0, (size - SLICE_BYTES) * index // max(1, SLICES - 1)))
                digest.update(handle.read(SLICE_BYTES))
    return digest.hexdigest()[:16]
