"""Returning freed memory to the operating system, shared by model loading and the inference worker."""

from __future__ import annotations

import contextlib
import ctypes


def release_freed_memory() -> None:
    """Hand memory that Python and numpy freed back to the OS (glibc keeps it otherwise); no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
