"""The compiled (numba) blend gives exactly the pixels of the pure numpy blend.

Random stacks of several dtypes (with their extremes), ties in efficacy and date, windows where
every observation is nodata, band nodata under clear quality, and quality dtypes that are
tabulated (uint8, uint16) or not (int32), run through ``blend_band`` / ``blend_quality`` with
``engine="numba"`` and ``engine="numpy"`` on small GeoTIFFs cut into several windows.
"""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cube_assets.raster import composite_kernels
from cube_assets.raster.composite import GDAL_CACHE_BYTES, blend_band, blend_quality
from cube_assets.raster.composite_rules import median_clear
from cube_assets.raster.masks import FMASK4_RULES, LandsatQAPixelRules, QualityClass, ValueMaskRules

HEIGHT, WIDTH, BLOCK = 150, 140, 64  # 3 x 3 windows, the last ones partial
FUNCTIONS = ["LCF", "MED", "AVG"]
# Five observations: 0 and 3 tie on efficacy and date (input order decides), 1 and 4 tie on efficacy.
DATES = [datetime.date(2024, 3, d) for d in (5, 9, 13, 5, 21)]
EFFICACIES = [50.0, 70.0, 20.0, 50.0, 70.0]
# Fmask-like codes where a uint8 code of 2 or 9 is unlisted (not clear) and 255 is nodata.
RULES = ValueMaskRules(clear=(0, 1), not_clear=(2, 3, 4), saturated=(5,), nodata=(255,))
QUALITY_CODES = np.array([0, 1, 1, 0, 2, 3, 4, 5, 9, 255], dtype=np.int64)


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


def read(path: Path) -> tuple[np.ndarray, str]:
    with rasterio.open(path) as src:
        return src.read(1), src.dtypes[0]


def random_values(rng: np.random.Generator, dtype: np.dtype, nodata: float) -> np.ndarray:
    shape = (len(DATES), HEIGHT, WIDTH)
    if dtype.kind == "f":
        values = rng.normal(0, 3000, shape).astype(dtype)
        values[rng.random(shape) < 0.1] = nodata
        return values
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    extremes = np.array([info.min, info.min + 1, info.max - 1, info.max, 0, 1, 40000 if info.max >= 40000 else 7])
    spots = rng.random(shape) < 0.2
    values[spots] = rng.choice(extremes, size=int(spots.sum())).astype(dtype)
    values[rng.random(shape) < 0.1] = nodata  # band nodata, often under clear quality
    return values


def random_quality(rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    quality = rng.choice(QUALITY_CODES, size=(len(DATES), HEIGHT, WIDTH)).astype(dtype)
    quality[:, :BLOCK, :BLOCK] = 255  # the first window is nodata in every observation
    quality[:, BLOCK : 2 * BLOCK, :BLOCK] = 4  # the second window is cloudy everywhere: fallback only
    return quality


def run_both(
    tmp_path: Path, values: np.ndarray, quality: np.ndarray, band_nodata, rules=RULES, functions=FUNCTIONS, **kwargs
):
    """Blend with each engine; return {engine: {function: (pixels, dtype)}}."""
    merges = [write(tmp_path / f"band_{t}.tif", values[t], band_nodata) for t in range(len(DATES))]
    qualities = [write(tmp_path / f"quality_{t}.tif", quality[t], None) for t in range(len(DATES))]
    results = {}
    for engine in ("numba", "numpy"):
        outs = {f: tmp_path / engine / f"{f}.tif" for f in functions}
        blend_band(
            merges,
            qualities,
            DATES,
            EFFICACIES,
            rules,
            functions,
            outs,
            band_nodata,
            block_size=BLOCK,
            engine=engine,
            **kwargs,
        )
        results[engine] = {f: read(path) for f, path in outs.items()}
    return results


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int32", "float32"])
def test_numba_blend_band_matches_numpy(tmp_path, dtype):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(list(dtype.name.encode()))
    nodata = np.nan if dtype.kind == "f" else (0 if dtype.kind == "u" else -9999)
    values = random_values(rng, dtype, nodata)
    results = run_both(tmp_path, values, random_quality(rng, np.dtype(np.uint8)), nodata)
    for function in FUNCTIONS:
        numba_pixels, numba_dtype = results["numba"][function]
        numpy_pixels, numpy_dtype = results["numpy"][function]
        assert numba_dtype == numpy_dtype == dtype.name
        np.testing.assert_array_equal(numba_pixels, numpy_pixels, err_msg=function)
    lcf_pixels = results["numba"]["LCF"][0]
    if dtype.kind == "f":
        assert np.isnan(lcf_pixels[:BLOCK, :BLOCK]).all()
    else:
        assert (lcf_pixels[:BLOCK, :BLOCK] == nodata).all()  # the all-nodata window


def test_numba_blend_band_keeps_uint16_40000_and_extremes(tmp_path):
    values = np.full((len(DATES), HEIGHT, WIDTH), 40000, dtype=np.uint16)
    values[1] = 65535
    values[4] = 65534
    quality = np.zeros(values.shape, dtype=np.uint8)  # everything clear
    results = run_both(tmp_path, values, quality, 0)
    for engine in ("numba", "numpy"):
        pixels = {f: results[engine][f][0] for f in FUNCTIONS}
        assert (pixels["LCF"] == 65534).all()  # observations 1 and 4 tie on efficacy: newer date 4 wins
        assert (pixels["MED"] == 40000).all()  # 40000 x3, 65534, 65535
        assert (pixels["AVG"] == (3 * 40000 + 65535 + 65534) // 5).all()


def test_numba_blend_band_with_untabulated_int32_quality(tmp_path):
    rng = np.random.default_rng(5)
    values = random_values(rng, np.dtype(np.int16), -9999)
    quality = random_quality(rng, np.dtype(np.int32))
    results = run_both(tmp_path, values, quality, -9999, io_threads=1)
    for function in FUNCTIONS:
        np.testing.assert_array_equal(results["numba"][function][0], results["numpy"][function][0], err_msg=function)


@pytest.mark.parametrize(
    ("quality_dtype", "rules", "codes"),
    [
        ("uint8", FMASK4_RULES, [0, 1, 2, 3, 4, 255]),
        ("uint16", LandsatQAPixelRules(confidence=("cloud >= MEDIUM",)), [1, 21824, 21952, 22080, 23826, 24088, 54596]),
    ],
)
def test_numba_blend_quality_matches_numpy(tmp_path, quality_dtype, rules, codes):
    rng = np.random.default_rng(11)
    quality = rng.choice(np.array(codes), size=(len(DATES), HEIGHT, WIDTH)).astype(quality_dtype)
    quality[:, :BLOCK, :BLOCK] = rules.quality_nodata
    paths = [write(tmp_path / f"q_{t}.tif", quality[t], None) for t in range(len(DATES))]
    results = {}
    for engine in ("numba", "numpy"):
        names = ("quality", "provenance", "clearob", "totalob")
        outs = blend_quality(
            paths,
            DATES,
            EFFICACIES,
            rules,
            *(tmp_path / engine / f"{n}.tif" for n in names),
            block_size=BLOCK,
            engine=engine,
            io_threads=3,
        )
        results[engine] = {name: read(path) for name, path in outs.items()}
    for name in results["numpy"]:
        np.testing.assert_array_equal(results["numba"][name][0], results["numpy"][name][0], err_msg=name)
        assert results["numba"][name][1] == results["numpy"][name][1]
    assert (results["numba"]["provenance"][0][:BLOCK, :BLOCK] == -1).all()
    assert set(np.unique(results["numba"]["provenance"][0])) <= {-1, *(d.timetuple().tm_yday for d in DATES)}


def test_numba_blend_quality_rejects_untabulated_quality(tmp_path):
    paths = [write(tmp_path / f"q_{t}.tif", np.zeros((HEIGHT, WIDTH), dtype=np.int32), None) for t in range(2)]
    with pytest.raises(ValueError, match="needs an integer quality band of at most 16 bits, not int32"):
        blend_quality(paths, DATES[:2], EFFICACIES[:2], RULES, *(tmp_path / f"{n}.tif" for n in "abcd"), engine="numba")


def test_numba_engine_refuses_64_bit_integer_bands(tmp_path):
    band = [write(tmp_path / f"b{t}.tif", np.zeros((HEIGHT, WIDTH), dtype=np.int64), -1) for t in range(2)]
    quality = [write(tmp_path / f"q{t}.tif", np.zeros((HEIGHT, WIDTH), dtype=np.uint8), None) for t in range(2)]
    with pytest.raises(ValueError, match="engine 'numba' does not handle int64 bands"):
        blend_band(
            band, quality, DATES[:2], EFFICACIES[:2], RULES, ["MED"], {"MED": tmp_path / "m.tif"}, -1, engine="numba"
        )
    blend_band(band, quality, DATES[:2], EFFICACIES[:2], RULES, ["MED"], {"MED": tmp_path / "m.tif"}, -1)
    assert read(tmp_path / "m.tif")[0].max() == 0  # "auto" took the numpy path


def test_unknown_engine_is_refused(tmp_path):
    band = [write(tmp_path / "b.tif", np.zeros((HEIGHT, WIDTH), dtype=np.int16), -1)]
    quality = [write(tmp_path / "q.tif", np.zeros((HEIGHT, WIDTH), dtype=np.uint8), None)]
    with pytest.raises(ValueError, match="engine 'gpu' is not one of"):
        blend_band(
            band, quality, DATES[:1], EFFICACIES[:1], RULES, ["LCF"], {"LCF": tmp_path / "l.tif"}, -1, engine="gpu"
        )


def test_read_error_in_a_worker_thread_propagates_and_leaves_no_output(tmp_path):
    values = np.arange(HEIGHT * WIDTH, dtype=np.int16).reshape(HEIGHT, WIDTH)
    band = [write(tmp_path / f"b{t}.tif", values, -1) for t in range(3)]
    quality = [write(tmp_path / f"q{t}.tif", np.zeros((HEIGHT, WIDTH), dtype=np.uint8), None) for t in range(3)]
    broken = tmp_path / "b1.tif"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # the lower half is cut off
    out = tmp_path / "out" / "avg.tif"
    with pytest.raises(rasterio.errors.RasterioIOError):
        blend_band(
            band,
            quality,
            DATES[:3],
            EFFICACIES[:3],
            RULES,
            ["AVG"],
            {"AVG": out},
            -1,
            block_size=32,
            engine="numba",
            io_threads=2,
        )
    assert not out.exists() and list(out.parent.iterdir()) == []


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("count", range(0, 13))
def test_sorting_network_sorts_every_zero_one_input(count):
    network = composite_kernels.sorting_network(count)
    assert network.shape == (len(network), 2) and (network[:, 0] < network[:, 1]).all()
    for bits in itertools.product((0, 1), repeat=count):  # 0-1 principle: then it sorts anything
        values = list(bits)
        for i, j in network:
            if values[j] < values[i]:
                values[i], values[j] = values[j], values[i]
        assert values == sorted(values)


@pytest.mark.parametrize("count", [1, 2, 7, 16, 23, 40])
def test_median_kernel_matches_numpy_for_long_stacks(count):
    rng = np.random.default_rng(count)
    values = rng.integers(-32768, 32767, size=(count, 1, 300), dtype=np.int16, endpoint=True)
    classes = rng.choice(np.array([0, 1, 1, 2], dtype=np.uint8), size=values.shape)
    table = np.arange(256, dtype=np.uint8)  # the quality given here is already QualityClass codes
    out = np.empty((1, 300), dtype=np.int16)
    composite_kernels.median_window(
        values,
        classes,
        table,
        0,
        np.ones(count, dtype=np.bool_),
        False,
        np.int16(-9999),
        False,
        True,
        np.int16(32767),
        composite_kernels.sorting_network(count),
        out,
    )
    expected = median_clear(values, classes, -9999)
    np.testing.assert_array_equal(out, expected)
    assert (classes == QualityClass.CLEAR).any()


def test_blend_holds_gdal_block_cache_small_until_finalized(tmp_path):
    """GDAL's default cache (5 % of RAM) would fill with a large tile's decoded blocks."""
    band = [write(tmp_path / f"b{t}.tif", np.ones((HEIGHT, WIDTH), dtype=np.int16), -1) for t in range(2)]
    quality = [write(tmp_path / f"q{t}.tif", np.zeros((HEIGHT, WIDTH), dtype=np.uint8), None) for t in range(2)]
    seen = []

    def finalize(staging: Path, final: Path) -> None:
        seen.append(int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")))
        staging.rename(final)

    blend_band(
        band, quality, DATES[:2], EFFICACIES[:2], RULES, ["LCF"], {"LCF": tmp_path / "l.tif"}, -1, finalize=finalize
    )
    blend_quality(
        quality, DATES[:2], EFFICACIES[:2], RULES, *(tmp_path / f"{n}.tif" for n in "abcd"), finalize=finalize
    )
    assert seen == [GDAL_CACHE_BYTES] * 5 and GDAL_CACHE_BYTES == 8 * 1024 * 1024
    assert rasterio.env.get_gdal_config("GDAL_CACHEMAX") != GDAL_CACHE_BYTES  # restored afterwards
