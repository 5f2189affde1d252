"""Blend the merged observations of one tile and period into composites (LCF, MED, AVG).

Pure array functions work on a stack of T observations of one band, shape ``(T, H, W)``, and
their ``QualityClass`` codes of the same shape; each implements one rule of issue 3 ("Blend"):

* ``rank_observations``: merges ranked by efficacy descending, ties to the newer date.
* ``lcf`` (best pixel): first clear observation in rank order, else first non-nodata one
  (even cloudy or saturated), else nodata; ``provenance`` (day of year, int16, nodata -1) and
  ``composite_quality`` follow the same chosen observation.
* ``median_clear`` / ``mean_clear``: median / mean of the clear observations, integer results
  truncated toward zero (an even count's median is the mean of the two middle values),
  nodata where none is clear.
* ``clear_observation_count`` / ``total_observation_count``: CLEAROB / TOTALOB (uint8).

All are vectorised numpy, keep the input dtype (uint16 40000 stays 40000) and never wrap (sums
are taken in 64 bits). They are the reference ("pure numpy") path.

``blend_band`` and ``blend_quality`` run the rules window by window over GeoTIFFs, so peak
memory depends on ``block_size`` and T, not on the tile size, and write GeoTIFFs (or hand them
to a ``finalize`` such as a COG conversion). By default they use the compiled kernels of
``composite_kernels`` (numba), which give the same pixels as the numpy functions, decode the
input files in parallel threads and skip reading band files no rule needs in a window.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from cube_assets.errors import InvalidCubeConfig, InvalidRaster
from cube_assets.raster.masks import (
    QualityClass,
    QualityRules,
    classify_quality,
    propagate_spectral_nodata,
    rules_from_config,
)
from cube_assets.raster.windowed_io import (
    Finalize,
    PathLike,
    block_windows,
    check_nodata_fits,
    open_aligned,
    open_writers,
    output_profile,
    staged_outputs,
    write_window,
)


FUNCTIONS = ("LCF", "MED", "AVG")
"""Compositing functions ``blend_band`` knows."""

PROVENANCE_NODATA = -1
MAX_COUNT = np.iinfo(np.uint8).max

ENGINES = ("auto", "numba", "numpy")
"""``engine`` choices of ``blend_band`` / ``blend_quality``."""

DEFAULT_IO_THREADS = 4
"""At most this many windows (each decoding one file at a time) are composited at once by
default (fewer on fewer CPUs)."""

GDAL_CACHE_BYTES = 64 * 1024 * 1024
"""GDAL block cache while blending (and finalizing): every block is read once, so a small cache
suffices, and GDAL's default (5 % of RAM) would otherwise fill with decoded blocks of a large
tile. Given in bytes: rasterio applies it with ``GDALSetCacheMax64`` (bytes) once GDAL's cache
exists, while GDAL itself would read a small number such as 64 as megabytes."""


# --------------------------------------------------------------------------- ranking


def rank_observations(efficacies: Sequence[float], dates: Sequence[datetime.date]) -> list[int]:
    """Order a period's observations for best-pixel compositing.

    Rule: highest efficacy first; equal efficacies go to the newer date; equal efficacy and
    date keep their input order.

    Returns:
        Observation indices, best first.

    Raises:
        ValueError: if the sequences differ in length or an efficacy is not a finite number.
    """
    if len(efficacies) != len(dates):
        raise ValueError(f"rank_observations: {len(efficacies)} efficacies for {len(dates)} dates")
    for position, value in enumerate(efficacies):
        if not np.isfinite(value):
            raise ValueError(f"rank_observations: efficacy {value!r} of observation {position} ({dates[position]})")
    order = sorted(range(len(dates)), key=lambda i: dates[i], reverse=True)  # stable: ties keep input order
    return sorted(order, key=lambda i: -float(efficacies[i]))


# --------------------------------------------------------------------------- checks


def _check_stack(values: np.ndarray, classes: np.ndarray, what: str) -> None:
    if values.ndim != 3:
        raise InvalidRaster(f"{what}: values must have shape (T, H, W), got {values.shape}")
    if classes.shape != values.shape:
        raise InvalidRaster(f"{what}: quality classes have shape {classes.shape}, values {values.shape}")
    if values.shape[0] == 0:
        raise InvalidRaster(f"{what}: no observations")


def _check_order(order: Sequence[int], count: int) -> np.ndarray:
    order_array = np.asarray(order, dtype=np.intp)
    if order_array.shape != (count,) or not np.array_equal(np.sort(order_array), np.arange(count)):
        raise ValueError(f"observation order {list(order)} is not a permutation of 0..{count - 1}")
    return order_array


# --------------------------------------------------------------------------- pure array functions


def lcf(
    values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float
) -> tuple[np.ndarray, np.ndarray]:
    """Best-pixel (LCF) composite.

    Rule: each pixel takes its value from the first CLEAR observation in ``order``; where none
    is clear, from the first whose class is not NODATA (cloudy or saturated); otherwise
    ``nodata``.

    Returns:
        ``(composite, chosen_index)``: the composite in ``values.dtype`` and, per pixel, the
        chosen observation's index into the stack (``int32``, -1 where none).

    Raises:
        InvalidRaster: on shapes other than matching ``(T, H, W)`` or a nodata the dtype cannot hold.
        ValueError: if ``order`` is not a permutation of the observations.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check_stack(values, classes, "lcf")
    check_nodata_fits(nodata, values.dtype, "lcf")
    order_array = _check_order(order, values.shape[0])
    ranked = classes[order_array]
    clear = ranked == QualityClass.CLEAR
    present = ranked != QualityClass.NODATA
    rank = np.where(clear.any(axis=0), clear.argmax(axis=0), present.argmax(axis=0))
    chosen = np.where(present.any(axis=0), order_array[rank], -1).astype(np.int32)
    composite = np.take_along_axis(values, np.maximum(chosen, 0)[np.newaxis], axis=0)[0]
    composite[chosen < 0] = nodata
    return composite, chosen


def provenance(chosen_index: np.ndarray, day_of_year: Sequence[int]) -> np.ndarray:
    """PROVENANCE band: the day of year of the observation each LCF pixel came from.

    Returns:
        An ``int16`` array, -1 where ``chosen_index`` is -1.

    Raises:
        InvalidRaster: if an index does not name one of the ``day_of_year`` entries.
        ValueError: if a day of year is outside 1..366.
    """
    chosen_index = np.asarray(chosen_index)
    days = np.asarray(day_of_year, dtype=np.int64)
    if np.any((days < 1) | (days > 366)):
        raise ValueError(f"provenance: days of year {days.tolist()} must lie in 1..366")
    if chosen_index.size and (chosen_index.min() < -1 or chosen_index.max() >= len(days)):
        raise InvalidRaster(f"provenance: chosen indices must lie in -1..{len(days) - 1}")
    if len(days) == 0:
        return np.full(chosen_index.shape, PROVENANCE_NODATA, dtype=np.int16)
    out = days.astype(np.int16)[np.maximum(chosen_index, 0)]
    out[chosen_index < 0] = PROVENANCE_NODATA
    return out


def composite_quality(quality_values: np.ndarray, chosen_index: np.ndarray, quality_nodata: int) -> np.ndarray:
    """Composite the raw quality band (e.g. Fmask codes) by the LCF choice.

    Rule: each pixel takes the raw quality value of the observation LCF chose there, and
    ``quality_nodata`` where none was chosen.

    Returns:
        An array in ``quality_values.dtype`` of shape ``(H, W)``.

    Raises:
        InvalidRaster: if the shapes do not match or ``quality_nodata`` does not fit the dtype.
    """
    quality_values, chosen_index = np.asarray(quality_values), np.asarray(chosen_index)
    if quality_values.ndim != 3 or quality_values.shape[1:] != chosen_index.shape:
        raise InvalidRaster(
            f"composite_quality: quality {quality_values.shape} does not match chosen index {chosen_index.shape}"
        )
    if chosen_index.size and chosen_index.max() >= quality_values.shape[0]:
        raise InvalidRaster(f"composite_quality: chosen index {chosen_index.max()} exceeds the stack")
    check_nodata_fits(quality_nodata, quality_values.dtype, "composite_quality")
    out = np.take_along_axis(quality_values, np.maximum(chosen_index, 0)[np.newaxis], axis=0)[0]
    out[chosen_index < 0] = quality_nodata
    return out


def _truncated_midpoint(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``trunc((low + high) / 2)`` for integer arrays, exact and without overflow in their dtype.

    ``low//2 + high//2 + (low%2 + high%2)//2`` is ``floor((low+high)/2)`` and lies between the
    two inputs; truncation differs from floor only for a negative odd sum, where we add one.
    """
    odd = (low % 2) + (high % 2)
    floor = low // 2 + high // 2 + odd // 2
    return floor + ((odd == 1) & (floor < 0)).astype(floor.dtype)


def median_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """MED composite: the median of each pixel's CLEAR observations.

    Rule: with an even count, the mean of the two middle values, truncated toward zero for
    integer dtypes (plain mean for float dtypes); ``nodata`` where no observation is clear.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check_stack(values, classes, "median_clear")
    check_nodata_fits(nodata, values.dtype, "median_clear")
    clear = classes == QualityClass.CLEAR
    count = clear.sum(axis=0)
    # Non-clear observations become a sentinel that sorts after every clear value (dtype max
    # for integers, NaN for floats); the first `count` sorted entries are then exactly the
    # clear values, so no conversion to float is needed and integers survive exactly.
    sentinel = np.iinfo(values.dtype).max if values.dtype.kind in "iu" else np.nan
    ordered = np.sort(np.where(clear, values, sentinel).astype(values.dtype, copy=False), axis=0)
    low_rank = np.maximum(count - 1, 0) // 2
    high_rank = count // 2
    low = np.take_along_axis(ordered, low_rank[np.newaxis], axis=0)[0]
    high = np.take_along_axis(ordered, high_rank[np.newaxis], axis=0)[0]
    if values.dtype.kind in "iu":
        median = _truncated_midpoint(low, high)
    else:
        median = ((low.astype(np.float64) + high.astype(np.float64)) / 2.0).astype(values.dtype)
    median[count == 0] = nodata
    return median


def mean_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """AVG composite: the mean of each pixel's CLEAR observations.

    Rule: integer means are truncated toward zero (sums in int64 / uint64); float means are
    computed in float64; ``nodata`` where no observation is clear.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check_stack(values, classes, "mean_clear")
    check_nodata_fits(nodata, values.dtype, "mean_clear")
    clear = classes == QualityClass.CLEAR
    count = clear.sum(axis=0)
    divisor = np.maximum(count, 1)
    if values.dtype.kind == "u":
        total = np.where(clear, values, 0).sum(axis=0, dtype=np.uint64)
        mean = (total // divisor.astype(np.uint64)).astype(values.dtype)
    elif values.dtype.kind == "i":
        total = np.where(clear, values, 0).sum(axis=0, dtype=np.int64)
        magnitude = np.abs(total) // divisor
        mean = np.where(total < 0, -magnitude, magnitude).astype(values.dtype)
    else:
        total = np.where(clear, values, 0).sum(axis=0, dtype=np.float64)
        mean = (total / divisor).astype(values.dtype)
    mean[count == 0] = nodata
    return mean


def clear_observation_count(classes: np.ndarray) -> np.ndarray:
    """CLEAROB: how many observations are CLEAR at each pixel.

    Returns:
        A ``uint8`` ``(H, W)`` array, saturating at 255.
    """
    count = (np.asarray(classes) == QualityClass.CLEAR).sum(axis=0)
    return np.minimum(count, MAX_COUNT).astype(np.uint8)


def total_observation_count(classes: np.ndarray) -> np.ndarray:
    """TOTALOB: how many observations are not NODATA at each pixel (clear, cloudy or saturated).

    Returns:
        A ``uint8`` ``(H, W)`` array, saturating at 255.
    """
    count = (np.asarray(classes) != QualityClass.NODATA).sum(axis=0)
    return np.minimum(count, MAX_COUNT).astype(np.uint8)


# --------------------------------------------------------------------------- windowed drivers


def _output_profile(reference: Any, dtype: Any, nodata: float | None, compress: bool) -> dict[str, Any]:
    """A tiled single-band GeoTIFF profile on ``reference``'s grid; DEFLATE unless it is only staging."""
    return output_profile(
        dtype, nodata, crs=reference.crs, transform=reference.transform, shape=(reference.height, reference.width),
        compress=compress, predictor=False,
    )


def _staged_outputs(destinations: Mapping[str, PathLike], finalize: Finalize | None) -> Any:
    """``staged_outputs`` of the composites: several outputs are finalized at once, in threads."""
    return staged_outputs(destinations, finalize, finalize_threads=os.cpu_count() or 1, thread_name_prefix="blend-cog")


def _check_observations(
    paths: Sequence[Sequence[PathLike]], names: Sequence[str], dates: Sequence[Any], efficacies: Sequence[float]
) -> None:
    lengths = {name: len(seq) for name, seq in zip(names, paths, strict=True)}
    lengths.update(dates=len(dates), efficacies=len(efficacies))
    if len(set(lengths.values())) != 1:
        raise ValueError(f"one entry per observation is required, got {lengths}")
    if not dates:
        raise ValueError("at least one observation is required")


def _as_rules(quality_rules: QualityRules | Mapping[str, Any]) -> QualityRules:
    return rules_from_config(quality_rules) if isinstance(quality_rules, Mapping) else quality_rules


# --------------------------------------------------------------------------- engines


def _numba_available() -> bool:
    try:
        from cube_assets.raster import composite_kernels  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_engine(engine: str, band_dtype: np.dtype | None) -> str:
    """Pick "numba" or "numpy": ``auto`` takes numba when it imports and the band dtype suits it.

    The kernels are exact for integer bands of at most 32 bits and for float bands; 64-bit
    integer bands always take the numpy path.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {ENGINES}")
    suitable = band_dtype is None or band_dtype.kind == "f" or (band_dtype.kind in "iu" and band_dtype.itemsize <= 4)
    if engine == "numpy":
        return "numpy"
    if engine == "numba":
        if not _numba_available():
            raise ValueError("engine 'numba' was asked for but numba cannot be imported")
        if not suitable:
            raise ValueError(f"engine 'numba' does not handle {band_dtype} bands; use 'numpy' or 'auto'")
        return "numba"
    return "numba" if suitable and _numba_available() else "numpy"


class _QualityLookup:
    """``QualityClass`` codes of quality values, as a lookup table the kernels index.

    Integer quality bands of at most 16 bits get a table over every code of their dtype, built
    with ``classify_quality`` itself, so the classes are exactly the numpy path's. Other dtypes
    are classified window by window with ``classify_quality`` and looked up through an identity
    table.
    """

    def __init__(self, rules: QualityRules, dtype: np.dtype) -> None:
        self.rules = rules
        if dtype.kind in "iu" and dtype.itemsize <= 2:
            info = np.iinfo(dtype)
            codes = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
            self.table = classify_quality(codes, rules)
            self.offset = -int(info.min)
            self.direct = True
        else:
            self.table = np.arange(256, dtype=np.uint8)
            self.offset = 0
            self.direct = False

    def prepare(self, quality: np.ndarray) -> np.ndarray:
        """The array the kernels read: the raw quality, or its classes for non-tabulated dtypes."""
        return quality if self.direct else classify_quality(quality, self.rules)


class _StackReader:
    """Read one window of several single-band datasets into a ``(T, H, W)`` stack.

    A reader belongs to one window worker (GDAL handles are never shared between threads).
    """

    def __init__(self, datasets: Sequence[Any], dtype: np.dtype | None = None) -> None:
        self.datasets = datasets
        self.dtype = dtype if dtype is not None else np.dtype(datasets[0].dtypes[0])

    def empty(self, window: Window) -> np.ndarray:
        return np.empty((len(self.datasets), int(window.height), int(window.width)), dtype=self.dtype)

    def read(self, window: Window, stack: np.ndarray, which: Sequence[int] | None = None) -> np.ndarray:
        for t in range(len(self.datasets)) if which is None else which:
            self.datasets[t].read(1, window=window, out=stack[t])
        return stack


def _window_workers(io_threads: int | None) -> int:
    threads = io_threads if io_threads is not None else min(DEFAULT_IO_THREADS, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"io_threads must be an integer of at least 1, got {threads!r}")
    return threads


class _Reopened(Sequence[Any]):
    """Other handles on ``datasets`` (already checked by ``_open_aligned``), for another worker.

    Each file is opened on first use, in the thread of the worker that uses it (opening costs a
    few milliseconds a file, which would otherwise be spent in turn before any window starts);
    all are closed when ``stack`` closes.
    """

    def __init__(self, stack: contextlib.ExitStack, datasets: Sequence[Any]) -> None:
        self._names = [dataset.name for dataset in datasets]
        self._opened: list[Any] = [None] * len(datasets)
        stack.callback(self._close)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._opened[index] is None:
            self._opened[index] = rasterio.open(self._names[index])
        return self._opened[index]

    def _close(self) -> None:
        for dataset in self._opened:
            if dataset is not None:
                dataset.close()


def _run_windows(
    windows: Sequence[Window],
    workers: Sequence[Callable[[Window], Mapping[str, np.ndarray]]],
    write: Callable[[Window, Mapping[str, np.ndarray]], None],
) -> None:
    """Composite every window with one of ``workers`` and ``write`` its results.

    Each worker (its own dataset handles and buffers) runs in a thread of its own and takes the
    next window not yet taken, so decoding, the GIL-free kernels and the writes of different
    windows overlap on all cores; ``write`` calls are serialized by a lock (one output handle).
    With one worker everything runs here, in window order. The first exception stops every
    worker after its current window and is raised once all have stopped.
    """
    if len(workers) == 1:
        for window in windows:
            write(window, workers[0](window))
        return
    pending = iter(windows)
    lock = threading.Lock()
    failed = threading.Event()

    def run(worker: Callable[[Window], Mapping[str, np.ndarray]]) -> None:
        try:
            while not failed.is_set():
                with lock:
                    window = next(pending, None)
                if window is None:
                    return
                results = worker(window)
                with lock:
                    write(window, results)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=len(workers), thread_name_prefix="blend-window") as pool:
        futures = [pool.submit(run, worker) for worker in workers]
        wait(futures)
    for future in futures:
        future.result()


def _band_window_numpy(
    values: np.ndarray, quality: np.ndarray, rules: QualityRules, order: Sequence[int], band_nodata: float,
    functions: Sequence[str],
) -> dict[str, np.ndarray]:
    """The pure-numpy composites of one window (every observation read)."""
    classes = propagate_spectral_nodata(classify_quality(quality, rules), [values], band_nodata, QualityClass.NODATA)
    results = {}
    for name in functions:
        if name == "LCF":
            results[name] = lcf(values, classes, order, band_nodata)[0]
        elif name == "MED":
            results[name] = median_clear(values, classes, band_nodata)
        else:
            results[name] = mean_clear(values, classes, band_nodata)
    return results


class _NumbaBandWindows:
    """The compiled path of ``blend_band``: read what a window needs, then composite it.

    ``read`` reads the window's quality files, then only the band files some rule needs: MED
    and AVG need the observations with at least one CLEAR pixel in the window; LCF needs the
    observations it chooses, found by running it with unread observations assumed valid,
    reading the chosen ones and running it again until every chosen observation has been read
    (a read observation whose band value is nodata is then skipped, as the rules say) -- so LCF
    is finished while reading. ``composite`` then runs MED / AVG. One instance per window worker.
    """

    def __init__(
        self, band_reader: _StackReader, quality_reader: _StackReader, lookup: _QualityLookup, order: Sequence[int],
        band_nodata: float, functions: Sequence[str],
    ) -> None:
        from cube_assets.raster import composite_kernels

        self.kernels = composite_kernels
        self.band_reader, self.quality_reader, self.lookup = band_reader, quality_reader, lookup
        self.order = np.asarray(order, dtype=np.int64)
        self.functions = functions
        self.dtype = band_reader.dtype
        self.fill = self.dtype.type(band_nodata)  # compared in the band's dtype, as numpy compares
        self.nodata_is_nan = bool(np.isnan(self.fill))
        self.integer = self.dtype.kind in "iu"
        self.sentinel = self.dtype.type(np.iinfo(self.dtype).max) if self.integer else self.dtype.type(np.nan)
        self.network = composite_kernels.sorting_network(len(order))

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        kernels, lookup = self.kernels, self.lookup
        quality = lookup.prepare(self.quality_reader.read(window, self.quality_reader.empty(window)))
        count, shape = quality.shape[0], quality.shape[1:]
        values = self.band_reader.empty(window)
        loaded = np.zeros(count, dtype=np.bool_)
        needed = np.zeros(count, dtype=np.bool_)
        if "MED" in self.functions or "AVG" in self.functions:
            kernels.observations_with_clear(quality, lookup.table, lookup.offset, needed)
        results: dict[str, np.ndarray] = {}
        if "LCF" in self.functions:
            best = np.empty(shape, dtype=self.dtype)
            chosen = np.empty(shape, dtype=np.int32)
            while True:
                wanted = np.zeros(count, dtype=np.bool_)
                kernels.lcf_window(
                    values, quality, lookup.table, lookup.offset, self.order, loaded, True, self.fill,
                    self.nodata_is_nan, best, chosen, wanted,
                )
                missing = np.flatnonzero((wanted | needed) & ~loaded)
                if missing.size == 0:
                    break
                self.band_reader.read(window, values, missing)
                loaded[missing] = True
            results["LCF"] = best
        else:
            missing = np.flatnonzero(needed)
            self.band_reader.read(window, values, missing)
            loaded[missing] = True
        return quality, values, loaded, results

    def __call__(self, window: Window) -> dict[str, np.ndarray]:
        """Every function's composite of ``window``."""
        return self.composite(*self.read(window))

    def composite(self, quality: np.ndarray, values: np.ndarray, loaded: np.ndarray, results: dict) -> dict:
        lookup = self.lookup
        common = (values, quality, lookup.table, lookup.offset, loaded, True, self.fill, self.nodata_is_nan, self.integer)
        for name in self.functions:
            if name == "MED":
                results[name] = np.empty(quality.shape[1:], dtype=self.dtype)
                self.kernels.median_window(*common, self.sentinel, self.network, results[name])
            elif name == "AVG":
                results[name] = np.empty(quality.shape[1:], dtype=self.dtype)
                self.kernels.mean_window(*common, results[name])
        return results


def blend_band(
    merge_paths: Sequence[PathLike],
    quality_paths: Sequence[PathLike],
    dates: Sequence[datetime.date],
    efficacies: Sequence[float],
    quality_rules: QualityRules | Mapping[str, Any],
    functions: Sequence[str],
    out_paths: Mapping[str, PathLike],
    band_nodata: float,
    block_size: int = 512,
    finalize: Finalize | None = None,
    *,
    engine: str = "auto",
    io_threads: int | None = None,
) -> dict[str, Path]:
    """Composite one band of a tile and period with each of ``functions`` ("LCF", "MED", "AVG").

    Rules (issue 3, "Blend"): observations are ranked with ``rank_observations`` (efficacy
    descending, ties to the newer date); the quality is classified with ``quality_rules``
    (rules object or config mapping); a pixel whose band value is ``band_nodata`` is NODATA for
    that observation (spectral nodata propagation); then LCF = ``lcf``, MED = ``median_clear``,
    AVG = ``mean_clear``, in the band's dtype.

    The tile is processed window by window (``block_size``), so memory depends on T and
    ``block_size``, not on the tile size; GDAL's block cache is held to ``GDAL_CACHE_BYTES``
    meanwhile. Windows are composited by up to ``io_threads`` workers at once, each with its
    own handles on the files (``_run_windows``).
    ``engine="numba"`` runs the compiled kernels of ``composite_kernels`` and reads, per
    window, only the band files a rule needs (``_NumbaBandWindows``); ``engine="numpy"`` reads
    everything and runs the pure numpy functions; both give identical pixels, and ``"auto"``
    takes numba when it imports (numpy for 64-bit integer bands). ``io_threads`` defaults to
    the CPU count, at most ``DEFAULT_IO_THREADS``; 1 runs everything in the calling thread.

    Each output is a tiled 512 x 512 GeoTIFF with the first merge's grid and dtype and
    ``band_nodata``, DEFLATE-compressed and moved into place under its final name; with
    ``finalize`` it is an uncompressed temporary file handed to ``finalize(tmp_tiff,
    final_path)`` (e.g. a COG conversion; several outputs are finalized at once, in threads)
    and removed afterwards.

    Returns:
        ``{function: output path}``.

    Raises:
        InvalidRaster: naming the file, if an input cannot be opened or its shape, CRS,
            transform or dtype differs from the first merge; or if ``band_nodata`` does not fit.
        InvalidCubeConfig: on an unknown function or a function without an output path.
        ValueError: if the inputs do not have one entry per observation, or on an unknown
            ``engine`` or a bad ``io_threads``.
    """
    _check_observations([merge_paths, quality_paths], ["merge_paths", "quality_paths"], dates, efficacies)
    for function in functions:
        if function not in FUNCTIONS:
            raise InvalidCubeConfig(f"compositing function {function!r} is unknown (expected one of {FUNCTIONS})")
        if function not in out_paths:
            raise InvalidCubeConfig(f"compositing function {function!r} has no output path")
    functions = list(dict.fromkeys(functions))
    rules = _as_rules(quality_rules)
    order = rank_observations(efficacies, dates)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), contextlib.ExitStack() as inputs:
        merges = open_aligned(inputs, merge_paths, None)
        qualities = open_aligned(inputs, quality_paths, merges[0])
        dtype = np.dtype(merges[0].dtypes[0])
        check_nodata_fits(band_nodata, dtype, f"{merge_paths[0]}")
        band_nodata = dtype.type(band_nodata).item()  # the nodata as the band stores it, for both engines
        chosen_engine = _resolve_engine(engine, dtype)
        profile = _output_profile(merges[0], dtype, band_nodata, compress=finalize is None)
        windows = list(block_windows(merges[0].width, merges[0].height, block_size))
        lookup = _QualityLookup(rules, np.dtype(qualities[0].dtypes[0])) if chosen_engine == "numba" else None

        def band_worker(band_datasets: Sequence[Any], quality_datasets: Sequence[Any]) -> Callable[[Window], Any]:
            band_reader = _StackReader(band_datasets, dtype)
            quality_reader = _StackReader(quality_datasets, np.dtype(qualities[0].dtypes[0]))
            if lookup is not None:
                return _NumbaBandWindows(band_reader, quality_reader, lookup, order, band_nodata, functions)

            def composite(window: Window) -> dict[str, np.ndarray]:
                quality = quality_reader.read(window, quality_reader.empty(window))
                values = band_reader.read(window, band_reader.empty(window))
                return _band_window_numpy(values, quality, rules, order, band_nodata, functions)

            return composite

        workers = [band_worker(merges, qualities)] + [
            band_worker(_Reopened(inputs, merges), _Reopened(inputs, qualities))
            for _ in range(min(_window_workers(io_threads), len(windows)) - 1)
        ]
        staged = inputs.enter_context(_staged_outputs({name: out_paths[name] for name in functions}, finalize))
        with contextlib.ExitStack() as outputs:
            writers = open_writers(outputs, staged, {name: profile for name in staged})
            _run_windows(windows, workers, functools.partial(write_window, writers))
    return {name: Path(out_paths[name]) for name in functions}


def blend_quality(
    quality_paths: Sequence[PathLike],
    dates: Sequence[datetime.date],
    efficacies: Sequence[float],
    quality_rules: QualityRules | Mapping[str, Any],
    out_quality_path: PathLike,
    out_provenance_path: PathLike,
    out_clearob_path: PathLike,
    out_totalob_path: PathLike,
    block_size: int = 512,
    finalize: Finalize | None = None,
    *,
    engine: str = "auto",
    io_threads: int | None = None,
) -> dict[str, Path]:
    """Composite the quality band and write PROVENANCE, CLEAROB and TOTALOB for a tile and period.

    Rules (issue 3, "Blend"): observations are ranked with ``rank_observations``; the raw
    quality values follow the LCF rule applied to the quality band's own classes ("quality
    composited by the same rule": ``composite_quality``, nodata = ``quality_rules.quality_nodata``);
    PROVENANCE holds the chosen observation's day of year (int16, nodata -1); CLEAROB and
    TOTALOB count clear / non-NODATA observations (uint8, saturating at 255). Spectral nodata
    is not read here: the merges' quality files have been through ``propagate_spectral_nodata``
    ("before blending, a pixel nodata in any spectral band becomes nodata in the quality band"),
    so PROVENANCE matches the LCF bands.

    Window by window like ``blend_band``, with the same ``engine`` and ``io_threads`` choices
    (both engines give identical pixels; the numba engine needs an integer quality band of at
    most 16 bits, ``"auto"`` takes numpy otherwise) and the same output files (DEFLATE
    GeoTIFFs, or uncompressed temporary files handed to ``finalize``).

    Returns:
        ``{"quality": ..., "provenance": ..., "clearob": ..., "totalob": ...}`` output paths.

    Raises:
        InvalidRaster: naming the file, if an input cannot be opened or differs in grid or dtype
            from the first, or if the quality nodata does not fit the quality dtype.
        ValueError: if the inputs do not have one entry per observation, on an unknown
            ``engine`` or a bad ``io_threads``, or if ``engine="numba"`` cannot handle the
            quality dtype.
    """
    _check_observations([quality_paths], ["quality_paths"], dates, efficacies)
    rules = _as_rules(quality_rules)
    order = rank_observations(efficacies, dates)
    days = [date.timetuple().tm_yday for date in dates]
    outputs_paths = {
        "quality": Path(out_quality_path),
        "provenance": Path(out_provenance_path),
        "clearob": Path(out_clearob_path),
        "totalob": Path(out_totalob_path),
    }
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), contextlib.ExitStack() as inputs:
        qualities = open_aligned(inputs, quality_paths, None)
        quality_dtype = np.dtype(qualities[0].dtypes[0])
        check_nodata_fits(rules.quality_nodata, quality_dtype, f"{quality_paths[0]}")
        chosen_engine = _resolve_engine(engine, None)
        if chosen_engine == "numba" and not (quality_dtype.kind in "iu" and quality_dtype.itemsize <= 2):
            if engine == "numba":
                raise ValueError(f"engine 'numba' needs an integer quality band of at most 16 bits, not {quality_dtype}")
            chosen_engine = "numpy"
        compress = finalize is None
        profiles = {
            "quality": _output_profile(qualities[0], quality_dtype, rules.quality_nodata, compress),
            "provenance": _output_profile(qualities[0], np.int16, PROVENANCE_NODATA, compress),
            "clearob": _output_profile(qualities[0], np.uint8, None, compress),
            "totalob": _output_profile(qualities[0], np.uint8, None, compress),
        }
        windows = list(block_windows(qualities[0].width, qualities[0].height, block_size))
        handles = [qualities] + [
            _Reopened(inputs, qualities) for _ in range(min(_window_workers(io_threads), len(windows)) - 1)
        ]
        staged = inputs.enter_context(_staged_outputs(outputs_paths, finalize))
        with contextlib.ExitStack() as outputs:
            writers = open_writers(outputs, staged, profiles)
            if chosen_engine == "numba":
                from cube_assets.raster import composite_kernels as kernels

                lookup = _QualityLookup(rules, quality_dtype)
                order_array = np.asarray(order, dtype=np.int64)
                days_array = np.asarray(days, dtype=np.int16)
                fill = quality_dtype.type(rules.quality_nodata)

                def composite(quality: np.ndarray) -> dict[str, np.ndarray]:
                    shape = quality.shape[1:]
                    results = {
                        "quality": np.empty(shape, dtype=quality_dtype),
                        "provenance": np.empty(shape, dtype=np.int16),
                        "clearob": np.empty(shape, dtype=np.uint8),
                        "totalob": np.empty(shape, dtype=np.uint8),
                    }
                    kernels.quality_window(
                        quality, lookup.table, lookup.offset, order_array, days_array, fill, results["quality"],
                        results["provenance"], results["clearob"], results["totalob"],
                    )
                    return results

            else:

                def composite(quality: np.ndarray) -> dict[str, np.ndarray]:
                    classes = classify_quality(quality, rules)
                    # LCF of the raw quality values is composite_quality() of its own choice.
                    quality_composite, chosen = lcf(quality, classes, order, rules.quality_nodata)
                    return {
                        "quality": quality_composite,
                        "provenance": provenance(chosen, days),
                        "clearob": clear_observation_count(classes),
                        "totalob": total_observation_count(classes),
                    }

            def quality_worker(datasets: Sequence[Any]) -> Callable[[Window], dict[str, np.ndarray]]:
                reader = _StackReader(datasets, quality_dtype)
                return lambda window: composite(reader.read(window, reader.empty(window)))

            workers = [quality_worker(datasets) for datasets in handles]
            _run_windows(windows, workers, functools.partial(write_window, writers))
    return outputs_paths


__all__ = [
    "DEFAULT_IO_THREADS",
    "ENGINES",
    "FUNCTIONS",
    "GDAL_CACHE_BYTES",
    "PROVENANCE_NODATA",
    "blend_band",
    "blend_quality",
    "clear_observation_count",
    "composite_quality",
    "lcf",
    "mean_clear",
    "median_clear",
    "provenance",
    "rank_observations",
    "total_observation_count",
]
