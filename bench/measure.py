"""Small measurement helpers: percentiles, a wall-clock timer and resident-memory probes (Linux ``/proc``).

Memory figures are in MiB (``kB / 1024``) and come from ``/proc/self/status``:

* ``VmRSS``: the resident set right now (:func:`rss_mb`);
* ``VmHWM``: the high-water mark of ``VmRSS`` since the process started (:func:`peak_rss_mb`), which only the
  process itself can reset, by writing ``5`` to ``/proc/self/clear_refs`` (:func:`reset_peak_rss`), and only
  where the kernel and the sandbox allow it;
* :class:`PeakRssSampler` measures the peak of one phase without any reset: a background thread polls ``VmRSS``
  and keeps the maximum. It can miss a spike shorter than its interval, so when the reset is permitted it also
  reports the ``VmHWM`` of the phase, which misses nothing.
"""

from __future__ import annotations

import fcntl
import math
import os
import platform
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")

BENCH_LOCK = Path("/tmp/moodbot-bench.lock")
"""The advisory lock that keeps benchmark processes on this machine sequential (see :func:`bench_lock`)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` with linear interpolation (numpy's default method).

    Raises ``ValueError`` on an empty sequence or a ``q`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (the 50th percentile, interpolated between the two middle values)."""
    return percentile(values, 50.0)


class Timer:
    """Wall-clock timer (``time.perf_counter``) as a context manager.

    ``with Timer() as t: ...`` then read ``t.seconds`` or ``t.ms``; while the block runs they give the time so far.
    """

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Elapsed seconds (up to now while the block still runs)."""
        if self.start is None:
            raise RuntimeError("Timer was never started")
        end = self.end if self.end is not None else time.perf_counter()
        return end - self.start

    @property
    def ms(self) -> float:
        """Elapsed milliseconds."""
        return self.seconds * 1000.0


class CpuShare:
    """Share of ``threads`` cores this process actually got during a block: CPU seconds / (wall seconds x threads).

    Close to 1.0 on an idle machine with all threads busy; well below it when other processes compete for the
    cores (then every timing measured in the block is inflated). Also records the 1-minute load average at entry
    and exit (``load_start``, ``load_end``).
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.share = float("nan")
        self.load_start = float("nan")
        self.load_end = float("nan")
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def start(self) -> CpuShare:
        """Start measuring (what ``with`` does on entry); returns self."""
        self.load_start = os.getloadavg()[0]
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def stop(self) -> float:
        """Stop measuring (what ``with`` does on exit) and return :attr:`share`."""
        wall = time.perf_counter() - self._wall0
        self.share = (time.process_time() - self._cpu0) / (wall * self.threads) if wall > 0 else float("nan")
        self.load_end = os.getloadavg()[0]
        return self.share

    def __enter__(self) -> CpuShare:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _status_kb(field: str) -> int:
    """One ``kB`` field of ``/proc/self/status`` (e.g. ``VmRSS``)."""
    prefix = field + ":"
    with _STATUS.open() as fh:
        for line in fh:
            if line.startswith(prefix):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in {_STATUS}")


def rss_mb() -> float:
    """Current resident set size of this process in MiB (``VmRSS``)."""
    return _status_kb("VmRSS") / 1024.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``): since start, or since :func:`reset_peak_rss`."""
    return _status_kb("VmHWM") / 1024.0


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS by writing ``5`` to ``/proc/self/clear_refs``.

    Returns True when the kernel accepted it (and ``VmHWM`` indeed dropped to about ``VmRSS``), False when the
    file is missing or not writable here; never raises.
    """
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    try:
        # The write succeeding is not proof enough (old kernels ignore "5"): check the mark came down.
        return _status_kb("VmHWM") <= _status_kb("VmRSS") + 1024
    except (OSError, RuntimeError):
        return False


class PeakRssSampler:
    """Peak RSS of one phase of this process, as a context manager.

    A daemon thread reads ``VmRSS`` every ``interval_s`` (10 ms by default) and keeps the maximum; on entry it also
    tries :func:`reset_peak_rss` so that ``VmHWM`` can be read for the phase as well. After the block:

    * ``peak_mb``: the peak of the phase, the larger of the sampled maximum and (when the reset worked) ``VmHWM``;
    * ``sampled_peak_mb``, ``hwm_peak_mb`` (None when the reset was not permitted), ``start_mb``, ``end_mb``,
      ``samples``;
    * ``method``: ``"vmhwm-reset+sampler"`` or ``"sampler"``, saying which measurement backs ``peak_mb``.

    The sampler thread needs the GIL to run; native code that holds it for long (rare in torch, which releases it)
    delays samples, which is what the ``VmHWM`` reading covers.
    """

    def __init__(self, interval_s: float = 0.01, try_reset_hwm: bool = True) -> None:
        self.interval_s = interval_s
        self.try_reset_hwm = try_reset_hwm
        self.hwm_reset = False
        self.start_mb = 0.0
        self.end_mb = 0.0
        self.sampled_peak_mb = 0.0
        self.hwm_peak_mb: float | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            current = rss_mb()
            self.samples += 1
            if current > self.sampled_peak_mb:
                self.sampled_peak_mb = current
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRssSampler:
        self.hwm_reset = reset_peak_rss() if self.try_reset_hwm else False
        self.start_mb = rss_mb()
        self.sampled_peak_mb = self.start_mb
        self.samples = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.end_mb = rss_mb()
        self.sampled_peak_mb = max(self.sampled_peak_mb, self.end_mb)
        self.hwm_peak_mb = peak_rss_mb() if self.hwm_reset else None

    @property
    def peak_mb(self) -> float:
        """The phase's peak RSS in MiB (see the class docstring for how it is measured)."""
        if self.hwm_peak_mb is None:
            return self.sampled_peak_mb
        return max(self.sampled_peak_mb, self.hwm_peak_mb)

    @property
    def method(self) -> str:
        """Which measurement backs :attr:`peak_mb`: ``"vmhwm-reset+sampler"`` or ``"sampler"``."""
        return "vmhwm-reset+sampler" if self.hwm_reset else "sampler"


@contextmanager
def bench_lock(path: str | os.PathLike[str] = BENCH_LOCK) -> Iterator[Timer]:
    """Hold an exclusive advisory lock (``flock``) on ``path`` for the block, waiting for it first.

    Benchmarks on a 2-core machine must not overlap; every measuring process that takes this lock runs alone
    among those that take it too. Take it in the process that measures, never in a parent that waits for a child
    which takes it. Yields a :class:`Timer` whose ``seconds`` is how long the wait lasted.
    """
    waited = Timer()
    with open(path, "a+") as fh:
        waited.start = time.perf_counter()
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        waited.end = time.perf_counter()
        try:
            yield waited
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# The vector features that decide which kernels run: int8 dot products (VNNI), bf16, AVX-512 or only AVX2.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8")


def cpu_description() -> dict[str, object]:
    """The CPU a figure came from: its name, cores, vector features (from /proc/cpuinfo) and the instruction set
    torch dispatches to; every benchmark prints it beside its numbers."""
    fields: dict[str, str] = {}  # the first core's lines are enough: every core reports the same
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    described: dict[str, object] = {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "vector_features": [f for f in VECTOR_FLAGS if f in flags],
    }
    try:
        import torch

        described["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        return described
    from engine import int8_kernel

    described["int8_kernel"] = int8_kernel().split(" (")[0]  # "AVX2" or "oneDNN": int8 figures depend on it
    return described
