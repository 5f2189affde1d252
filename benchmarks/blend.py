"""Compositing speed and memory: this project's blend against numpy.ma references, same process.

Run::

    .venv/bin/python benchmarks/blend.py                 # 2048 x 2048 x 10 dates, best of 3
    .venv/bin/python benchmarks/blend.py --size 10560    # a full BDC tile, one run (minutes)
    .venv/bin/python benchmarks/blend.py --cases science # P25, GMED, MAXNDVI, BAP (``blend_science``)
    .venv/bin/python benchmarks/blend.py --size 10560 --no-reference --functions LCF  # the project alone

It builds a synthetic period (``build_synthetic_period``): 10 dates of one tile, each an int16
band (reflectance x 10000, nodata -9999) and a Sentinel-2 SCL band with cloud blobs, shadows,
scattered saturated / dark / unclassified / snow pixels and a slanted nodata edge, written as
tiled 512 x 512 GeoTIFFs in the codec ``tile_merge`` writes by default (``--merge-codec``; ``--data-dir``
keeps and reuses them). Then, per case, it runs from reading the merges to a written COG:

* ``B04 LCF`` / ``B04 MED`` / ``B04 AVG``: one band, one function (``composite.blend_band``);
* ``SCL quality+PROVENANCE+CLEAROB+TOTALOB``: ``composite.blend_quality``, four outputs;
* ``B04 LCF+MED+AVG (one pass)``: the three functions of a band in one ``blend_band`` call, as
  ``steps/blend.py`` calls it, against the sum of the reference's three per-function runs (the
  cube builder runs one blend per function); its outputs must equal the per-function ones;

for this project and for the references of ``reference_blend.py`` (same rules, numpy.ma, one
block window at a time): ``reference`` is the cube builder's blend loop ported statement by
statement (the reference implementation), ``lean`` the same rules in lean numpy.ma. Every side writes
an uncompressed staging GeoTIFF and hands it to the same COG conversion (``cog_from_file`` with
GDAL's COG driver, as ``steps/blend.py`` does). ``seconds`` and ``reference_s`` run from reading
the merges to the written, validated COGs, the whole of what a blend step does; ``compositing_s`` and
``compositing_ratio`` leave the (identical) COG conversion out. The outputs of every side are
compared pixel for pixel (an ``AssertionError`` stops the run if any differs).

Runs alternate sides and keep each side's fastest run (``--repeat``); the peak RSS is the
process's high-water mark during a run (the largest of the repeats), after freed heap pages are
given back to the OS (``malloc_trim``). ``--pin-mmap-threshold`` pins glibc's mmap threshold so
that no case's peak can depend on earlier cases, at the price of slower GDAL work (about 40 %
on the COG conversion: every large buffer becomes a fresh mapping); it is off by default
because production processes run with glibc's defaults. Numba kernels are compiled,
or loaded from their on-disk cache, by a warm-up on a tiny stack before any timing; that time is
printed and is not in the table.

Each case also gets its floor (``_floor.floor_seconds``): the seconds to decode the case's
merges once and encode its COGs once with the same codec and threads, nothing else (the fastest
decoding and the fastest encoding of ``--repeat`` measurements, as the cases keep their fastest
run); ``floor_s`` and ``ratio_to_floor`` (the project's seconds over it) are columns of the table.

``--functions`` keeps only some of the band functions (``LCF,MED,AVG`` by default; the one-pass
case needs two or more). ``--no-reference`` times the project's side alone (no reference, no
pixel comparison; for a full tile, where the references take minutes a case): per case its
seconds, peak RSS, COG seconds and floor, then ``max_project_peak_rss`` and last
``max_ratio_to_floor: X``.

Prints a header, one row per case (seconds, reference seconds, ratio, peak RSS, then the
compositing-only times and ratio, the lean reference's numbers with the COG write, and the
floor), ``min_ratio_compositing_only``, ``min_ratio_vs_lean_numpy_ma``, ``max_project_peak_rss``,
a comment with the minimum ratios the project would show if every case took only its floor (what
no implementation with the same codec could beat, short of reading fewer inputs),
``min_ratio_vs_reference: X`` (with the COG write) and last ``max_ratio_to_floor: X``. Targets:
``min_ratio_vs_reference`` >= 20, ``min_ratio_vs_lean_numpy_ma`` >= 5, ``max_ratio_to_floor``
<= 1.3; ``--size 10560`` at most 6 s and under 1 GiB peak RSS per band.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    CaseResult,
    Measurement,
    format_bytes,
    machine_summary,
    measure,
    peak_rss_method,
    pin_mmap_threshold,
    print_results,
    print_table,
)
from _floor import floor_seconds
from reference_blend import QUALITY_OUTPUTS, reference_blend_band, reference_blend_quality

from cube_assets.raster.codecs import COMPRESSIONS, DEFAULT_COMPRESSION, compression_options
from cube_assets.raster.cog import cog_from_file
from cube_assets.raster.composite import DEFAULT_IO_THREADS, blend_band, blend_quality
from cube_assets.raster.masks import SCL_RULES

BAND = "B04"
BAND_NODATA = -9999
SCL_NODATA = 0
FUNCTIONS = ("LCF", "MED", "AVG")
QUALITY_CASE = "SCL quality+PROVENANCE+CLEAROB+TOTALOB"
GENERATOR_VERSION = 1

# --------------------------------------------------------------------------- synthetic merges

_CELL = 96  # pixels per cell of the coarse random fields that are interpolated into blobs
_GENERATION_BLOCK = 1024


@dataclass(frozen=True)
class SyntheticPeriod:
    """The merges of a synthetic period (date order) and each date's efficacy."""

    band_paths: list[Path]
    quality_paths: list[Path]
    dates: list[datetime.date]
    efficacies: list[float]
    size: int


def _coarse_field(seed: int, size: int) -> np.ndarray:
    cells = size // _CELL + 3
    return np.random.default_rng(seed).random((cells, cells), dtype=np.float32)


def _sample(coarse: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``coarse`` at pixel rows x cols (a smooth field in 0..1)."""
    r = rows.astype(np.float32) / _CELL
    c = cols.astype(np.float32) / _CELL
    r0, c0 = r.astype(np.intp), c.astype(np.intp)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    first = r0[0]
    strip = coarse[first : r0[-1] + 2]
    across = strip[:, c0] * (1 - fc) + strip[:, c0 + 1] * fc
    return across[r0 - first] * (1 - fr) + across[r0 - first + 1] * fr


def _date_window(
    index: int, dates: int, size: int, seed: int, window: Window, land: np.ndarray, fields: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """SCL codes and band values of date ``index`` in ``window``."""
    rows = np.arange(window.row_off, window.row_off + window.height)
    cols = np.arange(window.col_off, window.col_off + window.width)
    rng = np.random.default_rng([seed, index, window.row_off, window.col_off])
    cloud_cover = 0.05 + 0.6 * ((index * 7919) % dates) / max(dates - 1, 1)
    threshold = 1.0 - cloud_cover
    cloud = _sample(fields["cloud"], rows, cols)
    shadow = _sample(fields["cloud"], rows + 40, cols + 60)  # the cloud field shifted: its shadow
    cirrus = _sample(fields["cirrus"], rows, cols)
    scl = np.where(land < 0.45, 4, np.where(land < 0.85, 5, 6)).astype(np.uint8)
    scl[shadow > threshold + 0.05] = 3
    scl[cirrus > 0.93] = 10
    scl[cloud > threshold] = 8
    scl[cloud > threshold + 0.08] = 9
    noise = rng.random(scl.shape, dtype=np.float32)
    scl[noise < 0.002] = 2
    scl[(noise >= 0.002) & (noise < 0.007)] = 7
    scl[(noise >= 0.007) & (noise < 0.008)] = 11
    scl[(noise >= 0.008) & (noise < 0.0085)] = 1
    if index % 3 != 2:  # a slanted swath border cuts a different corner on most dates
        edge = (0.65 + 0.3 * ((index * 31) % 7) / 6) * 1.3 * size
        across = (cols[None, :] if index % 2 else size - cols[None, :]) + 0.3 * rows[:, None]
        scl[across > edge] = SCL_NODATA
    base = 300 + 3500 * land + 400 * np.sin(index / 3.0)
    band = base + rng.integers(-100, 100, scl.shape, dtype=np.int16)
    band = np.where((scl == 8) | (scl == 9) | (scl == 10), 5000 + 4000 * cloud, band)
    band = np.where(scl == 3, band * 0.4, band)
    band = np.where(scl == 1, 16000, band)
    values = np.clip(np.rint(band), -2000, 16000).astype(np.int16)
    values[scl == SCL_NODATA] = BAND_NODATA
    values[noise > 0.9998] = BAND_NODATA  # nodata in the band only: spectral nodata propagation
    return scl, values


def build_synthetic_period(
    directory: Path, size: int, dates: int = 10, seed: int = 2024, codec: str = DEFAULT_COMPRESSION
) -> SyntheticPeriod:
    """Write ``dates`` merges (``B04`` int16 and ``SCL`` uint8 GeoTIFFs) of a ``size`` x ``size`` tile.

    Generated per 1024 x 1024 window from seeds (a 10560 tile needs little memory, and the same
    arguments give the same files). Dates are 5 days apart from 2024-01-01. The files are
    compressed with ``codec`` (with its default level and predictor, as ``tile_merge`` writes a
    cube's merges; default: the project's default codec). A manifest in ``directory`` lets a
    later call with the same arguments reuse the files.

    Returns:
        The paths, dates and efficacies (100 x clear / all pixels, clear meaning SCL 4-6 with
        a valid band value).

    Raises:
        ValueError: if ``size`` or ``dates`` is not positive.
    """
    if size <= 0 or dates <= 0:
        raise ValueError(f"size {size} and dates {dates} must be positive")
    directory.mkdir(parents=True, exist_ok=True)
    day_list = [datetime.date(2024, 1, 1) + datetime.timedelta(days=5 * i) for i in range(dates)]
    band_paths = [directory / f"{BAND}_{day:%Y%m%d}.tif" for day in day_list]
    quality_paths = [directory / f"SCL_{day:%Y%m%d}.tif" for day in day_list]
    manifest_path = directory / "manifest.json"
    key = {"size": size, "dates": dates, "seed": seed, "codec": codec.upper(), "version": GENERATOR_VERSION}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key and all(p.exists() for p in band_paths + quality_paths):
            return SyntheticPeriod(band_paths, quality_paths, day_list, manifest["efficacies"], size)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "crs": "EPSG:32723",
        "transform": from_origin(500000, 8000000, 10, 10),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
    land_coarse = _coarse_field(seed, size)
    efficacies = []
    for index in range(dates):
        fields = {"cloud": _coarse_field(seed + 1000 + index, size), "cirrus": _coarse_field(seed + 2000 + index, size)}
        clear = 0
        with (
            rasterio.open(
                band_paths[index],
                "w",
                dtype="int16",
                nodata=BAND_NODATA,
                **profile,
                **compression_options(codec, "int16"),
            ) as band_out,
            rasterio.open(
                quality_paths[index],
                "w",
                dtype="uint8",
                nodata=SCL_NODATA,
                **profile,
                **compression_options(codec, "uint8"),
            ) as scl_out,
        ):
            for row in range(0, size, _GENERATION_BLOCK):
                for col in range(0, size, _GENERATION_BLOCK):
                    window = Window(col, row, min(_GENERATION_BLOCK, size - col), min(_GENERATION_BLOCK, size - row))
                    land = _sample(
                        land_coarse,
                        np.arange(window.row_off, window.row_off + window.height),
                        np.arange(window.col_off, window.col_off + window.width),
                    )
                    scl, values = _date_window(index, dates, size, seed, window, land, fields)
                    clear += int(np.count_nonzero((scl >= 4) & (scl <= 6) & (values != BAND_NODATA)))
                    band_out.write(values, 1, window=window)
                    scl_out.write(scl, 1, window=window)
        efficacies.append(round(100.0 * clear / (size * size), 4))
    manifest_path.write_text(json.dumps({"key": key, "efficacies": efficacies}))
    return SyntheticPeriod(band_paths, quality_paths, day_list, efficacies, size)


# --------------------------------------------------------------------------- running the sides


class TimedCog:
    """The finalize every side uses: ``cog_from_file`` as in ``steps/blend.py``, timed apart.

    ``seconds`` is the wall time from the first conversion's start to the last one's end (the
    outputs of one pass are converted at once, in threads), not the sum of their times.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[tuple[float, float]] = []

    def __call__(self, staging: Path, destination: Path) -> None:
        start = time.perf_counter()
        cog_from_file(staging, destination, overview_resampling="nearest", driver="gdal", overviews_in_source=True)
        with self._lock:
            self._spans.append((start, time.perf_counter()))

    @property
    def seconds(self) -> float:
        """Wall seconds during which at least one conversion ran (spans merged)."""
        total, end = 0.0, float("-inf")
        for span_start, span_end in sorted(self._spans):
            if span_end > end:
                total += span_end - max(span_start, end)
                end = span_end
        return total


@dataclass(frozen=True)
class Run:
    """One side's run of one case: seconds without the COG conversion, COG seconds, peak RSS."""

    seconds: float
    cog_seconds: float
    peak_rss: int
    outputs: dict[str, Path]

    @property
    def total(self) -> float:
        """Seconds from reading the merges to the written COGs."""
        return self.seconds + self.cog_seconds


def _compositing_extras(project_s: float, reference_s: float, project_cog_s: float) -> dict[str, str]:
    """The columns of the compositing alone (COG conversion left out) and the project's COG time."""
    return {
        "compositing_s": f"{project_s:.3f}/{reference_s:.3f}",
        "compositing_ratio": f"{reference_s / project_s:.1f}",
        "project_cog_s": f"{project_cog_s:.2f}",
    }


def _run_side(side: str, case: str, period: SyntheticPeriod, out_dir: Path, engine: str, io_threads: int | None) -> Run:
    cog = TimedCog()
    folder = out_dir / side
    args = (period.dates, period.efficacies)

    def project() -> dict[str, Path]:
        if case == QUALITY_CASE:
            return blend_quality(
                period.quality_paths,
                *args,
                SCL_RULES,
                *(folder / f"{name}.tif" for name in QUALITY_OUTPUTS),
                finalize=cog,
                engine=engine,
                io_threads=io_threads,
            )
        functions = case.split()[1].split("+")
        return blend_band(
            period.band_paths,
            period.quality_paths,
            *args,
            SCL_RULES,
            functions,
            {function: folder / f"{function}.tif" for function in functions},
            BAND_NODATA,
            finalize=cog,
            engine=engine,
            io_threads=io_threads,
        )

    def reference(style: str) -> Callable[[], dict[str, Path]]:
        def run() -> dict[str, Path]:
            if case == QUALITY_CASE:
                return reference_blend_quality(
                    period.quality_paths,
                    *args,
                    SCL_RULES,
                    {name: folder / f"{name}.tif" for name in QUALITY_OUTPUTS},
                    finalize=cog,
                    style=style,
                )
            function = case.split()[-1]
            path = reference_blend_band(
                period.band_paths,
                period.quality_paths,
                *args,
                SCL_RULES,
                function,
                folder / f"{function}.tif",
                BAND_NODATA,
                finalize=cog,
                style=style,
            )
            return {function: path}

        return run

    function = project if side == "project" else reference(side)
    measurement: Measurement = measure(function)
    return Run(measurement.seconds - cog.seconds, cog.seconds, measurement.peak_rss, measurement.result)


def assert_same_pixels(case: str, side: str, expected: Mapping[str, Path], actual: Mapping[str, Path]) -> None:
    """Compare two sides' outputs strip by strip (bounded memory); raise AssertionError on a difference."""
    for name, path in expected.items():
        with rasterio.open(path) as want, rasterio.open(actual[name]) as got:
            if (want.dtypes, want.nodata, want.shape) != (got.dtypes, got.nodata, got.shape):
                raise AssertionError(
                    f"{case} {name}: project {want.dtypes} nodata {want.nodata} {want.shape}, "
                    f"{side} {got.dtypes} nodata {got.nodata} {got.shape}"
                )
            for row in range(0, want.height, 1024):
                window = Window(0, row, want.width, min(1024, want.height - row))
                a, b = want.read(1, window=window), got.read(1, window=window)
                if not np.array_equal(a, b):
                    where = np.argwhere(a != b)[0]
                    raise AssertionError(
                        f"{case} {name}: {np.count_nonzero(a != b)} pixels differ between the project and {side} "
                        f"in rows {row}..; first at row {row + where[0]}, col {where[1]}: "
                        f"{a[tuple(where)]} vs {b[tuple(where)]}"
                    )


def decode_seconds(paths: Sequence[Path]) -> float:
    """Seconds to read every block of ``paths`` once, one file after the other, in this thread."""
    start = time.perf_counter()
    for path in paths:
        with rasterio.open(path) as dataset:
            for _, window in dataset.block_windows(1):
                dataset.read(1, window=window)
    return time.perf_counter() - start


def case_floor(case: str, period: SyntheticPeriod, outputs: Mapping[str, Path], threads: int, repeat: int = 1) -> float:
    """The case's floor (``_floor.floor_seconds``): its merges decoded once, its COGs encoded once.

    Measured ``repeat`` times, like the cases; the fastest decoding and the fastest encoding are kept.
    """
    inputs = period.quality_paths if case == QUALITY_CASE else period.band_paths + period.quality_paths
    floors = [floor_seconds(inputs, list(outputs.values()), threads) for _ in range(repeat)]
    decode = min(floor.decode_seconds for floor in floors)
    encode = min(floor.encode_seconds for floor in floors)
    print(f"# floor of {case}: decode {decode:.3f} s + encode {encode:.3f} s (best of {repeat})", flush=True)
    return decode + encode


def _floor_extras(seconds: float, floor: float) -> dict[str, str]:
    return {"floor_s": f"{floor:.3f}", "ratio_to_floor": f"{seconds / floor:.2f}"}


def warm_up(directory: Path) -> float:
    """Compile (or load from numba's cache) the kernels on a tiny stack; return the seconds it took."""
    tiny = build_synthetic_period(directory / "warm-up-input", 96, dates=3)
    start = time.perf_counter()
    blend_band(
        tiny.band_paths,
        tiny.quality_paths,
        tiny.dates,
        tiny.efficacies,
        SCL_RULES,
        list(FUNCTIONS),
        {f: directory / f"warm-up-{f}.tif" for f in FUNCTIONS},
        BAND_NODATA,
        block_size=64,
    )
    blend_quality(
        tiny.quality_paths,
        tiny.dates,
        tiny.efficacies,
        SCL_RULES,
        *(directory / f"warm-up-{name}.tif" for name in QUALITY_OUTPUTS),
        block_size=64,
    )
    return time.perf_counter() - start


def project_only(
    cases: Sequence[str],
    period: SyntheticPeriod,
    out_dir: Path,
    engine: str,
    io_threads: int | None,
    repeat: int,
    threads: int,
) -> float:
    """Time the project's side alone per case (best of ``repeat``); print its table and last lines.

    Returns:
        The largest ratio to the floor over the cases (also printed last, ``max_ratio_to_floor``).
    """
    rows, ratios, peaks = [], [], []
    for case in cases:
        runs = [_run_side("project", case, period, out_dir, engine, io_threads) for _ in range(repeat)]
        best = min(runs, key=lambda run: run.seconds)
        peaks.append(max(run.peak_rss for run in runs))
        floor = case_floor(case, period, best.outputs, threads, repeat)
        ratios.append(best.total / floor)
        rows.append(
            (
                case,
                f"{best.total:.3f}",
                format_bytes(peaks[-1]),
                f"{best.seconds:.3f}",
                f"{best.cog_seconds:.2f}",
                f"{floor:.3f}",
                f"{ratios[-1]:.2f}",
            )
        )
        print(f"# done: {case}", flush=True)
    print_table(rows, ("case", "seconds", "peak_rss", "compositing_s", "project_cog_s", "floor_s", "ratio_to_floor"))
    print(f"max_project_peak_rss: {format_bytes(max(peaks))}")
    print(f"# machine after the cases: {machine_summary()}", flush=True)
    print(f"max_ratio_to_floor: {max(ratios):.2f}", flush=True)
    return max(ratios)


def _at_the_floor(results: Sequence[CaseResult]) -> str:
    """The line of the highest minimum ratios the project could show if each case took only its floor."""
    floors = [float(r.extras["floor_s"]) for r in results]
    bounds = [f"vs reference {min(r.reference_seconds / floor for r, floor in zip(results, floors, strict=True)):.1f}"]
    if all("lean_s" in r.extras for r in results):
        lean = min(float(r.extras["lean_s"]) / floor for r, floor in zip(results, floors, strict=True))
        bounds.append(f"vs lean numpy.ma {lean:.1f}")
    return f"# at the floor (every case taking only its floor_s), the minimum ratios would be: {', '.join(bounds)}"


def _print_summary(results: Sequence[CaseResult]) -> float:
    """Print the summary lines and the table of ``results``; return the minimum ratio against the reference."""
    print(f"min_ratio_compositing_only: {min(float(r.extras['compositing_ratio']) for r in results):.1f}")
    if any("lean_ratio" in r.extras for r in results):
        lean_min = min(float(r.extras["lean_ratio"]) for r in results if "lean_ratio" in r.extras)
        print(f"min_ratio_vs_lean_numpy_ma: {lean_min:.1f}")
    print(f"max_project_peak_rss: {format_bytes(max(r.peak_rss for r in results))}")
    print(_at_the_floor(results))
    minimum = print_results(results)
    print(f"# machine after the cases: {machine_summary()}", flush=True)
    print(f"max_ratio_to_floor: {max(float(r.extras['ratio_to_floor']) for r in results):.2f}", flush=True)
    return minimum


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> float:
    """Run the benchmark; return the minimum ratio against the reference (``--cases science``: ``blend_science``)."""
    cases = argparse.ArgumentParser(add_help=False)
    cases.add_argument("--cases", choices=("classic", "science"), default="classic")
    chosen, rest = cases.parse_known_args(argv)
    if chosen.cases == "science":
        import blend_science

        return blend_science.main(rest)
    argv = rest
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="tile width and height in pixels (default 2048)")
    parser.add_argument("--dates", type=int, default=10, help="observations in the period (default 10)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per side, fastest kept (default 3; 1 above 4096)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="keep (and reuse) the synthetic merges here")
    parser.add_argument(
        "--merge-codec",
        type=str.upper,
        choices=COMPRESSIONS,
        default=DEFAULT_COMPRESSION,
        help=f"codec of the synthetic merges (default {DEFAULT_COMPRESSION}, the project's: what tile_merge writes)",
    )
    parser.add_argument("--no-lean", action="store_true", help="skip the lean numpy.ma reference")
    parser.add_argument(
        "--no-reference", action="store_true", help="time the project alone (no reference, no pixel comparison)"
    )
    parser.add_argument(
        "--functions", default=",".join(FUNCTIONS), help=f"band functions to time (default {','.join(FUNCTIONS)})"
    )
    parser.add_argument("--engine", default="auto", choices=("auto", "numba", "numpy"), help="the project's engine")
    parser.add_argument("--io-threads", type=int, default=None, help="the project's decoding threads (default: CPUs)")
    parser.add_argument(
        "--pin-mmap-threshold",
        action="store_true",
        help="pin glibc's mmap threshold (order-independent peaks, slower GDAL work)",
    )
    args = parser.parse_args(argv)
    functions = [name.strip().upper() for name in args.functions.split(",") if name.strip()]
    if not functions or set(functions) - set(FUNCTIONS) or len(set(functions)) < len(functions):
        parser.error(f"--functions must name distinct functions among {','.join(FUNCTIONS)}")
    repeat = args.repeat if args.repeat is not None else (3 if args.size <= 4096 else 1)
    sides = ["project", "cube_builder"] + ([] if args.no_lean else ["lean"])
    threads = args.io_threads or min(DEFAULT_IO_THREADS, os.cpu_count() or 1)

    workdir = Path(tempfile.mkdtemp(prefix="blend-benchmark-"))
    try:
        data_dir = args.data_dir or workdir / "merges"
        print(
            f"# blend benchmark: {args.size} x {args.size} px x {args.dates} dates, int16 {BAND} + uint8 SCL, "
            f"tiled 512 {args.merge_codec} merges in {data_dir}",
            flush=True,
        )
        print(f"# machine: {machine_summary()}", flush=True)
        pinned = pin_mmap_threshold() if args.pin_mmap_threshold else False
        print(
            f"# peak RSS: {peak_rss_method()}, after malloc_trim; glibc mmap threshold pinned to 128 KiB: {pinned}",
            flush=True,
        )
        start = time.perf_counter()
        period = build_synthetic_period(data_dir, args.size, args.dates, codec=args.merge_codec)
        print(f"# merges ready in {time.perf_counter() - start:.1f} s; efficacies {period.efficacies}", flush=True)
        print(f"# numba warm-up (compile or load from cache), not in the timings: {warm_up(workdir):.2f} s", flush=True)
        baseline = measure(lambda: None).start_rss
        print(
            f"# process RSS before the cases (interpreter, numpy, rasterio, numba): {format_bytes(baseline)}",
            flush=True,
        )
        print(
            f"# decoding every merge once, one thread, no compositing: "
            f"{BAND} {decode_seconds(period.band_paths):.3f} s, SCL {decode_seconds(period.quality_paths):.3f} s",
            flush=True,
        )
        print(
            f"# project engine {args.engine}, io_threads {args.io_threads or 'default'}; best of {repeat}; "
            f"seconds run from reading the merges to the written COGs",
            flush=True,
        )

        cases = [f"{BAND} {function}" for function in functions] + [QUALITY_CASE]
        if args.no_reference:
            if len(functions) > 1:
                cases.append(f"{BAND} {'+'.join(functions)}")
            return project_only(cases, period, workdir / "out", args.engine, args.io_threads, repeat, threads)
        results = []
        per_function: dict[str, dict[str, Run]] = {}
        for case in cases:
            best: dict[str, Run] = {}
            peaks: dict[str, int] = {}
            for attempt in range(repeat):
                for side in sides if attempt % 2 == 0 else reversed(sides):
                    run = _run_side(side, case, period, workdir / "out", args.engine, args.io_threads)
                    peaks[side] = max(peaks.get(side, 0), run.peak_rss)
                    if side not in best or run.seconds < best[side].seconds:
                        best[side] = run
            for side in sides[1:]:  # every run wrote over the same files; compare the last ones
                assert_same_pixels(case, side, best["project"].outputs, best[side].outputs)
            per_function[case] = best
            project, reference = best["project"], best["cube_builder"]
            extras = _compositing_extras(project.seconds, reference.seconds, project.cog_seconds)
            if "lean" in best:
                lean = best["lean"]
                extras.update(
                    lean_s=f"{lean.total:.3f}",
                    lean_ratio=f"{lean.total / project.total:.1f}",
                    lean_peak_rss=format_bytes(peaks["lean"]),
                )
            extras.update(_floor_extras(project.total, case_floor(case, period, project.outputs, threads, repeat)))
            results.append(
                CaseResult(case, project.total, reference.total, peaks["project"], peaks["cube_builder"], extras)
            )
            print(f"# done: {case}", flush=True)
        # How steps/blend.py calls it: all functions of a band in one pass, against the
        # reference's three runs (one per function, as the cube builder runs them).
        if len(functions) < 2:
            return _print_summary(results)
        combined_case = f"{BAND} {'+'.join(functions)} (one pass; reference: {len(functions)} runs)"
        combined = min(
            (
                _run_side(
                    "project", f"{BAND} {'+'.join(functions)}", period, workdir / "out", args.engine, args.io_threads
                )
                for _ in range(repeat)
            ),
            key=lambda run: run.seconds,
        )
        for function in functions:
            assert_same_pixels(
                combined_case,
                "project (one function per run)",
                {function: combined.outputs[function]},
                {function: per_function[f"{BAND} {function}"]["project"].outputs[function]},
            )
        summed = {side: [per_function[f"{BAND} {f}"][side] for f in functions] for side in sides[1:]}
        reference_sum = sum(run.seconds for run in summed["cube_builder"])
        reference_total = sum(run.total for run in summed["cube_builder"])
        extras = _compositing_extras(combined.seconds, reference_sum, combined.cog_seconds)
        if "lean" in summed:
            lean_sum = sum(run.total for run in summed["lean"])
            extras.update(lean_s=f"{lean_sum:.3f}", lean_ratio=f"{lean_sum / combined.total:.1f}", lean_peak_rss="-")
        extras.update(
            _floor_extras(combined.total, case_floor(combined_case, period, combined.outputs, threads, repeat))
        )
        results.append(
            CaseResult(
                combined_case,
                combined.total,
                reference_total,
                combined.peak_rss,
                max(run.peak_rss for run in summed["cube_builder"]),
                extras,
            )
        )
        return _print_summary(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
