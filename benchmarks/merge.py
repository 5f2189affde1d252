"""Merge speed and memory: the windowed merge against the whole-tile merge it replaced, same process.

Run::

    .venv/bin/python benchmarks/merge.py                 # a 4096 x 4096 tile, 2 scenes, 3 bands + SCL
    .venv/bin/python benchmarks/merge.py --size 10560    # a full BDC tile (minutes, several GiB of disk)

It builds two overlapping synthetic Sentinel-2 scenes (``build_synthetic_scenes``) in UTM zone
23 S at 10 m, each three int16 bands (reflectance x 10000, nodata -9999; B02 nearest, B04
bilinear, B08 bilinear) and an SCL band with cloud blobs, shadows and a slanted nodata swath
edge, written as tiled 512 x 512 DEFLATE GeoTIFFs like the project's scene COGs; together they
cover a ``--size`` x ``--size`` tile of a 10 m grid in the BDC Albers projection (a few degrees
rotated against UTM), the first scene the west two thirds, the second the east two thirds
(``--data-dir`` keeps and reuses them). Then, per case, from reading the scenes to published
COGs in a local store:

* this project: ``cube_assets.steps.merge.merge_date``, window by window (``--windows``, each
  a case), per-band staging GeoTIFFs and GDAL's COG driver;
* the reference: ``reference_merge.reference_merge_date``, the former whole-tile merge (every
  band of the tile in memory, ``write_cog`` through rio-cogeo), run once and shared by the cases.

Both sides' published files are compared pixel for pixel, strip by strip, and their statistics
(efficacy, cloud ratio, pixel counts) must be equal; an ``AssertionError`` stops the run
otherwise. The peak RSS is the process's high-water mark during a run (``_common.measure``,
after freed heap is returned to the OS). Prints a header, one row per case (seconds, reference
seconds, ratio, peak RSS of both, floor), ``max_project_peak_rss``, ``min_ratio_vs_reference``
and last ``max_ratio_to_floor``: each case's seconds over its floor (``_floor.floor_seconds``:
the scene files decoded once and the merge's COGs encoded once, same codec and threads; target
1.3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    CaseResult,
    format_bytes,
    machine_summary,
    measure,
    peak_rss_method,
    print_results,
)
from _floor import floor_seconds
from reference_merge import reference_merge_date

from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import SceneRasters
from cube_assets.steps.merge import merge_date
from cube_assets.storage.raster_store import LocalRasterStore

BANDS = ("B02", "B04", "B08")
BAND_NODATA = -9999
SCL_NODATA = 0
SCENE_CRS = "EPSG:32723"
BDC_ALBERS = (
    "+proj=aea +lat_0=-12 +lon_0=-54 +lat_1=-2 +lat_2=-22 +x_0=5000000 +y_0=10000000 +ellps=GRS80 +units=m +no_defs"
)
TILE_ORIGIN = (5920780.0, 9592720.0)  # near 45.3 W 15.5 S, in UTM zone 23 S
DAY = date(2024, 1, 4)
GENERATOR_VERSION = 1
STATISTICS = ("scenes", "efficacy", "cloud_ratio", "valid_pixels", "clear_pixels", "total_pixels")

_CELL = 96  # pixels per cell of the coarse random fields interpolated into blobs
_GENERATION_BLOCK = 1024


def cube_for(size: int) -> CubeConfig:
    """A cube of one ``size`` x ``size`` tile (``000000``) at 10 m in the BDC Albers projection."""
    return CubeConfig.model_validate(
        {
            "name": "merge_benchmark",
            "collection": "sentinel-2-l2a",
            "providers": [],
            "grid": {
                "kind": "user",
                "name": "ALBERS10",
                "crs": BDC_ALBERS,
                "origin": list(TILE_ORIGIN),
                "tile_size": [size, size],
                "resolution": 10,
            },
            "tiles": ["000000"],
            "start_date": "2024-01-01",
            "end_date": "2024-01-16",
            "bands": [{"name": "B02", "resampling": "nearest"}, {"name": "B04"}, {"name": "B08"}],
            "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": SCL_NODATA},
        }
    )


# --------------------------------------------------------------------------- synthetic scenes


def _coarse_field(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).random((height // _CELL + 3, width // _CELL + 3), dtype=np.float32)


def _sample(coarse: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``coarse`` at pixel rows x cols: a smooth field in 0..1."""
    r, c = rows.astype(np.float32) / _CELL, cols.astype(np.float32) / _CELL
    r0, c0 = r.astype(np.intp), c.astype(np.intp)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def _scene_window(
    index: int, window: Window, shape: tuple[int, int], fields: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """SCL codes and the band values of scene ``index`` in ``window``."""
    rows = np.arange(window.row_off, window.row_off + window.height)
    cols = np.arange(window.col_off, window.col_off + window.width)
    rng = np.random.default_rng([index, window.row_off, window.col_off])
    land, cloud = _sample(fields["land"], rows, cols), _sample(fields["cloud"], rows, cols)
    shadow = _sample(fields["cloud"], rows + 40, cols + 60)
    scl = np.where(land < 0.45, 4, np.where(land < 0.85, 5, 6)).astype(np.uint8)
    threshold = 0.75 - 0.2 * index
    scl[shadow > threshold + 0.05] = 3
    scl[cloud > threshold] = 8
    scl[cloud > threshold + 0.08] = 9
    noise = rng.random(scl.shape, dtype=np.float32)
    scl[noise < 0.003] = 7
    height, width = shape
    across = (cols[None, :] if index else width - cols[None, :]) + 0.25 * rows[:, None]
    scl[across > 0.95 * width] = SCL_NODATA  # a slanted swath edge on the far side of each scene
    bands = []
    for offset in range(len(BANDS)):
        value = 300 + 3000 * land + 500 * offset + rng.integers(-80, 80, scl.shape, dtype=np.int16)
        value = np.where(scl >= 8, 5000 + 4000 * cloud, value)
        values = np.clip(np.rint(value), -2000, 16000).astype(np.int16)
        values[scl == SCL_NODATA] = BAND_NODATA
        values[noise > 0.9997] = BAND_NODATA  # nodata in a band only: propagated into the quality band
        bands.append(values)
    return scl, bands


def build_synthetic_scenes(directory: Path, size: int) -> list[dict[str, Any]]:
    """Write two overlapping scenes over the benchmark tile of ``size`` px; reuse them if already there.

    Returns:
        Scene-COG manifest entries (``scene_id``, ``bands``, ``quality``) in priority order.

    Raises:
        ValueError: if ``size`` is not positive.
    """
    if size <= 0:
        raise ValueError(f"size {size} must be positive")
    directory.mkdir(parents=True, exist_ok=True)
    tile = cube_for(size).tile("000000")
    west, south, east, north = transform_bounds(tile.crs, SCENE_CRS, *tile.bounds)
    margin, span = 1000.0, east - west
    extents = [(west - margin, west + 0.66 * span), (west + 0.34 * span, east + margin)]
    entries = [
        {
            "scene_id": f"scene_{index}",
            "bands": {band: str(directory / f"scene_{index}_{band}.tif") for band in BANDS},
            "quality": str(directory / f"scene_{index}_SCL.tif"),
        }
        for index in range(len(extents))
    ]
    manifest_path = directory / "manifest.json"
    key = {"size": size, "version": GENERATOR_VERSION}
    files = [Path(p) for entry in entries for p in [*entry["bands"].values(), entry["quality"]]]
    if manifest_path.exists() and json.loads(manifest_path.read_text()) == key and all(p.exists() for p in files):
        return entries
    for index, ((left, right), entry) in enumerate(zip(extents, entries, strict=True)):
        left, top = np.floor(left / 10) * 10, np.ceil((north + margin) / 10) * 10
        width, height = int(np.ceil((right - left) / 10)), int(np.ceil((top - (south - margin)) / 10))
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "crs": SCENE_CRS,
            "transform": Affine(10, 0, left, 0, -10, top),
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "predictor": 2,
        }
        fields = {"land": _coarse_field(7, height, width), "cloud": _coarse_field(100 + index, height, width)}
        with rasterio.open(entry["quality"], "w", dtype="uint8", nodata=SCL_NODATA, **profile) as scl_out:
            band_outs = [
                rasterio.open(entry["bands"][band], "w", dtype="int16", nodata=BAND_NODATA, **profile) for band in BANDS
            ]
            try:
                for row in range(0, height, _GENERATION_BLOCK):
                    for col in range(0, width, _GENERATION_BLOCK):
                        window = Window(
                            col, row, min(_GENERATION_BLOCK, width - col), min(_GENERATION_BLOCK, height - row)
                        )
                        scl, values = _scene_window(index, window, (height, width), fields)
                        scl_out.write(scl, 1, window=window)
                        for out, band_values in zip(band_outs, values, strict=True):
                            out.write(band_values, 1, window=window)
            finally:
                for out in band_outs:
                    out.close()
    manifest_path.write_text(json.dumps(key))
    return entries


# --------------------------------------------------------------------------- running and comparing


@dataclass(frozen=True)
class Run:
    """One side's merge: seconds from reading the scenes to published COGs, peak RSS, manifest entry."""

    seconds: float
    peak_rss: int
    entry: dict[str, Any]


def run_side(side: str, cube: CubeConfig, scenes: Sequence[Mapping[str, Any]], root: Path, window_size: int) -> Run:
    """Merge once with ``side`` ("project" or "reference") into a fresh local store under ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    store = LocalRasterStore(root)
    tile = cube.tile("000000")
    if side == "project":
        rasters = [SceneRasters.model_validate(scene) for scene in scenes]
        measurement = measure(
            lambda: merge_date(cube, tile, DAY, rasters, store, window_size=window_size).model_dump(mode="json")
        )
    else:
        measurement = measure(lambda: reference_merge_date(cube, tile, DAY, scenes, store))
    return Run(measurement.seconds, measurement.peak_rss, measurement.result)


def _outputs(entry: Mapping[str, Any]) -> dict[str, str]:
    return {**entry["bands"], "quality": entry["quality"], "DATASOURCE": entry["datasource"]}


def assert_same_merge(case: str, project: Mapping[str, Any], reference: Mapping[str, Any]) -> None:
    """Same statistics and pixels (compared strip by strip, bounded memory); AssertionError otherwise."""
    for key in STATISTICS:
        if project[key] != reference[key]:
            raise AssertionError(f"{case}: {key} {project[key]} (project) != {reference[key]} (reference)")
    for name, path in _outputs(reference).items():
        with rasterio.open(path) as want, rasterio.open(_outputs(project)[name]) as got:
            if (want.dtypes, want.nodata, want.shape, want.transform) != (
                got.dtypes,
                got.nodata,
                got.shape,
                got.transform,
            ):
                raise AssertionError(f"{case} {name}: type, nodata or grid differ")
            for row in range(0, want.height, 1024):
                window = Window(0, row, want.width, min(1024, want.height - row))
                a, b = want.read(1, window=window), got.read(1, window=window)
                if not np.array_equal(a, b):
                    raise AssertionError(f"{case} {name}: {np.count_nonzero(a != b)} pixels differ in rows {row}..")


def merge_floor(scenes: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]) -> float:
    """The merge's floor (``_floor.floor_seconds``): the scene files decoded once, the merge's COGs encoded once."""
    inputs = [Path(path) for scene in scenes for path in (*scene["bands"].values(), scene["quality"])]
    outputs = [Path(path) for path in _outputs(entry).values()]
    bands = {Path(path).name for path in entry["bands"].values()}
    floor = floor_seconds(
        inputs,
        outputs,
        os.cpu_count() or 1,
        overview_resampling=lambda path: "average" if path.name in bands else "nearest",
    )
    print(f"# floor: decode {floor.decode_seconds:.3f} s + encode {floor.encode_seconds:.3f} s", flush=True)
    return floor.seconds


def main(argv: Sequence[str] | None = None) -> float:
    """Run the benchmark; return the minimum ratio against the reference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="tile width and height in pixels (default 4096)")
    parser.add_argument(
        "--windows", default="1024,2048", help="the project's window sizes, one case each (default 1024,2048)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="keep (and reuse) the synthetic scenes here")
    args = parser.parse_args(argv)
    windows = [int(w) for w in args.windows.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="merge-benchmark-"))
    try:
        data_dir = args.data_dir or workdir / "scenes"
        cube = cube_for(args.size)
        print(
            f"# merge benchmark: {args.size} x {args.size} px tile (BDC Albers, 10 m), 2 overlapping UTM 23S scenes, "
            f"int16 {'+'.join(BANDS)} + uint8 SCL, tiled 512 DEFLATE scenes in {data_dir}",
            flush=True,
        )
        print(f"# machine: {machine_summary()}", flush=True)
        print(f"# peak RSS: {peak_rss_method()}, after malloc_trim", flush=True)
        start = time.perf_counter()
        scenes = build_synthetic_scenes(data_dir, args.size)
        print(f"# scenes ready in {time.perf_counter() - start:.1f} s", flush=True)
        print(f"# process RSS before the cases: {format_bytes(measure(lambda: None).start_rss)}", flush=True)
        print("# seconds run from reading the scenes to COGs published in a local store", flush=True)
        reference = run_side("reference", cube, scenes, workdir / "reference", 0)
        print(
            f"# reference (whole tile in memory): {reference.seconds:.2f} s, "
            f"peak RSS {format_bytes(reference.peak_rss)}; "
            f"efficacy {reference.entry['efficacy']}, cloud ratio {reference.entry['cloud_ratio']}",
            flush=True,
        )
        results = []
        for window in windows:
            case = f"merge window {window}"
            project = run_side("project", cube, scenes, workdir / "project", window)
            assert_same_merge(case, project.entry, reference.entry)
            floor = merge_floor(scenes, project.entry)
            extras = {"floor_s": f"{floor:.3f}", "ratio_to_floor": f"{project.seconds / floor:.2f}"}
            results.append(
                CaseResult(case, project.seconds, reference.seconds, project.peak_rss, reference.peak_rss, extras)
            )
            print(f"# done: {case}", flush=True)
        print(f"max_project_peak_rss: {format_bytes(max(r.peak_rss for r in results))}")
        minimum = print_results(results)
        print(f"# machine after the cases: {machine_summary()}", flush=True)
        print(f"max_ratio_to_floor: {max(float(r.extras['ratio_to_floor']) for r in results):.2f}", flush=True)
        return minimum
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
