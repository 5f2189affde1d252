"""DATASOURCE: each composite pixel's source bits, the same in the numba and numpy engines."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cube_assets.raster.composite import blend_cube, blend_quality
from cube_assets.raster.composite_cube_rules import CubeContext, cube_rule
from cube_assets.raster.datasource import DATASOURCE, datasource_contributed, source_bits
from cube_assets.raster.masks import QualityClass, ValueMaskRules

HEIGHT, WIDTH, BLOCK = 70, 66, 32  # 3 x 3 windows
DATES = [datetime.date(2024, 5, d) for d in (2, 6, 10, 14)]
EFFICACIES = [10.0, 90.0, 50.0, 30.0]  # rank: observation 1, 2, 3, 0
SOURCES = [2, 0, 1, 0]  # bits 4, 1, 2, 1: an observation's index is not its source
RULES = ValueMaskRules(clear=(0, 1), not_clear=(2, 3, 4), nodata=(255,))
CLEAR, CLOUD, NONE = 0, 4, 255


def write(path: Path, array: np.ndarray, nodata) -> Path:
    profile = dict(
        driver="GTiff",
        width=WIDTH,
        height=HEIGHT,
        count=1,
        crs="EPSG:32723",
        transform=from_origin(500000, 8000000, 10, 10),
        dtype=array.dtype.name,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        return src.read(1)


def quality_stack(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    quality = rng.choice(np.array([CLEAR, CLEAR, CLOUD, NONE], dtype=np.uint8), size=(4, HEIGHT, WIDTH))
    # Row 0, hand-made pixels (observations in input order 0..3):
    quality[:, 0, 0] = [CLEAR, CLEAR, CLEAR, CLEAR]  # LCF takes obs 1 (source 0); all four clear
    quality[:, 0, 1] = [CLEAR, CLOUD, CLEAR, CLOUD]  # LCF takes obs 2 (source 1); clear: obs 0, 2
    quality[:, 0, 2] = [CLOUD, CLOUD, CLOUD, CLOUD]  # LCF falls back to obs 1 (source 0); none clear
    quality[:, 0, 3] = [NONE, NONE, NONE, NONE]  # nothing
    quality[:, 0, 4] = [CLEAR, NONE, CLOUD, NONE]  # LCF takes obs 0 (source 2)
    return quality


def test_source_bits_are_one_bit_per_source():
    assert source_bits([0, 2, 7]).tolist() == [1, 4, 128]
    with pytest.raises(ValueError, match="must lie in 0..7"):
        source_bits([8])


def test_contributed_sources_are_the_or_of_the_clear_ones():
    classes = np.array([[[1, 2]], [[1, 1]], [[0, 3]]], dtype=np.uint8)  # (3 obs, 1, 2)
    assert datasource_contributed(classes, np.array([1, 2, 4], dtype=np.uint8)).tolist() == [[3, 2]]


@pytest.fixture
def quality_outputs(tmp_path):
    quality = quality_stack(3)
    paths = [write(tmp_path / f"q{t}.tif", quality[t], NONE) for t in range(len(DATES))]
    results = {}
    for engine in ("numba", "numpy"):
        out = tmp_path / engine
        out.mkdir()
        blend_quality(
            paths,
            DATES,
            EFFICACIES,
            RULES,
            out / "q.tif",
            out / "p.tif",
            out / "c.tif",
            out / "t.tif",
            block_size=BLOCK,
            engine=engine,
            sources=SOURCES,
            datasource_paths={"datasource_chosen": out / "chosen.tif", "datasource_clear": out / "clear.tif"},
        )
        results[engine] = {name: read(out / f"{name}.tif") for name in ("chosen", "clear")}
    return quality, results


def test_lcf_datasource_is_the_chosen_observations_source_in_both_engines(quality_outputs):
    quality, results = quality_outputs
    for engine in ("numba", "numpy"):
        assert results[engine]["chosen"][0, :5].tolist() == [1, 2, 1, 0, 4], engine
    np.testing.assert_array_equal(results["numba"]["chosen"], results["numpy"]["chosen"])
    assert set(np.unique(results["numba"]["chosen"])) == {0, 1, 2, 4}


def test_aggregate_datasource_is_the_or_of_the_clear_observations_in_both_engines(quality_outputs):
    quality, results = quality_outputs
    for engine in ("numba", "numpy"):
        assert results[engine]["clear"][0, :5].tolist() == [7, 6, 0, 0, 4], engine
    np.testing.assert_array_equal(results["numba"]["clear"], results["numpy"]["clear"])
    bits = np.array([4, 1, 2, 1])
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for t in range(len(DATES)):
        expected |= np.where(quality[t] == CLEAR, bits[t], 0).astype(np.uint8)
    np.testing.assert_array_equal(results["numba"]["clear"], expected)


def test_without_sources_no_datasource_is_written(tmp_path):
    quality = quality_stack(1)
    paths = [write(tmp_path / f"q{t}.tif", quality[t], NONE) for t in range(len(DATES))]
    outs = blend_quality(paths, DATES, EFFICACIES, RULES, *(tmp_path / f"{n}.tif" for n in "qpct"))
    assert set(outs) == {"quality", "provenance", "clearob", "totalob"}
    with pytest.raises(ValueError, match="give both"):
        blend_quality(paths, DATES, EFFICACIES, RULES, *(tmp_path / f"{n}.tif" for n in "qpct"), sources=SOURCES)


def ndvi(inputs):
    return (inputs["nir"] - inputs["red"]) / (inputs["nir"] + inputs["red"])


def run_cube(tmp_path: Path, function: str) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
    context = CubeContext(band_names=("red", "nir"), indexes={"NDVI": (ndvi, {"nir": "nir", "red": "red"})})
    rule = cube_rule(function, {}, context)
    rng = np.random.default_rng(5)
    values = rng.integers(100, 6000, size=(2, len(DATES), HEIGHT, WIDTH)).astype(np.int16)
    quality = quality_stack(7)
    merges = {
        band: [write(tmp_path / f"{band}{t}.tif", values[b, t], -9999) for t in range(len(DATES))]
        for b, band in enumerate(("red", "nir"))
    }
    qualities = [write(tmp_path / f"q{t}.tif", quality[t], NONE) for t in range(len(DATES))]
    results = {}
    for engine in ("numba", "numpy"):
        names = ("red", "nir", *rule.outputs, DATASOURCE)
        outs = {name: tmp_path / engine / f"{name}.tif" for name in names}
        blend_cube(
            merges,
            qualities,
            DATES,
            EFFICACIES,
            RULES,
            rule,
            outs,
            -9999,
            block_size=BLOCK,
            engine=engine,
            sources=SOURCES,
        )
        results[engine] = {DATASOURCE: read(outs[DATASOURCE])}
    return values, quality, results


def test_maxndvi_datasource_is_the_greenest_observations_source_in_both_engines(tmp_path):
    values, quality, results = run_cube(tmp_path, "MAXNDVI")
    np.testing.assert_array_equal(results["numba"][DATASOURCE], results["numpy"][DATASOURCE])
    red, nir = values[0].astype(float), values[1].astype(float)
    scores = np.where(quality == CLEAR, (nir - red) / (nir + red), -np.inf)
    best = np.argmax(scores, axis=0)
    any_clear = (quality == CLEAR).any(axis=0)
    expected = np.where(any_clear, np.array([4, 1, 2, 1])[best], 0)
    np.testing.assert_array_equal(results["numba"][DATASOURCE], expected)
    assert set(np.unique(expected)) == {0, 1, 2, 4}


def test_gmed_datasource_is_the_or_of_the_clear_observations_in_both_engines(tmp_path):
    _, quality, results = run_cube(tmp_path, "GMED")
    np.testing.assert_array_equal(results["numba"][DATASOURCE], results["numpy"][DATASOURCE])
    assert results["numba"][DATASOURCE][0, :5].tolist() == [7, 6, 0, 0, 4]
    expected = datasource_contributed(
        np.where(quality == CLEAR, QualityClass.CLEAR, QualityClass.NOT_CLEAR), np.array([4, 1, 2, 1], dtype=np.uint8)
    )
    np.testing.assert_array_equal(results["numba"][DATASOURCE], expected)
