"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from engine.kernels import native
from tests.support.kernel import NO_AVX2_KERNEL, runnable_avx2_int8


@pytest.fixture
def avx2_kernel(monkeypatch: pytest.MonkeyPatch) -> native.Avx2Int8:
    """The AVX2 kernel, chosen for this test as on an AVX2-only server, whether or not the engine would choose it on
    this CPU (skips where the CPU cannot run it)."""
    kernel = runnable_avx2_int8()
    if kernel is None:
        pytest.skip(NO_AVX2_KERNEL)
    monkeypatch.setattr(native, "avx2_int8", lambda: kernel)
    return kernel


@pytest.fixture(params=["AVX2 kernel", "oneDNN"])
def int8_kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Packed layers computed by each int8 kernel: oneDNN, and the AVX2 one wherever this CPU can run it."""
    if request.param == "oneDNN":
        monkeypatch.setattr(native, "avx2_int8", lambda: None)
    else:
        request.getfixturevalue("avx2_kernel")
    return request.param
