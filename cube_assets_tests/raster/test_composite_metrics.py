"""Spectral-temporal metrics: Pnn, MIN, MAX, RANGE, IQR, STD, by their rules and in both engines."""

from __future__ import annotations

import numpy as np
import pytest

from cube_assets.raster.composite_metrics import iqr_clear, percentiles_clear, range_clear, std_clear
from cube_assets.raster.composite_rules import composite_rule, is_band_function, median_clear
from cube_assets.raster.masks import QualityClass
from cube_assets_tests.raster.test_composite_engines import (
    BLOCK,
    random_quality,
    random_values,
    run_both,
)

CLEAR, CLOUD, NODATA_CLASS = QualityClass.CLEAR, QualityClass.NOT_CLEAR, QualityClass.NODATA
METRICS = ["P10", "P25", "P50", "P75", "P90", "P7", "MIN", "MAX", "RANGE", "IQR", "STD", "MED"]


def column(*pairs):
    """A (T, 1, 1) stack of int16 values and classes from (value, class) pairs."""
    values = np.array([[[v]] for v, _ in pairs], dtype=np.int16)
    classes = np.array([[[c]] for _, c in pairs], dtype=np.uint8)
    return values, classes


def test_percentile_interpolates_linearly_between_order_statistics():
    values, classes = column((10, CLEAR), (20, CLEAR), (40, CLEAR), (1000, CLOUD))
    # n = 3 clear: P25 -> rank 0.5 -> 15; P75 -> rank 1.5 -> 30; P90 -> rank 1.8 -> 36
    assert percentiles_clear(values, classes, (25, 75, 90), -9999)[:, 0, 0].tolist() == [15, 30, 36]


def test_integer_percentile_truncates_toward_zero():
    values, classes = column((-7, CLEAR), (0, CLEAR))
    # P25 of [-7, 0]: -7 * 0.75 + 0 * 0.25 = -5.25 -> -5 (toward zero, not floor)
    assert percentiles_clear(values, classes, (25,), -9999)[0, 0, 0] == -5


@pytest.mark.parametrize("dtype", ["int16", "uint16", "float32"])
def test_p50_equals_med(dtype):
    rng = np.random.default_rng(5)
    values = rng.integers(0, 10000, size=(6, 30, 30)).astype(dtype)
    classes = rng.choice([CLEAR, CLOUD, NODATA_CLASS], size=values.shape).astype(np.uint8)
    p50 = composite_rule("P50").numpy(values, classes, list(range(6)), 0)
    np.testing.assert_array_equal(p50, median_clear(values, classes, 0))


def test_float_percentiles_match_numpy_percentile():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1000, size=(9, 10, 10)).astype(np.float32)
    classes = np.full(values.shape, CLEAR, dtype=np.uint8)
    got = percentiles_clear(values, classes, (10, 25, 90), np.nan)
    expected = np.percentile(values.astype(np.float64), [10, 25, 90], axis=0).astype(np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_min_max_range_iqr_ignore_cloudy_observations():
    values, classes = column((100, CLEAR), (-5000, CLOUD), (300, CLEAR), (9000, CLOUD), (200, CLEAR), (0, NODATA_CLASS))
    order = list(range(6))
    assert composite_rule("MIN").numpy(values, classes, order, -9999)[0, 0] == 100
    assert composite_rule("MAX").numpy(values, classes, order, -9999)[0, 0] == 300
    assert range_clear(values, classes, -9999)[0, 0] == 200
    assert iqr_clear(values, classes, -9999)[0, 0] == 250 - 150


def test_range_saturates_at_the_dtype_limit():
    values, classes = column((-30000, CLEAR), (30000, CLEAR))
    assert range_clear(values, classes, -9999)[0, 0] == 32767


def test_std_is_the_population_deviation_truncated():
    values, classes = column(
        (2, CLEAR), (4, CLEAR), (4, CLEAR), (4, CLEAR), (5, CLEAR), (5, CLEAR), (7, CLEAR), (9, CLEAR)
    )
    assert std_clear(values, classes, -9999)[0, 0] == 2  # exactly 2.0
    values, classes = column((0, CLEAR), (3, CLEAR), (9999, CLOUD))
    assert std_clear(values, classes, -9999)[0, 0] == 1  # 1.5 truncated


def test_metrics_are_nodata_without_clear_observations():
    values, classes = column((100, CLOUD), (200, NODATA_CLASS))
    for name in ["P25", "MIN", "MAX", "RANGE", "IQR", "STD"]:
        assert composite_rule(name).numpy(values, classes, [0, 1], -9999)[0, 0] == -9999, name


def test_function_names():
    assert all(is_band_function(n) for n in ["P0", "P05", "P5", "P99", "P100", "STD", "IQR", "RANGE"])
    assert not any(is_band_function(n) for n in ["P101", "P", "P-1", "p25", "GMED"])
    with pytest.raises(ValueError, match="P101"):
        composite_rule("P101")


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int32", "float32"])
def test_numba_metrics_match_numpy(tmp_path, dtype):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(list(dtype.name.encode()) + [7])
    nodata = np.nan if dtype.kind == "f" else (0 if dtype.kind == "u" else -9999)
    values = random_values(rng, dtype, nodata)
    values[:2, 70:75, 70:75] = values[2, 70:75, 70:75]  # ties across observations
    results = run_both(tmp_path, values, random_quality(rng, np.dtype(np.uint8)), nodata, functions=METRICS)
    for function in METRICS:
        numba_pixels, numba_dtype = results["numba"][function]
        numpy_pixels, numpy_dtype = results["numpy"][function]
        assert numba_dtype == numpy_dtype == dtype.name
        np.testing.assert_array_equal(numba_pixels, numpy_pixels, err_msg=function)
        first = numba_pixels[:BLOCK, :BLOCK]  # every observation nodata there
        assert (np.isnan(first) if dtype.kind == "f" else first == nodata).all(), function
    np.testing.assert_array_equal(results["numba"]["P50"][0], results["numba"]["MED"][0])
