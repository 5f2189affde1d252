"""Numba's compositing kernels compiled before a cube's first blend, by blending a tiny synthetic period once.

The kernels are compiled with ``cache=True``: the first process that blends compiles them (a
few CPU seconds on a 2-core machine) and writes numba's cache beside the module (or under
``NUMBA_CACHE_DIR``); later processes load it. A fresh install, or a fresh container, would
otherwise pay the compile inside its first ``period_blend`` step. Numba compiles one version of a
kernel per argument type, so the synthetic period has the cube's band dtype and nodata and a
quality band of the type the cube's rules read; the same functions (``blend_band``,
``blend_quality``, ``blend_cube``) that ``period_blend`` calls then compile exactly what a real
blend of that cube needs.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from cube_assets.cube_config import CubeConfig
from cube_assets.raster.composite import blend_band, blend_cube, blend_quality
from cube_assets.raster.composite_cube_rules import CUBE_FUNCTION_NAMES, cube_rule
from cube_assets.raster.composite_rules import is_band_function
from cube_assets.raster.masks import LandsatQAPixelRules, QualityRules, ValueMaskRules, rules_from_config
from cube_assets.steps.blend import cube_context

WARM_UP_SIZE = 64
WARM_UP_DATES = 3


def quality_dtype(rules: QualityRules) -> np.dtype:
    """The type of quality band ``rules`` classify: uint8 when every code fits in 8 bits, else uint16.

    SCL, Fmask and the quality classes of a cube with sources are uint8; Landsat's ``QA_PIXEL``
    is a uint16 bit field.
    """
    if isinstance(rules, ValueMaskRules):
        codes = (*rules.clear, *rules.not_clear, *rules.saturated, *rules.nodata)
        return np.dtype(np.uint8 if max(codes, default=0) <= 255 else np.uint16)
    return np.dtype(np.uint16 if isinstance(rules, LandsatQAPixelRules) else np.uint8)


def _quality_codes(rules: QualityRules) -> np.ndarray:
    """Codes that classify as clear, not clear and nodata under ``rules``."""
    if isinstance(rules, ValueMaskRules):
        return np.array((*rules.clear, *rules.not_clear, *rules.nodata))
    return np.array([rules.quality_nodata, 21824, 22280, 55052])  # Landsat fill, clear, cloud, high-confidence cloud


def _write(path: Path, array: np.ndarray, nodata: float | None) -> Path:
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype,
        "nodata": nodata,
        "crs": "EPSG:32723",
        "transform": from_origin(200000, 8250000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def _synthetic_period(cube: CubeConfig, folder: Path) -> tuple[dict[str, list[Path]], list[Path], list[date]]:
    """Write ``WARM_UP_DATES`` merges of the cube's bands and quality type; return their paths and dates."""
    rng = np.random.default_rng(0)
    rules = rules_from_config(cube.quality.rules)
    codes = _quality_codes(rules)
    band_dtype = np.dtype(cube.dtype)
    shape = (WARM_UP_SIZE, WARM_UP_SIZE)
    bands: dict[str, list[Path]] = {band: [] for band in cube.band_names}
    qualities: list[Path] = []
    days = [date(2024, 1, 1) + timedelta(days=5 * i) for i in range(WARM_UP_DATES)]
    for i in range(WARM_UP_DATES):
        for band in cube.band_names:
            values = rng.integers(1, 3000, size=shape).astype(band_dtype)
            values[rng.random(shape) < 0.05] = band_dtype.type(cube.nodata)
            bands[band].append(_write(folder / f"{band}_{i}.tif", values, cube.nodata))
        quality = codes[rng.integers(0, len(codes), size=shape)].astype(quality_dtype(rules))
        qualities.append(_write(folder / f"quality_{i}.tif", quality, cube.quality.nodata))
    return bands, qualities, days


def compile_kernels(cube: CubeConfig) -> float:
    """Blend a tiny synthetic period with the cube's composites, quality outputs included.

    Nothing is published: the period is written and blended in a temporary folder, removed
    afterwards. What remains is numba's cache of the kernels that blend used.

    Returns:
        The seconds it took (the compile when the cache was empty, else loading it).

    Raises:
        OSError: when the temporary folder cannot be written.
    """
    functions = list(cube.composites)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cube-assets-kernels-") as tmp:
        folder = Path(tmp)
        bands, qualities, days = _synthetic_period(cube, folder)
        efficacies = [50.0 + i for i in range(len(days))]
        band_functions = [f for f in functions if is_band_function(f)]
        if band_functions:
            first = cube.band_names[0]
            outs = {f: folder / f"out_{f}.tif" for f in band_functions}
            blend_band(bands[first], qualities, days, efficacies, cube.quality.rules, band_functions, outs, cube.nodata)
        context = cube_context(cube)
        for function in (f for f in functions if f in CUBE_FUNCTION_NAMES):
            rule = cube_rule(function, cube.composite_options.get(function, {}), context)
            names = (*cube.band_names, *rule.outputs)
            outs = {name: folder / f"out_{function}_{name}.tif" for name in names}
            blend_cube(bands, qualities, days, efficacies, cube.quality.rules, rule, outs, cube.nodata)
        blend_quality(
            qualities,
            days,
            efficacies,
            cube.quality.rules,
            *(folder / f"out_{name}.tif" for name in ("quality", "PROVENANCE", "CLEAROB", "TOTALOB")),
        )
    return time.perf_counter() - started
