"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from engine.kernels import native


@pytest.fixture(params=["AVX2 kernel", "oneDNN"])
def int8_kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Packed layers computed by each kernel this machine can run: oneDNN always, the AVX2 one where it is chosen."""
    if request.param == "oneDNN":
        monkeypatch.setattr(native, "avx2_int8", lambda: None)
    elif native.avx2_int8() is None:
        pytest.skip("the AVX2 kernel is not chosen on this CPU (int8 dot products, or no compiler): oneDNN only")
    return request.param
