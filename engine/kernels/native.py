"""The AVX2 int8 product (avx2_int8.cpp), built with the system's C++ compiler on first use and loaded with ctypes.

On CPUs with AVX2 but no int8 dot-product instructions (most rented EPYC Zen 2/3 and older Intel servers) oneDNN
reads a one-row product's weights at about half the memory bandwidth, and a reply's every token is one row per layer.
The kernel here keeps the plain int8 rows (``quantize_rows``' layout: no second copy) and multiplies them by the
seven-bit activations :mod:`engine.kernels.int8` already makes on such CPUs, exactly (integer sums), as fast as memory
allows; bench/RESULTS.md has the measurements. It also quantises those activations, each row in one call (the
norm folded in: engine.kernels.arithmetic.FoldedNorm), where tensor operations took about twenty small ones a row.
With VNNI, oneDNN stays (it uses those instructions; this does not).

Built ahead of time by ``python -m engine.kernels.native`` (scripts/install.sh and the image build run it, so a
service or a container needs no compiler at start), else once per source version into
``$XDG_CACHE_HOME/moodbot/kernels`` (``~/.cache/moodbot/kernels``) and reused.
No compiler, a failed build or a wrong answer on a small check: the int8 layers use oneDNN as before, and the log
says why once. ``MOODBOT_NATIVE_KERNEL=off`` turns it off (to compare, or to rule it out).

Why a small C++ file and ctypes, not a torch extension: it needs no torch headers (a build takes about a second,
not a minute), and ctypes calls cost a few microseconds, against the tens of microseconds a product takes.
Threads: the library is linked against the OpenMP runtime torch itself loaded, so its ``omp parallel`` runs on the
same pool of threads as torch's operators and the two never compete for the cores.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from engine.settings import cpu_has_int8_dot_products

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("avx2_int8.cpp")
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-fno-math-errno")
DISABLE_VARIABLE = "MOODBOT_NATIVE_KERNEL"
# The top of the kernel's activation range, on every CPU: it multiplies with vpmaddubsw, which adds pairs of
# uint8 x int8 products into int16, and two products of 255 x 127 overflow that. Its own quantisation
# (quantize_rows, quantize_row) never goes above it, so no caller can hand it values that saturate.
SEVEN_BIT_MAX = 127

_pointer, _size, _float = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float


def kernel_folder() -> Path:
    """``$XDG_CACHE_HOME/moodbot/kernels``, or ``~/.cache/moodbot/kernels`` (XDG ignores relative paths)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return root / "moodbot" / "kernels"


def compiler() -> str | None:
    """The C++ compiler to build with: ``$CXX``, else ``c++`` or ``g++`` on the PATH; None when there is none."""
    named = os.environ.get("CXX", "").strip()
    if named:
        return shutil.which(named) or (named if Path(named).exists() else None)
    return shutil.which("c++") or shutil.which("g++")


def loaded_openmp_runtime() -> str | None:
    """The path of the OpenMP runtime this process (torch) has loaded, or None (read from /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="ignore") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = os.path.basename(path)
                if name.startswith(("libgomp", "libiomp5")) and ".so" in name:
                    return path
    except OSError:
        return None
    return None


def prebuilt_folder() -> Path:
    """Where an image build puts the library ahead of time (``python -m engine.kernels.native``, deploy/Dockerfile),
    so a container without a compiler uses it too."""
    return Path(__file__).with_name("prebuilt")


def library_name() -> str:
    """The library's file name for this source, flags, torch and its OpenMP runtime (a digest of them)."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (loaded_openmp_runtime() or "", " ".join(FLAGS), platform.machine(), torch.__version__):
        digest.update(b"\0" + part.encode())
    return f"avx2_int8-{digest.hexdigest()[:16]}.so"


def find_or_build() -> Path:
    """The library: built ahead of time, built before into the cache folder, or built there now."""
    for folder in (prebuilt_folder(), kernel_folder()):
        if (folder / library_name()).exists():
            return folder / library_name()
    return build(kernel_folder())


def build(folder: Path, *, private: bool = True) -> Path:
    """The library for the current source, built into ``folder`` unless it is there already; raises
    ``RuntimeError`` with the reason when it cannot be built. ``private``: a cache folder of the bot's user alone;
    else readable by all (an image's prebuilt folder, made by root and read by the bot's user)."""
    target = folder / library_name()
    if target.exists():
        return target
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (set CXX, or install g++)")
    openmp = loaded_openmp_runtime()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o755)
    # Linked against the runtime torch loaded (by path), so both share one pool of threads; without one, the
    # compiler's own (the loader then reuses torch's anyway when the names match).
    link = [openmp, f"-Wl,-rpath,{os.path.dirname(openmp)}"] if openmp else []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # built aside, then renamed: never half a file
        built = Path(scratch) / target.name
        result = subprocess.run(
            [cxx, *FLAGS, str(SOURCE), "-o", str(built), *link], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(cxx).name} failed: {result.stderr.strip()[-500:]}")
        built.chmod(0o700 if private else 0o755)
        os.replace(built, target)
    for stale in folder.glob("avx2_int8-*.so"):  # earlier sources' or torch versions' builds: never loaded again
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


class Avx2Int8:
    """The loaded library: :meth:`matmul` computes a packed int8 layer's product, :meth:`weight_only_matmul` the
    output head's for one chat and :meth:`signed_matmul` for many; :meth:`quantize_rows` and :meth:`quantize_row`
    make the layers' inputs (see avx2_int8.cpp)."""

    def __init__(self, path: Path) -> None:
        library = ctypes.CDLL(str(path))
        self._supported = library.moodbot_avx2_supported
        self._supported.restype = ctypes.c_int
        self._matmul = library.moodbot_u8s8_matmul
        self._matmul.argtypes = [
            _pointer, _size, _size, _pointer, _size, _pointer, _pointer, _float, _float, _pointer, _pointer,
            _pointer, _pointer,
        ]
        self._matmul.restype = None
        self._weight_only = library.moodbot_f32s8_matmul
        self._weight_only.argtypes = [_pointer, _size, _size, _pointer, _size, _pointer, _pointer]
        self._weight_only.restype = ctypes.c_int
        self._signed = library.moodbot_s8s8_matmul
        self._signed.argtypes = [_pointer, _size, _size, _pointer, _size, _pointer, _pointer, _pointer]
        self._signed.restype = None
        self._quantize = library.moodbot_quantize_rows
        self._quantize.argtypes = [_pointer, _size, _size, _pointer, _float, _float, _pointer, _pointer, _pointer]
        self._quantize.restype = None
        self.path = path

    def cpu_supported(self) -> bool:
        """Whether this CPU has AVX2 (the library's own check)."""
        return bool(self._supported())

    def matmul(
        self, values: torch.Tensor, weight: torch.Tensor, weight_scales: torch.Tensor, column_sums: torch.Tensor,
        bias: torch.Tensor | None, *, scale: float = 1.0, zero_point: float = 0.0,
        row_scales: torch.Tensor | None = None, zero_points: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(rows, out) float32: ``row_scale * (values - zero_point) @ (weight * weight_scales).T + bias``.

        ``values`` uint8 (rows, in) in 0..``SEVEN_BIT_MAX``, ``weight`` int8 (out, in) contiguous; ``weight_scales``,
        ``column_sums`` (``weight_scales * weight.sum(1)``) and ``bias`` float32 (out,). One row's scale and zero
        point come as numbers, several rows' as float32 tensors (rows,) or (rows, 1).
        """
        rows, width = values.shape
        out = weight.shape[0]
        assert values.dtype == torch.uint8 and weight.dtype == torch.int8 and weight.shape[1] == width
        assert weight.is_contiguous()
        values = values.contiguous()
        result = torch.empty(rows, out, dtype=torch.float32)
        if row_scales is not None:
            assert zero_points is not None and row_scales.numel() == rows == zero_points.numel()
            row_scales, zero_points = row_scales.contiguous(), zero_points.contiguous()
            scales_pointer, zero_pointer = row_scales.data_ptr(), zero_points.data_ptr()
        else:
            assert rows == 1, "several rows need their own scales"
            scales_pointer = zero_pointer = None
        self._matmul(
            values.data_ptr(), rows, width, weight.data_ptr(), out, scales_pointer, zero_pointer, scale, zero_point,
            weight_scales.data_ptr(), column_sums.data_ptr(), None if bias is None else bias.data_ptr(),
            result.data_ptr(),
        )
        return result

    def signed_matmul(
        self, values: torch.Tensor, row_scales: torch.Tensor, weight: torch.Tensor, weight_scales: torch.Tensor
    ) -> torch.Tensor:
        """(rows, out) float32: ``(values * row_scales) @ (weight * weight_scales).T`` for int8 ``values`` (rows, in)
        in -127..127 with float32 ``row_scales`` (rows,) or (rows, 1), int8 ``weight`` (out, in) contiguous and
        float32 ``weight_scales`` (out,)."""
        rows, width = values.shape
        assert values.dtype == torch.int8 and weight.dtype == torch.int8 and weight.shape[1] == width
        assert weight.is_contiguous() and row_scales.numel() == rows
        values, row_scales = values.contiguous(), row_scales.float().contiguous()
        result = torch.empty(rows, weight.shape[0], dtype=torch.float32)
        self._signed(values.data_ptr(), rows, width, weight.data_ptr(), weight.shape[0], row_scales.data_ptr(),
                     weight_scales.data_ptr(), result.data_ptr())
        return result

    def quantize_rows(
        self, x: torch.Tensor, gain: torch.Tensor | None = None, eps: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row of ``x`` (rows, in) as asymmetric uint8 in 0..``SEVEN_BIT_MAX``: (values (rows, in), scales (rows,
        1), zero points (rows, 1), float32 whole numbers) with ``x[r] ≈ scale[r] * (values[r] - zero_point[r])``.
        With ``gain`` (in,) float32, the rows quantised are ``RMSNorm(x) * gain`` (epsilon ``eps``)."""
        x = x.float().contiguous()
        rows, width = x.shape
        values = torch.empty(rows, width, dtype=torch.uint8)
        scales, zero_points = torch.empty(rows, 1), torch.empty(rows, 1)
        self._quantize(x.data_ptr(), rows, width, None if gain is None else _gain_pointer(gain, width), eps,
                       float(SEVEN_BIT_MAX), values.data_ptr(), scales.data_ptr(), zero_points.data_ptr())
        return values, scales, zero_points

    def quantize_row(
        self, x: torch.Tensor, gain: torch.Tensor | None = None, eps: float = 0.0
    ) -> tuple[torch.Tensor, float, int]:
        """:meth:`quantize_rows` for one row (1, in), its scale and zero point as Python numbers (a decode step's
        single-row products take them so)."""
        x = x.float().contiguous()
        width = x.shape[-1]
        values = torch.empty(1, width, dtype=torch.uint8)
        scale, zero_point = _float(), _float()
        self._quantize(x.data_ptr(), 1, width, None if gain is None else _gain_pointer(gain, width), eps,
                       float(SEVEN_BIT_MAX), values.data_ptr(), ctypes.byref(scale), ctypes.byref(zero_point))
        return values, scale.value, int(zero_point.value)

    def weight_only_matmul(self, x: torch.Tensor, weight: torch.Tensor, weight_scales: torch.Tensor) -> torch.Tensor:
        """(rows, out) float32: ``x @ (weight * weight_scales).T`` for float rows ``x`` (rows, in), int8 ``weight``
        (out, in) contiguous and float32 ``weight_scales`` (out,): the output head's product."""
        rows, width = x.shape
        assert rows >= 1 and weight.is_contiguous() and weight.shape[1] == width
        x = x.float().contiguous()
        result = torch.empty(rows, weight.shape[0], dtype=torch.float32)
        done = self._weight_only(x.data_ptr(), rows, width, weight.data_ptr(), weight.shape[0],
                                 weight_scales.data_ptr(), result.data_ptr())
        assert done == 1
        return result


def _gain_pointer(gain: torch.Tensor, width: int) -> int:
    assert gain.dtype == torch.float32 and gain.is_contiguous() and gain.numel() == width
    return gain.data_ptr()


def on_x86() -> bool:
    """Whether this machine is x86-64, the only one the kernel's source is for."""
    return platform.machine().lower() in {"x86_64", "amd64"}


def wanted() -> bool:
    """Whether this CPU should use the kernel: AVX2 without int8 dot products, and not turned off."""
    if os.environ.get(DISABLE_VARIABLE, "").strip().lower() in {"off", "0", "false", "no"}:
        return False
    if not on_x86() or cpu_has_int8_dot_products():
        return False
    return torch.backends.cpu.get_cpu_capability() in {"AVX2", "AVX512"}


@functools.cache
def avx2_int8() -> Avx2Int8 | None:
    """The kernel, built and checked once per process; None where it is not wanted or cannot run (logged once)."""
    if not wanted():
        return None
    try:
        kernel = Avx2Int8(find_or_build())
        if not kernel.cpu_supported():
            return None
        check(kernel)
    except (OSError, RuntimeError, AssertionError, subprocess.SubprocessError) as error:
        logger.warning("the AVX2 int8 kernel is not used (int8 products go through oneDNN): %s", error)
        return None
    logger.info("int8 products on AVX2: %s", kernel.path.name)
    return kernel


def check(kernel: Avx2Int8) -> None:
    """Raise ``AssertionError`` unless the kernel agrees with a float reference on a small odd-shaped product (tail
    columns, a tail of rows, a tail of the inner dimension), so a bad build never computes a reply."""
    generator = torch.Generator().manual_seed(0)
    rows, width, out = 6, 70, 5
    values = torch.randint(0, SEVEN_BIT_MAX + 1, (rows, width), generator=generator, dtype=torch.uint8)
    weight = torch.randint(-127, 128, (out, width), generator=generator, dtype=torch.int8)
    weight_scales = (torch.rand(out, generator=generator) + 1.0) * 1e-3  # outputs of a few hundred: +1 shows
    column_sums = weight.double().sum(1).float() * weight_scales
    bias = torch.randn(out, generator=generator)
    row_scales = torch.rand(rows, generator=generator) + 0.5
    zero_points = torch.randint(0, SEVEN_BIT_MAX + 1, (rows,)).float()
    expected = (values.double() - zero_points.double()[:, None]) @ (weight.double() * weight_scales.double()[:, None]).T
    expected = expected * row_scales.double()[:, None] + bias.double()
    got = kernel.matmul(values, weight, weight_scales, column_sums, bias, row_scales=row_scales,
                        zero_points=zero_points)
    one = kernel.matmul(values[:1].clone(), weight, weight_scales, column_sums, None, scale=float(row_scales[0]),
                        zero_point=float(zero_points[0]))
    floats = torch.randn(3, width, generator=generator)
    weight_only = kernel.weight_only_matmul(floats, weight, weight_scales)
    expected_weight_only = floats.double() @ (weight.double() * weight_scales.double()[:, None]).T
    assert float((weight_only.double() - expected_weight_only).abs().max()) <= 1e-5 * float(
        expected_weight_only.abs().max()), "the weight-only product disagrees with float"
    signed = torch.randint(-127, 128, (rows, width), generator=generator, dtype=torch.int8)
    expected_signed = (signed.double() * row_scales.double()[:, None]) @ (
        weight.double() * weight_scales.double()[:, None]).T
    got_signed = kernel.signed_matmul(signed, row_scales, weight, weight_scales)
    assert float((got_signed.double() - expected_signed).abs().max()) <= 1e-5 * float(
        expected_signed.abs().max()), "the int8 x int8 product disagrees with float"
    rows_to_quantize = torch.randn(3, width, generator=generator) * 4.0
    gain = torch.rand(width, generator=generator) + 0.5
    values, scales, zero_points = kernel.quantize_rows(rows_to_quantize, gain, 1e-6)
    normed = rows_to_quantize * gain * rows_to_quantize.square().mean(-1, keepdim=True).add(1e-6).rsqrt()
    assert int(values.max()) <= SEVEN_BIT_MAX, "the quantised values leave their range"
    assert bool(((values.float() - zero_points) * scales - normed).abs().le(scales * 0.5001 + 1e-6).all()), (
        "the quantised rows do not stand for their inputs")
    tolerance = 1e-5 * float(expected.abs().max())
    assert float((got.double() - expected).abs().max()) <= tolerance, "the AVX2 int8 kernel disagrees with float"
    assert float((one.double() - (expected[:1] - bias.double())).abs().max()) <= tolerance, "one row disagrees"


def main() -> int:
    """Build the library into :func:`prebuilt_folder` (for images: the container then needs no compiler)."""
    if not on_x86():
        print(f"no AVX2 kernel for {platform.machine()}: int8 uses torch's own kernels there")
        return 0
    try:
        print(build(prebuilt_folder(), private=False))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        print(f"the AVX2 int8 kernel was not built ({error}): int8 uses oneDNN, slower on AVX2 CPUs without VNNI")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
