"""The AVX2 int8 kernel (engine/kernels/avx2_int8.cpp): exact products, the same answers as oneDNN's, and a quiet
fall back to oneDNN when it cannot be built or gives a wrong answer."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.kernels import activations, native
from engine.kernels import int8 as quantize
from engine.kernels.int8 import Int8Linear
from tests.support.kernel import NO_AVX2_KERNEL, runnable_avx2_int8

# The kernel is tested wherever this CPU can run it, also where the engine would choose oneDNN (VNNI CPUs).
needs_kernel = pytest.mark.usefixtures("avx2_kernel")  # chosen for the test as on an AVX2-only server
needs_avx2 = pytest.mark.skipif(runnable_avx2_int8() is None, reason=NO_AVX2_KERNEL)  # tests that find it themselves


@pytest.fixture
def fresh_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the process's kernel before and after the test, and any library built ahead of time (install.sh
    builds one), so the test decides how it is found; the kernel is wanted, as on an AVX2-only CPU."""
    monkeypatch.setattr(native, "prebuilt_folder", lambda: tmp_path / "nothing-prebuilt")
    monkeypatch.setattr(native, "wanted", lambda: True)
    native.avx2_int8.cache_clear()
    yield
    native.avx2_int8.cache_clear()


def _reference(values, weight, weight_scales, bias, row_scales, zero_points) -> torch.Tensor:
    dequantized = (values.double() - zero_points.double()[:, None]) * row_scales.double()[:, None]
    product = dequantized @ (weight.double() * weight_scales.double()[:, None]).T
    return product if bias is None else product + bias.double()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 3, 4, 9])
@pytest.mark.parametrize(("width", "out"), [(64, 1), (103, 5), (896, 33)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_products_match_the_float_reference(rows: int, width: int, out: int, with_bias: bool) -> None:
    # Full-range inputs: weights at ±127 and activations at 127 are where vpmaddubsw's int16 pairs would saturate.
    generator = torch.Generator().manual_seed(rows * 1000 + width + out)
    values = torch.randint(0, native.SEVEN_BIT_MAX + 1, (rows, width), generator=generator, dtype=torch.uint8)
    values[0, :] = native.SEVEN_BIT_MAX
    weight = torch.randint(-127, 128, (out, width), generator=generator, dtype=torch.int8)
    weight[0, :] = 127
    weight_scales = torch.rand(out, generator=generator) * 0.01 + 0.001
    column_sums = weight.float().sum(1) * weight_scales
    bias = torch.randn(out, generator=generator) if with_bias else None
    row_scales = torch.rand(rows, generator=generator) + 0.1
    zero_points = torch.randint(0, 128, (rows,), generator=generator).float()
    kernel = native.avx2_int8()
    assert kernel is not None
    got = kernel.matmul(values, weight, weight_scales, column_sums, bias, row_scales=row_scales,
                        zero_points=zero_points)
    expected = _reference(values, weight, weight_scales, bias, row_scales, zero_points)
    assert got.shape == (rows, out) and got.dtype == torch.float32
    assert float((got.double() - expected).abs().max()) <= 1e-5 * float(expected.abs().max()) + 1e-6
    if rows == 1:  # one row's scale and zero point as plain numbers: the decode step's call
        alone = kernel.matmul(values, weight, weight_scales, column_sums, bias, scale=float(row_scales[0]),
                              zero_point=float(zero_points[0]))
        assert torch.equal(alone, got)


@needs_kernel
def test_a_packed_layer_gives_the_same_outputs_through_either_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # Seven-bit activations for both, as on an AVX2-only server (a CPU with int8 dot products gives oneDNN eight).
    monkeypatch.setattr(activations, "ONEDNN_ACTIVATION_MAX", native.SEVEN_BIT_MAX)
    torch.manual_seed(0)
    linear = nn.Linear(192, 70, bias=True)
    with_kernel = Int8Linear.from_linear(linear)
    with_kernel.pack()
    monkeypatch.setattr(native, "avx2_int8", lambda: None)
    with_onednn = Int8Linear.from_linear(linear)
    with_onednn.pack()
    assert with_kernel.kernel is not None and with_onednn.kernel is None
    assert with_kernel.weight_int8 is None and with_kernel.packed.layout == torch.strided  # one copy, plain rows
    assert with_onednn.packed.layout != torch.strided  # oneDNN's own layout
    x = torch.randn(6, 192) + 0.3
    with torch.inference_mode():
        for rows in (x, x[:1]):
            ours, theirs = with_kernel(rows).float(), with_onednn(rows).float()
            assert (ours - theirs).abs().max() <= 1e-2 * theirs.abs().max()  # bf16 output: a rounding apart
            quantized = activations.quantize_rows_of_activations(rows)
            exact_ours = with_kernel.forward_quantized(quantized, torch.float32)
            exact_theirs = with_onednn.forward_quantized(quantized, torch.float32)
            assert (exact_ours - exact_theirs).abs().max() <= 1e-5 * exact_theirs.abs().max()


@needs_kernel
def test_the_kernel_keeps_activations_to_seven_bits_where_onednn_takes_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a CPU with int8 dot products oneDNN takes eight-bit activations. Were the kernel chosen there, its int16
    # pair sums would saturate on them, so it quantises its own inputs to seven bits whatever oneDNN's range is.
    monkeypatch.setattr(activations, "ONEDNN_ACTIVATION_MAX", 255)
    torch.manual_seed(0)
    linear = nn.Linear(256, 64, bias=False)
    with torch.no_grad():  # weights near ±127 once quantised: where saturation shows
        linear.weight.copy_(torch.sign(torch.randn(64, 256)) * (0.9 + 0.1 * torch.rand(64, 256)))
    layer = Int8Linear.from_linear(linear)
    weights = layer.weight_int8.double() * layer.scales.double()[:, None]
    layer.pack()
    assert layer.kernel is not None
    x = torch.rand(3, 256) * 4.0  # all positive: the values run to the top of the range
    with torch.inference_mode():
        for rows in (x, x[:1]):
            quantized = activations.quantize_rows_of_activations(rows)
            assert int(quantized.values.max()) == native.SEVEN_BIT_MAX == activations.activation_max()
            expected = quantized.dequantized().double() @ weights.t()
            got = layer.forward_quantized(quantized, torch.float32).double()
            assert float((got - expected).abs().max()) < 1e-4 * float(expected.abs().max())


def test_without_a_compiler_the_layers_use_onednn_and_say_why(
    fresh_kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.avx2_int8() is None
        assert native.avx2_int8() is None  # asked again: decided once, said once
    assert [r.getMessage() for r in caplog.records] == [
        "the AVX2 int8 kernel is not used (int8 products go through oneDNN): no C++ compiler (set CXX, or install g++)"
    ]
    if quantize.onednn_int8_available():
        layer = Int8Linear.from_linear(nn.Linear(32, 8))
        layer.pack()
        assert layer.kernel is None and layer.packed is not None and layer.packed.layout != torch.strided


def test_a_failed_build_is_reported_and_leaves_no_file(
    fresh_kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing = tmp_path / "cxx"
    failing.write_text("#!/bin/sh\necho 'avx2_int8.cpp:1: error: something broke' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CXX", str(failing))
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.avx2_int8() is None
    assert "cxx failed: avx2_int8.cpp:1: error: something broke" in caplog.text
    assert not any(p.suffix == ".so" for p in native.kernel_folder().rglob("*"))


@needs_avx2
def test_the_library_is_built_once_reused_and_replaces_older_builds(
    fresh_kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "kernels"
    built = native.build(folder)
    assert built.exists() and built.parent == folder and (folder.stat().st_mode & 0o077) == 0  # the bot's alone
    built.unlink()
    (folder / "avx2_int8-0123456789abcdef.so").write_bytes(b"an older source's build")
    assert native.build(folder) == built
    assert sorted(folder.iterdir()) == [built]  # the older build is gone, and no scratch folder is left

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(subprocess, "run", no_compiling)
    assert native.build(folder) == built


@needs_avx2
def test_a_library_that_computes_wrong_answers_is_not_used(
    fresh_kernel: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    right = native.Avx2Int8.matmul

    def off_by_one(self: native.Avx2Int8, *args: object, **kwargs: object) -> torch.Tensor:
        return right(self, *args, **kwargs) + 1.0

    monkeypatch.setattr(native.Avx2Int8, "matmul", off_by_one)
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.avx2_int8() is None
    assert "disagrees with float" in caplog.text


def test_it_is_wanted_only_on_x86_without_int8_dot_products(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(native.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(native, "cpu_has_int8_dot_products", lambda: False)
    assert native.wanted()
    monkeypatch.setenv(native.DISABLE_VARIABLE, "off")
    assert not native.wanted()  # turned off by the environment
    monkeypatch.delenv(native.DISABLE_VARIABLE)
    monkeypatch.setattr(native, "cpu_has_int8_dot_products", lambda: True)
    assert not native.wanted()  # VNNI: oneDNN uses the int8 dot products, which the kernel does not
    monkeypatch.setattr(native, "cpu_has_int8_dot_products", lambda: False)
    monkeypatch.setattr(native.torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert not native.wanted()  # no AVX2
    monkeypatch.setattr(native.platform, "machine", lambda: "aarch64")
    assert not native.wanted()


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 17])
@pytest.mark.parametrize(("width", "out"), [(64, 1), (103, 5), (896, 33)])
def test_weight_only_products_match_the_float_reference(rows: int, width: int, out: int) -> None:
    generator = torch.Generator().manual_seed(rows * 1000 + width + out)
    x = torch.randn(rows, width, generator=generator)
    weight = torch.randint(-127, 128, (out, width), generator=generator, dtype=torch.int8)
    weight_scales = torch.rand(out, generator=generator) * 0.01 + 0.001
    kernel = native.avx2_int8()
    assert kernel is not None
    got = kernel.weight_only_matmul(x, weight, weight_scales)
    expected = x.double() @ (weight.double() * weight_scales.double()[:, None]).T
    assert got.shape == (rows, out)
    assert float((got.double() - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


@needs_kernel
def test_the_unpacked_head_uses_the_kernel_for_any_rows_and_agrees_with_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(1)
    head = Int8Linear.from_linear(nn.Linear(96, 300, bias=False))  # an unpacked layer, as the output head stays
    kernel = native.avx2_int8()
    assert kernel is not None
    calls: list[tuple[str, int]] = []
    weight_only, signed = native.Avx2Int8.weight_only_matmul, native.Avx2Int8.signed_matmul

    def counting_weight_only(self: native.Avx2Int8, x: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(("weight-only", x.shape[0]))
        return weight_only(self, x, *args)

    def counting_signed(self: native.Avx2Int8, x: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(("int8", x.shape[0]))
        return signed(self, x, *args)

    monkeypatch.setattr(native.Avx2Int8, "weight_only_matmul", counting_weight_only)
    monkeypatch.setattr(native.Avx2Int8, "signed_matmul", counting_signed)
    int8_activation_head = quantize.with_int8_activations(head)  # what many chats decoding together use
    with torch.inference_mode():
        for rows in (1, 8, 9, 20):
            x = torch.randn(rows, 96).to(quantize.COMPUTE_DTYPE)
            torch_out = torch.ops.aten._weight_int8pack_mm(x, head.weight_int8, head.scales).float()
            # torch._int_mm is exact in integers: the kernel's int8 x int8 product must give what it gives.
            torch_int8 = quantize.int8_matmul_per_row(x, head.weight_int8, head.scales).float()
            ours = head(x).float()
            assert (ours - torch_out).abs().max() <= 1e-2 * torch_out.abs().max()  # a bf16 rounding apart
            ours_int8 = int8_activation_head(x).float()
            assert (ours_int8 - torch_int8).abs().max() <= 1e-2 * torch_int8.abs().max()
            assert (ours_int8 - torch_out).abs().max() <= 5e-2 * torch_out.abs().max()  # int8 rounding
    assert calls == [(kind, rows) for rows in (1, 8, 9, 20) for kind in ("weight-only", "int8")]


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 5, 9])
@pytest.mark.parametrize(("width", "out"), [(64, 1), (103, 5), (896, 33)])
def test_signed_products_match_the_float_reference(rows: int, width: int, out: int) -> None:
    generator = torch.Generator().manual_seed(rows * 1000 + width + out)
    values = torch.randint(-127, 128, (rows, width), generator=generator, dtype=torch.int8)
    values[0, :] = -127  # the sign moved onto the weights: the full range both ways must stay exact
    weight = torch.randint(-127, 128, (out, width), generator=generator, dtype=torch.int8)
    weight[0, :] = 127
    row_scales, weight_scales = torch.rand(rows, generator=generator) + 0.1, torch.rand(out, generator=generator)
    kernel = native.avx2_int8()
    assert kernel is not None
    got = kernel.signed_matmul(values, row_scales, weight, weight_scales)
    expected = (values.double() * row_scales.double()[:, None]) @ (weight.double() * weight_scales.double()[:, None]).T
    assert float((got.double() - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


@needs_avx2
def test_a_library_built_ahead_of_time_is_found_without_a_compiler(
    fresh_kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prebuilt = tmp_path / "prebuilt"
    monkeypatch.setattr(native, "prebuilt_folder", lambda: prebuilt)
    assert native.main() == 0  # what install.sh and the image build run
    [library] = prebuilt.glob("avx2_int8-*.so")
    assert capsys.readouterr().out.strip() == str(library)
    assert (prebuilt.stat().st_mode & 0o777) == 0o755 and (library.stat().st_mode & 0o777) == 0o755  # for the bot
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    kernel = native.avx2_int8()
    assert kernel is not None and kernel.path == library
    assert not native.kernel_folder().exists()  # nothing built into the cache


def test_install_reports_a_kernel_it_could_not_build(
    fresh_kernel: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert native.main() == 1
    assert capsys.readouterr().out.startswith("the AVX2 int8 kernel was not built (no C++ compiler")


@needs_kernel
@pytest.mark.parametrize("rows", [1, 3, 9])
@pytest.mark.parametrize("width", [7, 64, 901])
@pytest.mark.parametrize("with_norm", [False, True])
def test_the_kernel_quantises_rows_as_the_tensor_operations_do(
    rows: int, width: int, with_norm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seven-bit activations for both, as on an AVX2-only server (a CPU with int8 dot products gives oneDNN eight).
    monkeypatch.setattr(activations, "ONEDNN_ACTIVATION_MAX", native.SEVEN_BIT_MAX)
    generator = torch.Generator().manual_seed(rows * 100 + width)
    hidden = torch.randn(rows, width, generator=generator) * 3.0
    hidden[0, 0] = 40.0  # one large channel, as real activations have
    if rows > 1:
        hidden[1] = hidden[1].abs()  # a row with no negative value: the range still includes 0
    if rows > 2:
        hidden[2] = 0.0  # a row of zeros: the smallest scale, every value at the zero point
    gain = torch.rand(width, generator=generator) + 0.5 if with_norm else None
    by_kernel = activations.quantize_rows_of_activations(hidden, gain, 1e-6)
    monkeypatch.setattr(native, "avx2_int8", lambda: None)
    by_torch = activations.quantize_rows_of_activations(hidden, gain, 1e-6)
    assert torch.equal(by_kernel.values, by_torch.values)
    assert by_kernel.values.dtype == torch.uint8 and int(by_kernel.values.max()) <= native.SEVEN_BIT_MAX
    if rows == 1:
        assert by_kernel.single_row is not None and by_torch.single_row is not None
        assert by_kernel.single_row[1] == by_torch.single_row[1]
        assert by_kernel.single_row[0] == pytest.approx(by_torch.single_row[0], rel=1e-5)
    else:
        assert torch.equal(by_kernel.zero_points, by_torch.zero_points)
        torch.testing.assert_close(by_kernel.scales, by_torch.scales, rtol=1e-5, atol=0)
    torch.testing.assert_close(by_kernel.dequantized(), by_torch.dequantized(), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_a_folded_norm_quantises_through_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.kernels.arithmetic import FoldedNorm

    kernel = native.avx2_int8()
    calls: list[int] = []
    original = kernel.quantize_rows

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernel, "quantize_rows", counted)
    norm = FoldedNorm(torch.rand(64) + 0.5, 1e-6)
    hidden = torch.randn(5, 64)
    quantized = norm.rows(hidden)
    assert calls == [1]
    expected = nn.functional.rms_norm(hidden, (64,), eps=1e-6) * norm.gain
    assert float((quantized.dequantized() - expected).abs().max()) <= float(quantized.scales.max()) * 0.51
