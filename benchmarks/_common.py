"""Shared helpers of the benchmark scripts: peak memory, timing, and the result table.

Every benchmark compares this project against a reference implementation **in the same
process**, case by case, and prints one row per case::

    case      seconds  reference_s  ratio   peak_rss  reference_peak_rss  <extras...>
    some case   0.412        4.310   10.5   88.1 MiB           140.2 MiB
    min_ratio_vs_reference: 10.5

(``print_results``; ``print_table`` prints any other table.)

``measure(function)`` runs a callable once and returns its wall time and the peak resident set
size (RSS) of the process while it ran. On Linux the kernel's high-water mark (``VmHWM``) is
reset before the call (``/proc/self/clear_refs``), so the peak belongs to that call alone and
includes everything GDAL and numpy allocated; elsewhere a background thread samples the RSS with
psutil every few milliseconds (a lower bound of the true peak).

These helpers import nothing from the project, so any benchmark can use them.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _read_status_kib(key: str) -> int | None:
    """Return a ``/proc/self/status`` field in KiB (``VmHWM``, ``VmRSS``), or None if unavailable."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def kernel_peak_reset_available() -> bool:
    """Reset the kernel's RSS high-water mark (Linux ``clear_refs`` 5) if possible; tell whether it worked.

    The reset itself is the test: after a True, ``VmHWM`` starts again from the current RSS.
    """
    if _read_status_kib("VmHWM") is None:
        return False
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class _Sampler(threading.Thread):
    """Sample the process RSS every ``interval`` seconds until stopped; keep the maximum."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return max(self.peak, self.process.memory_info().rss)


@dataclass(frozen=True)
class Measurement:
    """Wall time and peak RSS of one call, and what the call returned."""

    seconds: float
    peak_rss: int
    """Peak resident set size of the whole process during the call, in bytes."""
    result: Any = field(default=None, repr=False)
    start_rss: int = 0
    """Resident set size just before the call (after garbage collection and heap trimming)."""


def _release_free_memory() -> None:
    """Collect garbage and give freed heap pages back to the OS (glibc ``malloc_trim``), if possible.

    Without this, memory an earlier step freed but the allocator kept would count in the next
    call's peak RSS.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(function: Callable[[], Any]) -> Measurement:
    """Run ``function()`` once; return its wall time and the process's peak RSS during it.

    Garbage is collected and freed heap returned to the OS first, so earlier garbage does not
    count. The peak is the kernel's ``VmHWM`` after resetting it (Linux), else the maximum of
    psutil samples taken every 5 ms. It is the whole process's RSS (imports included; see
    ``start_rss`` for where the call started).

    Returns:
        A ``Measurement`` with ``seconds``, ``peak_rss`` and ``start_rss`` (bytes) and the
        function's result.

    Raises:
        Whatever ``function`` raises.
    """
    _release_free_memory()
    start_rss = psutil.Process().memory_info().rss
    if kernel_peak_reset_available():
        start = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - start
        peak_kib = _read_status_kib("VmHWM") or 0
        return Measurement(seconds=seconds, peak_rss=peak_kib * 1024, result=result, start_rss=start_rss)
    sampler = _Sampler()
    sampler.start()
    start = time.perf_counter()
    try:
        result = function()
    finally:
        seconds = time.perf_counter() - start
        peak = sampler.stop()
    return Measurement(seconds=seconds, peak_rss=peak, result=result, start_rss=start_rss)


_M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)


def pin_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Pin glibc's mmap threshold so every allocation above ``threshold`` bytes is mmapped.

    glibc raises the threshold after the first large block is freed (up to 32 MiB), after
    which large buffers come from the heap, are reused unevenly and are not returned: a case's
    peak RSS then depends on which cases ran before it. Pinning the threshold (which also turns
    the dynamic adjustment off) makes every case start from the same allocator behaviour. It
    applies to every side of a benchmark alike. Same as ``MALLOC_MMAP_THRESHOLD_=131072``.

    Returns:
        True if the threshold was set (glibc), False elsewhere.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def peak_rss_method() -> str:
    """Describe how ``measure`` obtains the peak RSS on this machine (for the benchmark header)."""
    if kernel_peak_reset_available():
        return "kernel high-water mark VmHWM, reset before each call"
    return "psutil RSS sampled every 5 ms (a lower bound)"


def format_bytes(size: float) -> str:
    """Return ``size`` bytes as a short human string in binary units (``'1.5 GiB'``)."""
    for unit in ("B", "KiB", "MiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


@dataclass(frozen=True)
class CaseResult:
    """One benchmark case: this project against the reference, in the same process.

    ``extras`` are further columns (already formatted) that ``print_results`` prints after the
    standard ones, in insertion order; every result of one table should have the same keys.
    """

    case: str
    seconds: float
    reference_seconds: float
    peak_rss: int
    reference_peak_rss: int
    extras: Mapping[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How many times faster this project is than the reference (reference / project)."""
        return self.reference_seconds / self.seconds if self.seconds > 0 else float("inf")


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], stream: TextIO | None = None) -> None:
    """Print ``rows`` under ``headers`` as an aligned plain-text table (left-aligned first column)."""
    stream = stream or sys.stdout
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=False)
        ]
        print("  ".join(parts).rstrip(), file=stream)
    stream.flush()


def print_results(results: Sequence[CaseResult], stream: TextIO | None = None, digits: int = 3) -> float:
    """Print one row per case and, last, ``min_ratio_vs_reference: X``; return that minimum ratio.

    Columns: case, seconds, reference_s, ratio, peak_rss, reference_peak_rss, then the
    ``extras`` of the first result. Callers that print further summary lines should print them
    before calling this, so the minimum ratio stays the last line.

    Raises:
        ValueError: if ``results`` is empty.
    """
    if not results:
        raise ValueError("print_results: no benchmark results")
    stream = stream or sys.stdout
    extra_names = list(results[0].extras)
    rows = [
        (
            r.case,
            f"{r.seconds:.{digits}f}",
            f"{r.reference_seconds:.{digits}f}",
            f"{r.ratio:.1f}",
            format_bytes(r.peak_rss),
            format_bytes(r.reference_peak_rss),
            *(r.extras.get(name, "-") for name in extra_names),
        )
        for r in results
    ]
    headers = ("case", "seconds", "reference_s", "ratio", "peak_rss", "reference_peak_rss", *extra_names)
    print_table(rows, headers, stream)
    minimum = min(r.ratio for r in results)
    print(f"min_ratio_vs_reference: {minimum:.1f}", file=stream, flush=True)
    return minimum


def machine_summary() -> str:
    """One line describing the machine: CPUs, memory, current load average."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    memory = psutil.virtual_memory().total
    return (
        f"cpus={os.cpu_count()} memory={format_bytes(memory)} "
        f"load_average={load[0]:.2f},{load[1]:.2f},{load[2]:.2f} python={sys.version.split()[0]}"
    )


__all__ = [
    "CaseResult",
    "Measurement",
    "format_bytes",
    "kernel_peak_reset_available",
    "machine_summary",
    "measure",
    "peak_rss_method",
    "pin_mmap_threshold",
    "print_results",
    "print_table",
]
