"""The AVX2 int8 kernel for tests, on every x86 CPU that can run it."""

from __future__ import annotations

import functools

from engine.kernels import native

NO_AVX2_KERNEL = "no AVX2 on this CPU, or no C++ compiler: only oneDNN's int8 products run here"


@functools.cache
def runnable_avx2_int8() -> native.Avx2Int8 | None:
    """The AVX2 kernel wherever this CPU can run it (AVX2 and a C++ compiler), CPUs with int8 dot products included.

    The engine chooses the kernel only where the CPU has no int8 dot products (``native.wanted``): with VNNI,
    oneDNN's products are faster. Its answers do not depend on that choice, so the tests load it on any AVX2 CPU,
    and a CI machine with VNNI still tests the kernel that AVX2-only servers run. The engine's own choice is left as
    it was: its cache is cleared before and after.
    """
    chosen_by_the_engine = native.wanted
    native.wanted = lambda: True
    native.avx2_int8.cache_clear()
    try:
        return native.avx2_int8()
    finally:
        native.wanted = chosen_by_the_engine
        native.avx2_int8.cache_clear()
