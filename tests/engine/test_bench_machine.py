"""Every benchmark figure carries the CPU it came from: its name and the vector features that pick the kernels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.measure import VECTOR_FLAGS, cpu_description


def test_the_cpu_description_names_the_vector_features_this_cpu_has() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system (the description then has no features)")
    flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":")[1].split()
    described = cpu_description()
    assert described["vector_features"] == [flag for flag in VECTOR_FLAGS if flag in flags]
    assert described["cores"] and described["cpu"]
    assert str(described["torch_cpu_capability"]).startswith(("AVX", "DEFAULT", "NO AVX", "ZVECTOR", "SVE"))
    # The int8 kernel chosen for this CPU: the AVX2 one exactly where it is wanted and could be built.
    from engine.kernels import native

    assert described["int8_kernel"] == ("AVX2" if native.avx2_int8() is not None else "oneDNN")
