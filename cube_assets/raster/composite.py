"""The window engine of the composites: blend a tile and period's merges window by window.

``blend_band`` composites one band with the rules it names ("LCF", "MED", "AVG", "P25", ...), taken
by name from ``composite_rules``; ``blend_cube`` composites every band at once with a rule over
all bands (MAXNDVI, BAP, GMED of ``composite_cube_rules``); ``blend_quality`` writes the quality
outputs (quality, PROVENANCE, CLEAROB, TOTALOB). Both go through the same phases: check the inputs,
open the aligned stack of merges (``windowed_io.open_aligned``), choose the rules and the engine,
run the windows in parallel workers (``_run_windows``) and finalize the staged outputs
(``windowed_io.staged_outputs``). Peak memory depends on ``block_size`` and T, not on the tile
size; the outputs are GeoTIFFs, or are handed to a ``finalize`` such as a COG conversion.

By default the workers run the compiled kernels of ``composite_kernels`` (numba), which give the
same pixels as the numpy rules, decode the input files in parallel threads and skip reading
band files no rule needs in a window.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cube_assets.errors import InvalidCubeConfig
from cube_assets.raster.composite_cube_rules import CubeRule, CubeWindow, OutputSpec, cloud_distance
from cube_assets.raster.composite_rules import (
    DATASOURCE_OUTPUTS,
    FUNCTIONS,
    PROVENANCE_NODATA,
    QUALITY_OUTPUTS,
    CompositeRule,
    KernelWindow,
    composite_quality_kernel,
    composite_quality_window,
    composite_rule,
    is_band_function,
    rank_observations,
)
from cube_assets.raster.datasource import DATASOURCE, DATASOURCE_NODATA, source_bits
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
    gdal_cache_limit,
    open_aligned,
    open_writers,
    output_profile,
    staged_outputs,
    write_window,
)

ENGINES = ("auto", "numba", "numpy")
"""``engine`` choices of ``blend_band`` / ``blend_quality``."""

DEFAULT_IO_THREADS = 4
"""At most this many windows (each decoding one file at a time) are composited at once by
default (fewer on fewer CPUs)."""

GDAL_CACHE_BYTES = 8 * 1024 * 1024
"""GDAL block cache while blending (and finalizing): every block of a (512-tiled) merge is read
once, so a small cache suffices, and GDAL's default (5 % of RAM) would otherwise fill with decoded
blocks of a large tile. A larger cache only costs fresh pages: at 64 MB the peak RSS of a 2048²
band was about 100 MiB higher for the same seconds (``benchmarks/blend.py``); striped inputs
would re-read their strips at either size. Given in bytes: rasterio applies it with
``GDALSetCacheMax64`` (bytes) once GDAL's cache exists, while GDAL itself would read a small
number such as 64 as megabytes."""

WindowWorker = Callable[[Window], Mapping[str, np.ndarray]]
"""Composites one window: ``{output name: (H, W) array}``."""


# --------------------------------------------------------------------------- the public drivers


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

    Rules: observations are ranked with ``rank_observations`` (efficacy descending, ties to the
    newer date); the quality is classified with ``quality_rules`` (rules object or config
    mapping); a pixel whose band value is ``band_nodata`` is NODATA for that observation
    (spectral nodata propagation); then each function is its rule of ``COMPOSITE_FUNCTIONS``
    (LCF = ``lcf``, MED = ``median_clear``, AVG = ``mean_clear``), in the band's dtype.

    The tile is processed window by window (``block_size``), so memory depends on T and
    ``block_size``, not on the tile size; GDAL's block cache is held to ``GDAL_CACHE_BYTES``
    meanwhile. Windows are composited by up to ``io_threads`` workers at once, each with its
    own handles on the files (``_run_windows``).
    ``engine="numba"`` runs the compiled twins of the rules and reads, per window, only the
    band files a rule needs (``_CompiledBandWindows``); ``engine="numpy"`` reads everything and
    runs the numpy rules; both give identical pixels, and ``"auto"`` takes numba when it imports
    (numpy for 64-bit integer bands). ``io_threads`` defaults to the CPU count, at most
    ``DEFAULT_IO_THREADS``; 1 runs everything in the calling thread.

    Each output is a tiled 512 x 512 GeoTIFF with the first merge's grid and dtype and
    ``band_nodata``, compressed with the default codec and moved into place under its final name; with
    ``finalize`` it is an uncompressed temporary file handed to ``finalize(tmp_tiff,
    final_path)`` (e.g. a COG conversion; several outputs are finalized at once, in threads)
    and removed afterwards. If one ``finalize`` fails, the outputs already finalized are removed.

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
    rules = _choose_rules(functions, out_paths)
    quality_rules = _as_rules(quality_rules)
    order = rank_observations(efficacies, dates)
    with gdal_cache_limit(GDAL_CACHE_BYTES), contextlib.ExitStack() as inputs:
        stack = _BandStack.open(inputs, merge_paths, quality_paths, band_nodata)
        chosen_engine = _resolve_engine(engine, stack.dtype)
        windows = list(block_windows(stack.merges[0].width, stack.merges[0].height, block_size))
        workers = _band_workers(
            inputs, stack, _BandJob(quality_rules, order, rules), chosen_engine, _worker_count(io_threads, windows)
        )
        profile = _output_profile(stack.merges[0], stack.dtype, stack.nodata, compress=finalize is None)
        destinations = {rule.name: out_paths[rule.name] for rule in rules}
        _composite_windows(inputs, windows, workers, destinations, dict.fromkeys(destinations, profile), finalize)
    return {rule.name: Path(out_paths[rule.name]) for rule in rules}


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
    sources: Sequence[int] | None = None,
    datasource_paths: Mapping[str, PathLike] | None = None,
) -> dict[str, Path]:
    """Composite the quality band and write PROVENANCE, CLEAROB and TOTALOB for a tile and period.

    Rules: observations are ranked with ``rank_observations``; the raw quality values follow
    the LCF rule applied to the quality band's own classes ("quality composited by the same
    rule": ``composite_quality``, nodata = ``quality_rules.quality_nodata``); PROVENANCE holds
    the chosen observation's day of year (int16, nodata -1); CLEAROB and TOTALOB count clear /
    non-NODATA observations (uint8, saturating at 255). Spectral nodata is not read here: the
    merges' quality files have been through ``propagate_spectral_nodata`` ("before blending, a
    pixel nodata in any spectral band becomes nodata in the quality band"), so PROVENANCE
    matches the LCF bands.

    Window by window like ``blend_band``, with the same ``engine`` and ``io_threads`` choices
    (both engines give identical pixels; the numba engine needs an integer quality band of at
    most 16 bits, ``"auto"`` takes numpy otherwise) and the same output files (compressed
    GeoTIFFs, or uncompressed temporary files handed to ``finalize``).

    With ``sources`` (each observation's source index in the cube's ``sources``, 0..7) and
    ``datasource_paths`` (``{"datasource_chosen": ..., "datasource_clear": ...}``) it also writes
    the two DATASOURCE bands (uint8, nodata 0, bit ``1 << i`` for source i): the source of the
    observation LCF chose, and the OR of the sources of the CLEAR observations (what MED, AVG,
    the metrics and Pnn composite).

    Returns:
        ``{"quality": ..., "provenance": ..., "clearob": ..., "totalob": ...}`` output paths (and
        the DATASOURCE ones when asked).

    Raises:
        InvalidRaster: naming the file, if an input cannot be opened or differs in grid or dtype
            from the first, or if the quality nodata does not fit the quality dtype.
        ValueError: if the inputs do not have one entry per observation, on an unknown
            ``engine`` or a bad ``io_threads``, if ``engine="numba"`` cannot handle the
            quality dtype, or if ``sources`` and ``datasource_paths`` are not given together
            (with every DATASOURCE output) or a source index is outside 0..7.
    """
    _check_observations([quality_paths], ["quality_paths"], dates, efficacies)
    rules = _as_rules(quality_rules)
    order = rank_observations(efficacies, dates)
    days = [date.timetuple().tm_yday for date in dates]
    destinations = dict(
        zip(
            QUALITY_OUTPUTS,
            map(Path, (out_quality_path, out_provenance_path, out_clearob_path, out_totalob_path)),
            strict=True,
        )
    )
    bits = _datasource_bits(sources, bool(datasource_paths), len(dates))
    if bits is not None:
        missing = [name for name in DATASOURCE_OUTPUTS if name not in (datasource_paths or {})]
        if missing:
            raise ValueError(f"blend_quality: datasource_paths lack {missing}")
        destinations |= {name: Path((datasource_paths or {})[name]) for name in DATASOURCE_OUTPUTS}
    with gdal_cache_limit(GDAL_CACHE_BYTES), contextlib.ExitStack() as inputs:
        qualities = open_aligned(inputs, quality_paths, None)
        quality_dtype = np.dtype(qualities[0].dtypes[0])
        check_nodata_fits(rules.quality_nodata, quality_dtype, f"{quality_paths[0]}")
        chosen_engine = _resolve_quality_engine(engine, quality_dtype)
        profiles = _quality_profiles(qualities[0], quality_dtype, rules.quality_nodata, compress=finalize is None)
        if bits is not None:
            datasource = _output_profile(qualities[0], np.uint8, DATASOURCE_NODATA, compress=finalize is None)
            profiles |= dict.fromkeys(DATASOURCE_OUTPUTS, datasource)
        windows = list(block_windows(qualities[0].width, qualities[0].height, block_size))
        job = _QualityJob(rules, order, days, bits)
        workers = _quality_workers(inputs, qualities, job, chosen_engine, _worker_count(io_threads, windows))
        _composite_windows(inputs, windows, workers, destinations, profiles, finalize)
    return destinations


def blend_cube(
    merge_paths: Mapping[str, Sequence[PathLike]],
    quality_paths: Sequence[PathLike],
    dates: Sequence[datetime.date],
    efficacies: Sequence[float],
    quality_rules: QualityRules | Mapping[str, Any],
    rule: CubeRule,
    out_paths: Mapping[str, PathLike],
    band_nodata: float,
    block_size: int = 512,
    finalize: Finalize | None = None,
    *,
    engine: str = "auto",
    io_threads: int | None = None,
    view_zenith: Sequence[float | None] | None = None,
    sources: Sequence[int] | None = None,
) -> dict[str, Path]:
    """Composite every band of a tile and period at once with a cube ``rule`` (MAXNDVI, BAP, GMED).

    Rules: observations are ranked with ``rank_observations``; the quality is classified with
    ``quality_rules``; a pixel nodata in any band is NODATA for that observation in every band;
    then ``rule`` (``composite_cube_rules``) composites the ``(B, T, H, W)`` stack of each window.
    A rule with a ``halo`` (BAP) gets, per observation, the distance to the nearest cloud or
    shadow pixel computed on the window and ``halo`` pixels around it, so its pixels do not
    depend on the windows. ``view_zenith`` gives each observation's view zenith in degrees
    (None where unknown). With ``sources`` (each observation's source index, 0..7) the rule also
    writes DATASOURCE (uint8, nodata 0): the chosen observation's source bit for MAXNDVI and BAP,
    the OR of the CLEAR observations' bits for GMED (``raster.datasource``).

    Window by window like ``blend_band``, with the same ``engine`` and ``io_threads`` choices
    (both engines give identical pixels) and the same output files. In a window, the band files
    of observations without a CLEAR pixel there are not read (no cube rule uses them).

    Returns:
        ``{band or information output: output path}`` (``out_paths`` must name every band of
        ``merge_paths``, every output of ``rule.outputs`` and, with ``sources``, DATASOURCE).

    Raises:
        InvalidRaster: naming the file, if an input cannot be opened or differs in grid or dtype
            from the first merge, or if ``band_nodata`` does not fit.
        InvalidCubeConfig: if an output has no path, or there are no bands.
        ValueError: if the inputs do not have one entry per observation, or on an unknown
            ``engine`` or a bad ``io_threads``.
    """
    if not merge_paths:
        raise InvalidCubeConfig(f"{rule.name}: no bands to composite")
    band_names = tuple(merge_paths)
    _check_observations(
        [*merge_paths.values(), quality_paths, view_zenith if view_zenith is not None else dates],
        [*band_names, "quality_paths", "view_zenith"],
        dates,
        efficacies,
    )
    bits = _datasource_bits(sources, sources is not None, len(dates))
    information = {**rule.outputs, **({DATASOURCE: OutputSpec("uint8", DATASOURCE_NODATA)} if bits is not None else {})}
    missing = [name for name in (*band_names, *information) if name not in out_paths]
    if missing:
        raise InvalidCubeConfig(f"{rule.name}: outputs {missing} have no output path")
    zenith = (
        np.array([np.nan if v is None else float(v) for v in view_zenith], dtype=np.float64) if view_zenith else None
    )
    job = _CubeJob(
        rule=rule,
        quality_rules=_as_rules(quality_rules),
        order=np.asarray(rank_observations(efficacies, dates), dtype=np.int64),
        days=np.asarray([d.timetuple().tm_yday for d in dates], dtype=np.int16),
        years=np.asarray([d.year for d in dates], dtype=np.int64),
        view_zenith=zenith,
        source_bits=bits,
    )
    with gdal_cache_limit(GDAL_CACHE_BYTES), contextlib.ExitStack() as inputs:
        stacks = {name: _BandStack.open(inputs, merge_paths[name], quality_paths, band_nodata) for name in band_names}
        first = stacks[band_names[0]]
        for stack in stacks.values():
            open_aligned(inputs, [first.merges[0].name, stack.merges[0].name], None)  # one grid and dtype for all bands
        chosen_engine = _resolve_engine(engine, first.dtype)
        windows = list(block_windows(first.merges[0].width, first.merges[0].height, block_size))
        count = _worker_count(io_threads, windows)
        band_handles = {name: list(_handles_per_worker(inputs, stacks[name].merges, count)) for name in band_names}
        quality_handles = list(_handles_per_worker(inputs, first.qualities, count))
        workers: list[WindowWorker] = [
            _CubeWindows(
                {name: _StackReader(band_handles[name][w], first.dtype) for name in band_names},
                _StackReader(quality_handles[w], first.quality_dtype),
                job,
                first.nodata,
                chosen_engine,
            )
            for w in range(count)
        ]
        profiles = {
            name: _output_profile(first.merges[0], first.dtype, first.nodata, compress=finalize is None)
            for name in band_names
        }
        for name, spec in information.items():
            profiles[name] = _output_profile(
                first.merges[0], np.dtype(spec.dtype), spec.nodata, compress=finalize is None
            )
        destinations = {name: out_paths[name] for name in profiles}
        _composite_windows(inputs, windows, workers, destinations, profiles, finalize)
    return {name: Path(path) for name, path in destinations.items()}


def identity_cube(
    merge_paths: Sequence[PathLike],
    dates: Sequence[datetime.date],
    out_path: PathLike,
    nodata: float | None,
    block_size: int = 512,
    finalize: Finalize | None = None,
) -> Path:
    """IDT of one band: its merges, unchanged, as one GeoTIFF with a band per date (a cube of dates).

    Bands are in date order (equal dates keep their input order), each described by its ISO
    date; pixels are copied window by window, so memory does not grow with the tile. The output
    is a DEFLATE GeoTIFF moved into place, or an uncompressed temporary file handed to
    ``finalize(tmp_tiff, out_path)``.

    Returns:
        ``out_path``.

    Raises:
        InvalidRaster: naming the file, if a merge cannot be opened or differs in grid or dtype.
        ValueError: if there is not one date per merge, or none.
    """
    _check_observations([merge_paths], ["merge_paths"], dates, [0.0] * len(dates))
    order = sorted(range(len(dates)), key=lambda i: dates[i])
    with gdal_cache_limit(GDAL_CACHE_BYTES), contextlib.ExitStack() as inputs:
        merges = open_aligned(inputs, merge_paths, None)
        dtype = np.dtype(merges[0].dtypes[0])
        profile = {**_output_profile(merges[0], dtype, nodata, compress=finalize is None), "count": len(order)}
        staged = inputs.enter_context(staged_outputs({"IDT": out_path}, finalize))
        with rasterio.open(staged["IDT"], "w", **profile) as out:
            for band, t in enumerate(order, start=1):
                out.set_band_description(band, dates[t].isoformat())
            for window in block_windows(merges[0].width, merges[0].height, block_size):
                for band, t in enumerate(order, start=1):
                    out.write(merges[t].read(1, window=window), band, window=window)
    return Path(out_path)


def _choose_rules(functions: Sequence[str], out_paths: Mapping[str, PathLike]) -> list[CompositeRule]:
    """The rules of ``functions`` from ``COMPOSITE_FUNCTIONS``, once each, in the order given.

    Returns:
        The ``CompositeRule`` of each distinct function name.

    Raises:
        InvalidCubeConfig: on an unknown function or a function without an output path.
    """
    for function in functions:
        if not is_band_function(function):
            raise InvalidCubeConfig(
                f"compositing function {function!r} is unknown (expected one of {FUNCTIONS} or P0..P100)"
            )
        if function not in out_paths:
            raise InvalidCubeConfig(f"compositing function {function!r} has no output path")
    return [composite_rule(function) for function in dict.fromkeys(functions)]


# --------------------------------------------------------------------------- input checks


def _check_observations(
    paths: Sequence[Sequence[Any]], names: Sequence[str], dates: Sequence[Any], efficacies: Sequence[float]
) -> None:
    """Raise ``ValueError`` unless every sequence has one entry per observation, and there is one."""
    lengths = {name: len(seq) for name, seq in zip(names, paths, strict=True)}
    lengths.update(dates=len(dates), efficacies=len(efficacies))
    if len(set(lengths.values())) != 1:
        raise ValueError(f"one entry per observation is required, got {lengths}")
    if not dates:
        raise ValueError("at least one observation is required")


def _datasource_bits(sources: Sequence[int] | None, asked: bool, count: int) -> np.ndarray | None:
    """Each observation's DATASOURCE bit, or None when no DATASOURCE is asked for."""
    if (sources is None) != (not asked):
        raise ValueError("DATASOURCE: give both the observations' sources and the DATASOURCE output path(s)")
    if sources is None:
        return None
    if len(sources) != count:
        raise ValueError(f"DATASOURCE: {len(sources)} sources for {count} observations")
    return source_bits(sources)


def _as_rules(quality_rules: QualityRules | Mapping[str, Any]) -> QualityRules:
    """The ``QualityRules`` of a rules object or of its configuration mapping."""
    return rules_from_config(quality_rules) if isinstance(quality_rules, Mapping) else quality_rules


@dataclass(frozen=True)
class _BandStack:
    """The open, aligned merges of one band and their quality files.

    Attributes:
        merges: the band's datasets, one per observation.
        qualities: the quality datasets, on the merges' grid.
        dtype: the band's dtype.
        quality_dtype: the quality band's dtype.
        nodata: the band's nodata as the band stores it (the same for both engines).
    """

    merges: list[DatasetReader]
    qualities: list[DatasetReader]
    dtype: np.dtype
    quality_dtype: np.dtype
    nodata: float | int

    @classmethod
    def open(
        cls,
        inputs: contextlib.ExitStack,
        merge_paths: Sequence[PathLike],
        quality_paths: Sequence[PathLike],
        band_nodata: float,
    ) -> _BandStack:
        """Open the merges and quality files for the life of ``inputs``; check grids, dtypes and nodata."""
        merges = open_aligned(inputs, merge_paths, None)
        qualities = open_aligned(inputs, quality_paths, merges[0])
        dtype = np.dtype(merges[0].dtypes[0])
        check_nodata_fits(band_nodata, dtype, f"{merge_paths[0]}")
        return cls(merges, qualities, dtype, np.dtype(qualities[0].dtypes[0]), dtype.type(band_nodata).item())


def _output_profile(reference: Any, dtype: Any, nodata: float | None, compress: bool) -> dict[str, Any]:
    """A tiled single-band GeoTIFF profile on ``reference``'s grid; compressed unless it is only staging."""
    return output_profile(
        dtype,
        nodata,
        crs=reference.crs,
        transform=reference.transform,
        shape=(reference.height, reference.width),
        compress=compress,
        predictor=False,
    )


def _quality_profiles(reference: Any, quality_dtype: np.dtype, quality_nodata: int, compress: bool) -> dict[str, Any]:
    """The profiles of ``blend_quality``'s outputs, by name."""
    return {
        "quality": _output_profile(reference, quality_dtype, quality_nodata, compress),
        "provenance": _output_profile(reference, np.int16, PROVENANCE_NODATA, compress),
        "clearob": _output_profile(reference, np.uint8, None, compress),
        "totalob": _output_profile(reference, np.uint8, None, compress),
    }


# --------------------------------------------------------------------------- engines


def _numba_available() -> bool:
    """Whether the compiled kernels (numba) import."""
    try:
        from cube_assets.raster import composite_kernels  # noqa: F401 - imported only to learn whether numba compiles them
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


def _resolve_quality_engine(engine: str, quality_dtype: np.dtype) -> str:
    """``_resolve_engine`` for the quality outputs: numba needs an integer quality band of at most 16 bits."""
    chosen = _resolve_engine(engine, None)
    if chosen == "numba" and not (quality_dtype.kind in "iu" and quality_dtype.itemsize <= 2):
        if engine == "numba":
            raise ValueError(f"engine 'numba' needs an integer quality band of at most 16 bits, not {quality_dtype}")
        return "numpy"
    return chosen


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

    def classify(self, quality: np.ndarray) -> np.ndarray:
        """``classify_quality(quality)``, looked up in the table for tabulated dtypes."""
        if not self.direct:
            return classify_quality(quality, self.rules)
        index = quality if self.offset == 0 else quality.astype(np.intp) + self.offset
        classes: np.ndarray = self.table[index]
        return classes

    def prepare(self, quality: np.ndarray) -> np.ndarray:
        """The array the kernels read: the raw quality, or its classes for non-tabulated dtypes."""
        return quality if self.direct else classify_quality(quality, self.rules)


# --------------------------------------------------------------------------- window readers


class _StackReader:
    """Read one window of several single-band datasets into a ``(T, H, W)`` stack.

    A reader belongs to one window worker (GDAL handles are never shared between threads).
    """

    def __init__(self, datasets: Sequence[Any], dtype: np.dtype | None = None) -> None:
        self.datasets = datasets
        self.dtype = dtype if dtype is not None else np.dtype(datasets[0].dtypes[0])

    def empty(self, window: Window) -> np.ndarray:
        """An uninitialised ``(T, H, W)`` stack for ``window``."""
        return np.empty((len(self.datasets), int(window.height), int(window.width)), dtype=self.dtype)

    def read(self, window: Window, stack: np.ndarray, which: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Read ``window`` of the observations ``which`` (default: all) into ``stack``; return it."""
        for t in range(len(self.datasets)) if which is None else which:
            self.datasets[t].read(1, window=window, out=stack[t])
        return stack


class _Reopened(Sequence[Any]):
    """Other handles on ``datasets`` (already checked by ``open_aligned``), for another worker.

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
        """Close the handles this worker opened."""
        for dataset in self._opened:
            if dataset is not None:
                dataset.close()


def _worker_count(io_threads: int | None, windows: Sequence[Window]) -> int:
    """Return how many window workers run: ``io_threads``, at most one per window.

    ``io_threads`` defaults to the CPUs, at most ``DEFAULT_IO_THREADS``.
    """
    threads = io_threads if io_threads is not None else min(DEFAULT_IO_THREADS, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"io_threads must be an integer of at least 1, got {threads!r}")
    return max(1, min(threads, len(windows)))


def _handles_per_worker(
    inputs: contextlib.ExitStack, datasets: Sequence[DatasetReader], workers: int
) -> Iterator[Sequence[Any]]:
    """``datasets`` for the first worker, then handles of their own (``_Reopened``) for each other one."""
    yield datasets
    for _ in range(workers - 1):
        yield _Reopened(inputs, datasets)


# --------------------------------------------------------------------------- band workers


@dataclass(frozen=True)
class _BandJob:
    """What every worker of ``blend_band`` composites: classification, ranking and the chosen rules."""

    quality_rules: QualityRules
    order: Sequence[int]
    rules: Sequence[CompositeRule]


def _band_workers(
    inputs: contextlib.ExitStack, stack: _BandStack, job: _BandJob, engine: str, count: int
) -> list[WindowWorker]:
    """One window worker per ``count``, each with its own handles, running ``engine``'s rules."""
    lookup = _QualityLookup(job.quality_rules, stack.quality_dtype) if engine == "numba" else None
    workers: list[WindowWorker] = []
    handles = zip(
        _handles_per_worker(inputs, stack.merges, count),
        _handles_per_worker(inputs, stack.qualities, count),
        strict=True,
    )
    for band_datasets, quality_datasets in handles:
        band_reader = _StackReader(band_datasets, stack.dtype)
        quality_reader = _StackReader(quality_datasets, stack.quality_dtype)
        if lookup is not None:
            workers.append(_CompiledBandWindows(band_reader, quality_reader, lookup, job, stack.nodata))
        else:
            workers.append(_NumpyBandWindows(band_reader, quality_reader, job, stack.nodata))
    return workers


class _NumpyBandWindows:
    """The numpy path of ``blend_band``: read every observation of a window, run the numpy rules."""

    def __init__(self, band_reader: _StackReader, quality_reader: _StackReader, job: _BandJob, nodata: float) -> None:
        self.band_reader, self.quality_reader, self.job, self.nodata = band_reader, quality_reader, job, nodata

    def __call__(self, window: Window) -> dict[str, np.ndarray]:
        """Every rule's composite of ``window``."""
        quality = self.quality_reader.read(window, self.quality_reader.empty(window))
        values = self.band_reader.read(window, self.band_reader.empty(window))
        classes = classify_quality(quality, self.job.quality_rules)
        classes = propagate_spectral_nodata(classes, [values], self.nodata, QualityClass.NODATA)
        return {rule.name: rule.numpy(values, classes, self.job.order, self.nodata) for rule in self.job.rules}


class _CompiledBandWindows:
    """The compiled path of ``blend_band``: read what a window needs, then composite it.

    ``read`` reads the window's quality files, then only the band files some rule needs: rules
    that read ``"clear"`` (MED, AVG) need the observations with at least one CLEAR pixel in the
    window; rules that read ``"chosen"`` (LCF) need the observations they choose, found by running
    them with unread observations assumed valid, reading the chosen ones and running them again
    until every chosen observation has been read (a read observation whose band value is nodata
    is then skipped, as the rules say) -- so they are finished while reading. ``composite`` then
    runs the ``"clear"`` rules. One instance per window worker.
    """

    def __init__(
        self,
        band_reader: _StackReader,
        quality_reader: _StackReader,
        lookup: _QualityLookup,
        job: _BandJob,
        nodata: float,
    ) -> None:
        from cube_assets.raster import composite_kernels

        self.kernels = composite_kernels
        self.band_reader, self.quality_reader, self.lookup = band_reader, quality_reader, lookup
        self.chosen_rules = [rule for rule in job.rules if rule.reads == "chosen"]
        self.clear_rules = [rule for rule in job.rules if rule.reads == "clear"]
        dtype = band_reader.dtype
        fill = dtype.type(nodata)  # compared in the band's dtype, as numpy compares
        sentinel = dtype.type(np.iinfo(dtype).max) if dtype.kind in "iu" else dtype.type(np.nan)
        self.constants = {
            "table": lookup.table,
            "offset": lookup.offset,
            "order": np.asarray(job.order, dtype=np.int64),
            "fill": fill,
            "nodata_is_nan": bool(np.isnan(fill)),
            "sentinel": sentinel,
            "network": composite_kernels.sorting_network(len(job.order)),
        }

    def __call__(self, window: Window) -> dict[str, np.ndarray]:
        """Every rule's composite of ``window``."""
        return self.composite(*self.read(window))

    def read(self, window: Window) -> tuple[KernelWindow, dict[str, np.ndarray]]:
        """Read the quality and the band files the rules need; return them and the ``"chosen"`` rules' results."""
        quality = self.lookup.prepare(self.quality_reader.read(window, self.quality_reader.empty(window)))
        count = quality.shape[0]
        stack = KernelWindow(
            values=self.band_reader.empty(window),
            quality=quality,
            loaded=np.zeros(count, dtype=np.bool_),
            **self.constants,
        )
        needed = np.zeros(count, dtype=np.bool_)
        if self.clear_rules:
            self.kernels.observations_with_clear(quality, self.lookup.table, self.lookup.offset, needed)
        if not self.chosen_rules:
            self._load(window, stack, np.flatnonzero(needed))
            return stack, {}
        while True:
            wanted = np.zeros(count, dtype=np.bool_)
            results = {rule.name: rule.kernel(stack, wanted) for rule in self.chosen_rules}
            missing = np.flatnonzero((wanted | needed) & ~stack.loaded)
            if missing.size == 0:
                return stack, results
            self._load(window, stack, missing)

    def composite(self, stack: KernelWindow, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the ``"clear"`` rules' results of a window ``read`` has loaded; return all results."""
        unused = np.zeros(stack.loaded.shape, dtype=np.bool_)
        for rule in self.clear_rules:
            results[rule.name] = rule.kernel(stack, unused)
        return results

    def _load(self, window: Window, stack: KernelWindow, which: np.ndarray) -> None:
        """Read the band values of observations ``which`` into ``stack``."""
        self.band_reader.read(window, stack.values, which)
        stack.loaded[which] = True


# --------------------------------------------------------------------------- cube workers


@dataclass(frozen=True)
class _CubeJob:
    """What every worker of ``blend_cube`` composites."""

    rule: CubeRule
    quality_rules: QualityRules
    order: np.ndarray
    days: np.ndarray
    years: np.ndarray
    view_zenith: np.ndarray | None
    source_bits: np.ndarray | None = None


class _CubeWindows:
    """A worker of ``blend_cube``: read a window of every band (with the quality's halo), run the rule."""

    def __init__(
        self,
        band_readers: Mapping[str, _StackReader],
        quality_reader: _StackReader,
        job: _CubeJob,
        nodata: float,
        engine: str,
    ) -> None:
        self.band_readers, self.quality_reader, self.job, self.nodata = band_readers, quality_reader, job, nodata
        self.engine = engine
        compiled = engine == "numba"
        self.lookup = _QualityLookup(job.quality_rules, quality_reader.dtype) if compiled else None

    def __call__(self, window: Window) -> dict[str, np.ndarray]:
        """The rule's outputs of ``window``."""
        classes, distance = self._classes(window)
        clear_somewhere = (classes == QualityClass.CLEAR).reshape(classes.shape[0], -1).any(axis=1)
        which = np.flatnonzero(clear_somewhere)
        values = np.empty((len(self.band_readers), *classes.shape), dtype=next(iter(self.band_readers.values())).dtype)
        for b, reader in enumerate(self.band_readers.values()):
            values[b] = self.nodata
            reader.read(window, values[b], which)
        classes = propagate_spectral_nodata(classes, list(values), self.nodata, QualityClass.NODATA)
        cube = CubeWindow(
            values=values,
            classes=classes,
            band_names=tuple(self.band_readers),
            order=self.job.order,
            days=self.job.days,
            years=self.job.years,
            nodata=self.nodata,
            cloud_distance=distance,
            view_zenith=self.job.view_zenith,
            source_bits=self.job.source_bits,
        )
        rule = self.job.rule
        return rule.kernel(cube) if self.engine == "numba" else rule.numpy(cube)

    def _classes(self, window: Window) -> tuple[np.ndarray, np.ndarray | None]:
        """The window's quality classes and, for a rule with a halo, the capped distance to cloud."""
        halo = self.job.rule.halo
        if not halo:
            quality = self.quality_reader.read(window, self.quality_reader.empty(window))
            return self._classify(quality), None
        dataset = self.quality_reader.datasets[0]
        col0, row0 = max(0, int(window.col_off) - halo), max(0, int(window.row_off) - halo)
        col1 = min(dataset.width, int(window.col_off + window.width) + halo)
        row1 = min(dataset.height, int(window.row_off + window.height) + halo)
        around = Window(col0, row0, col1 - col0, row1 - row0)
        classes = self._classify(self.quality_reader.read(around, self.quality_reader.empty(around)))
        rows = slice(int(window.row_off) - row0, int(window.row_off) - row0 + int(window.height))
        cols = slice(int(window.col_off) - col0, int(window.col_off) - col0 + int(window.width))
        distance = cloud_distance(classes, halo, rows, cols, compiled=self.lookup is not None)
        return np.ascontiguousarray(classes[:, rows, cols]), distance

    def _classify(self, quality: np.ndarray) -> np.ndarray:
        """The quality classes: ``classify_quality``, through its lookup table in the compiled engine."""
        if self.lookup is None:
            return classify_quality(quality, self.job.quality_rules)
        return self.lookup.classify(quality)


# --------------------------------------------------------------------------- quality workers


@dataclass(frozen=True)
class _QualityJob:
    """What every worker of ``blend_quality`` composites: classification, ranking and days of year."""

    quality_rules: QualityRules
    order: Sequence[int]
    days: Sequence[int]
    bits: np.ndarray | None = None


class _NumpyQualityWindows:
    """The numpy path of ``blend_quality``: ``composite_quality_window`` of each window."""

    def __init__(self, reader: _StackReader, job: _QualityJob) -> None:
        self.reader, self.job = reader, job

    def __call__(self, window: Window) -> dict[str, np.ndarray]:
        """The quality outputs of ``window``."""
        quality = self.reader.read(window, self.reader.empty(window))
        classes = classify_quality(quality, self.job.quality_rules)
        return composite_quality_window(
            quality, classes, self.job.order, self.job.days, self.job.quality_rules.quality_nodata, self.job.bits
        )


class _CompiledQualityWindows:
    """The compiled path of ``blend_quality``: ``composite_quality_kernel`` of each window."""

    def __init__(self, reader: _StackReader, job: _QualityJob, lookup: _QualityLookup) -> None:
        self.reader, self.lookup = reader, lookup
        self.order = np.asarray(job.order, dtype=np.int64)
        self.days = np.asarray(job.days, dtype=np.int16)
        self.fill = reader.dtype.type(job.quality_rules.quality_nodata)
        self.bits = job.bits

    def __call__(self, window: Window) -> dict[str, np.ndarray]:
        """The quality outputs of ``window``."""
        quality = self.reader.read(window, self.reader.empty(window))
        return composite_quality_kernel(
            quality, self.lookup.table, self.lookup.offset, self.order, self.days, self.fill, self.bits
        )


def _quality_workers(
    inputs: contextlib.ExitStack, qualities: Sequence[DatasetReader], job: _QualityJob, engine: str, count: int
) -> list[WindowWorker]:
    """``count`` window workers of ``blend_quality``, each with its own handles, running ``engine``."""
    dtype = np.dtype(qualities[0].dtypes[0])
    readers = [_StackReader(datasets, dtype) for datasets in _handles_per_worker(inputs, qualities, count)]
    if engine == "numba":
        lookup = _QualityLookup(job.quality_rules, dtype)
        return [_CompiledQualityWindows(reader, job, lookup) for reader in readers]
    return [_NumpyQualityWindows(reader, job) for reader in readers]


# --------------------------------------------------------------------------- running the windows


def _composite_windows(
    inputs: contextlib.ExitStack,
    windows: Sequence[Window],
    workers: Sequence[WindowWorker],
    destinations: Mapping[str, PathLike],
    profiles: Mapping[str, Mapping[str, Any]],
    finalize: Finalize | None,
) -> None:
    """Stage the outputs, run every window through the workers into them; they are finalized when ``inputs`` closes."""
    staged = inputs.enter_context(
        staged_outputs(destinations, finalize, finalize_threads=os.cpu_count() or 1, thread_name_prefix="blend-cog")
    )
    with contextlib.ExitStack() as outputs:
        writers = open_writers(outputs, staged, profiles)
        _run_windows(windows, workers, functools.partial(write_window, writers))


def _run_windows(
    windows: Sequence[Window],
    workers: Sequence[WindowWorker],
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
    queue = _WindowQueue(windows, write)
    with ThreadPoolExecutor(max_workers=len(workers), thread_name_prefix="blend-window") as pool:
        futures = [pool.submit(queue.run, worker) for worker in workers]
        wait(futures)
    for future in futures:
        future.result()


class _WindowQueue:
    """The windows not yet taken and the one serialized ``write``, shared by the window workers."""

    def __init__(self, windows: Sequence[Window], write: Callable[[Window, Mapping[str, np.ndarray]], None]) -> None:
        self._pending = iter(windows)
        self._write = write
        self._lock = threading.Lock()
        self._failed = threading.Event()

    def run(self, worker: WindowWorker) -> None:
        """Take windows until none is left or a worker failed; composite and write each."""
        try:
            while not self._failed.is_set():
                with self._lock:
                    window = next(self._pending, None)
                if window is None:
                    return
                results = worker(window)
                with self._lock:
                    self._write(window, results)
        except BaseException:
            self._failed.set()
            raise


__all__ = [
    "DEFAULT_IO_THREADS",
    "ENGINES",
    "GDAL_CACHE_BYTES",
    "blend_band",
    "blend_cube",
    "blend_quality",
    "identity_cube",
]
