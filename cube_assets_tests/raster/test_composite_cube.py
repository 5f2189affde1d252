"""Composites over all bands: MAXNDVI, BAP, GMED, by their rules, against geomad, and in both engines."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cube_assets.raster.composite import blend_cube
from cube_assets.raster.composite_cube_rules import (
    CubeContext,
    CubeWindow,
    bap_options,
    cloud_distance,
    cube_rule,
    geomedian,
    geomedian_options,
    quality_mosaic,
)
from cube_assets.raster.masks import QualityClass, ValueMaskRules

CLEAR, CLOUD, NODATA_CLASS = QualityClass.CLEAR, QualityClass.NOT_CLEAR, QualityClass.NODATA
HEIGHT, WIDTH, BLOCK = 100, 90, 40
DATES = [datetime.date(2024, m, d) for m, d in ((1, 5), (3, 9), (6, 13), (6, 13), (8, 21), (11, 2))]
EFFICACIES = [50.0, 70.0, 20.0, 20.0, 70.0, 10.0]
RULES = ValueMaskRules(clear=(0,), not_clear=(2, 3), saturated=(), nodata=(255,))
BANDS = ("blue", "red", "nir", "swir")


def ndvi(inputs):
    return (inputs["nir"] - inputs["red"]) / (inputs["nir"] + inputs["red"])


CONTEXT = CubeContext(
    band_names=BANDS,
    indexes={"NDVI": (ndvi, {"nir": "nir", "red": "red"})},
    period_middle_doy=170,
    period_middle_year=2024,
)


def write(path: Path, array: np.ndarray, nodata) -> Path:
    profile = dict(
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
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
        return src.read(1)


def random_cube(seed: int):
    """(B, T, H, W) int16 reflectances with cloud blobs, band nodata, ties and an all-cloudy window."""
    rng = np.random.default_rng(seed)
    shape = (len(BANDS), len(DATES), HEIGHT, WIDTH)
    values = rng.integers(0, 6000, size=shape).astype(np.int16)
    values[:, 3] = values[:, 2]  # observations 2 and 3 are identical (ties everywhere)
    values[rng.random(shape) < 0.02] = -9999
    quality = np.zeros(shape[1:], dtype=np.uint8)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    for t in range(len(DATES)):
        for _ in range(3):
            r, c = rng.integers(0, HEIGHT), rng.integers(0, WIDTH)
            quality[t][(rows - r) ** 2 + (cols - c) ** 2 < rng.integers(20, 200)] = 2
    quality[rng.random(quality.shape) < 0.05] = 255
    quality[:, :BLOCK, :BLOCK] = 3  # the first window is cloudy in every observation
    return values, quality


def run_both(tmp_path: Path, values, quality, function: str, options=None, block=BLOCK):
    rule = cube_rule(function, options or {}, CONTEXT)
    tmp_path.mkdir(parents=True, exist_ok=True)
    merges = {
        band: [write(tmp_path / f"{band}_{t}.tif", values[b, t], -9999) for t in range(len(DATES))]
        for b, band in enumerate(BANDS)
    }
    qualities = [write(tmp_path / f"q_{t}.tif", quality[t], None) for t in range(len(DATES))]
    results = {}
    for engine in ("numba", "numpy"):
        outs = {name: tmp_path / f"{engine}{block}" / f"{name}.tif" for name in (*BANDS, *rule.outputs)}
        blend_cube(merges, qualities, DATES, EFFICACIES, RULES, rule, outs, -9999, block_size=block, engine=engine)
        results[engine] = {name: read(path) for name, path in outs.items()}
    return results


def assert_engines_equal(results):
    for name, pixels in results["numpy"].items():
        np.testing.assert_array_equal(results["numba"][name], pixels, err_msg=name)


# ----------------------------------------------------------------------------- quality mosaic


def test_quality_mosaic_takes_every_band_from_the_highest_score():
    values = np.array([[[[10]], [[20]], [[30]]], [[[1]], [[2]], [[3]]]], dtype=np.int16)  # (2 bands, 3 obs)
    classes = np.array([[[CLEAR]], [[CLEAR]], [[CLOUD]]], dtype=np.uint8)
    score = np.array([[[0.2]], [[0.5]], [[0.9]]])  # the cloudy one scores best but is not clear
    composite, chosen = quality_mosaic(values, classes, np.array([0, 1, 2]), score, -9999)
    assert composite[:, 0, 0].tolist() == [20, 2]
    assert chosen[0, 0] == 1


def test_quality_mosaic_ties_go_to_the_better_ranked_observation():
    values = np.array([[[[10]], [[20]]]], dtype=np.int16)
    classes = np.full((2, 1, 1), CLEAR, dtype=np.uint8)
    score = np.array([[[0.5]], [[0.5]]])
    assert quality_mosaic(values, classes, np.array([1, 0]), score, -9999)[0][0, 0, 0] == 20


def test_quality_mosaic_is_nodata_without_clear_observations():
    values = np.ones((1, 2, 1, 1), dtype=np.int16)
    classes = np.array([[[CLOUD]], [[NODATA_CLASS]]], dtype=np.uint8)
    composite, chosen = quality_mosaic(values, classes, np.array([0, 1]), np.zeros((2, 1, 1)), -9999)
    assert composite[0, 0, 0] == -9999 and chosen[0, 0] == -1


def test_maxndvi_numba_matches_numpy_and_picks_the_greenest(tmp_path):
    values, quality = random_cube(1)
    results = run_both(tmp_path, values, quality, "MAXNDVI")
    assert_engines_equal(results)
    red, nir = values[1].astype(float), values[2].astype(float)
    clear = (quality == 0) & (values != -9999).all(axis=0)
    scores = np.where(clear, (nir - red) / (nir + red), -np.inf)
    row, col = 70, 60
    best = int(np.argmax(scores[:, row, col]))
    assert results["numba"]["nir"][row, col] == values[2, best, row, col]
    assert results["numba"]["PROVENANCE"][row, col] == DATES[best].timetuple().tm_yday
    assert (results["numba"]["red"][:BLOCK, :BLOCK] == -9999).all()
    assert (results["numba"]["PROVENANCE"][:BLOCK, :BLOCK] == -1).all()


# ----------------------------------------------------------------------------- BAP


def test_bap_prefers_the_observation_nearest_the_target_day(tmp_path):
    values, quality = random_cube(2)
    quality[:] = 0  # every observation clear: only the day of year decides (no haze band)
    values[values == -9999] = 100
    results = run_both(tmp_path, values, quality, "BAP", {"target_doy": 165, "weights": {"haze": 0}})
    assert_engines_equal(results)
    # 165 is nearest 13 June (observations 2 and 3, tied; 2 has the same rank and comes first)
    assert (results["numba"]["DOY"] == 165).all()
    assert (results["numba"]["DOY_DISTANCE"] == 0).all()
    np.testing.assert_array_equal(results["numba"]["nir"], values[2, 2])
    assert (results["numba"]["NUM"] == len(DATES)).all()


def test_bap_numba_matches_numpy_with_clouds_haze_and_all_cloudy_pixels(tmp_path):
    values, quality = random_cube(3)
    options = {"haze_band": "blue", "max_cloud_distance": 12, "weights": {"cloud": 1.0, "haze": 0.5}}
    results = run_both(tmp_path, values, quality, "BAP", options)
    assert_engines_equal(results)
    assert np.isnan(results["numba"]["SCORE"][:BLOCK, :BLOCK]).all()
    assert (results["numba"]["NUM"][:BLOCK, :BLOCK] == 0).all()
    score = results["numba"]["SCORE"]
    assert np.nanmin(score) >= 0 and np.nanmax(score) <= 1


def test_bap_pixels_do_not_depend_on_the_window_size(tmp_path):
    values, quality = random_cube(4)
    options = {"max_cloud_distance": 15, "weights": {"cloud": 1.0}}
    small = run_both(tmp_path / "a", values, quality, "BAP", options, block=32)
    whole = run_both(tmp_path / "b", values, quality, "BAP", options, block=128)
    for name in small["numba"]:
        np.testing.assert_array_equal(small["numba"][name], whole["numba"][name], err_msg=name)


def test_cloud_distance_is_euclidean_and_capped():
    classes = np.full((1, 1, 9), CLEAR, dtype=np.uint8)
    classes[0, 0, 0] = CLOUD
    assert cloud_distance(classes, 5)[0, 0].tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5]


REAL_60M = "GRANULE/L2A_T29UNU_A038058_20221005T115407/IMG_DATA/R60m/T29UNU_20221005T115411_{}_60m.jp2"
REAL_OFFSETS = ((0, 320), (160, 640), (320, 160), (800, 0), (0, 0))  # 0 % to 90 % cloud or shadow


def real_clouds(safe: Path, size: int = 200):
    """Windows of the real T29UNU 60 m SCL as observations: their classes and B02 values, (T, size, size)."""
    from cube_assets.raster.masks import SCL_RULES, classify_quality

    with rasterio.open(safe / REAL_60M.format("SCL")) as scl, rasterio.open(safe / REAL_60M.format("B02")) as b02:
        windows = [((row, row + size), (col, col + size)) for row, col in REAL_OFFSETS]
        classes = np.stack([classify_quality(scl.read(1, window=w), SCL_RULES) for w in windows])
        blue = np.stack([b02.read(1, window=w) for w in windows])
    return classes, blue


@pytest.mark.parametrize("cap", [7, 50])
def test_compiled_cloud_distance_equals_scipy_on_real_clouds(t29unu_safe, cap):
    classes, _ = real_clouds(t29unu_safe)
    rows, cols = slice(cap, 200 - cap + 3), slice(cap - 5, 200 - cap)
    compiled = cloud_distance(classes, cap, rows, cols, compiled=True)
    exact = cloud_distance(classes, cap, rows, cols)
    scored = (classes[:, rows, cols] == CLEAR).any(axis=2)  # the rows with a CLEAR pixel
    np.testing.assert_array_equal(compiled[scored], exact[scored])
    assert (compiled[~scored] == cap).all() and scored.mean() > 0.5
    between = (exact > 0) & (exact < cap)
    assert between.sum() > 1000 and np.unique(exact[between]).size > cap  # not only 0 and the cap


def test_compiled_cloud_distance_skips_rows_without_clear_pixels():
    classes = np.full((2, 5, 5), CLOUD, dtype=np.uint8)
    classes[0, 0, 0] = CLEAR  # outside the window
    classes[1, 2, 2] = CLEAR
    distance = cloud_distance(classes, 3, slice(1, 4), slice(1, 4), compiled=True)
    assert (distance[0] == 3).all()  # never scored, so not computed
    assert distance[1].tolist() == [[3, 3, 3], [0, 1, 0], [3, 3, 3]]


def test_bap_engines_score_real_clouds_and_haze_alike(t29unu_safe):
    from cube_assets.raster.composite_cube_rules import _bap_mosaic_kernel, bap_scores

    classes, blue = real_clouds(t29unu_safe, size=160)
    classes[:, :10, :10] = CLOUD  # no observation to choose
    count = classes.shape[0]
    window = CubeWindow(
        values=np.stack([blue, blue[::-1]]).astype(np.int16),
        classes=classes,
        band_names=("blue", "red"),
        order=np.arange(count),
        days=np.array([20, 60, 110, 170, 300], dtype=np.int16),
        years=np.full(count, 2024),
        nodata=-9999,
        cloud_distance=cloud_distance(classes, 30),
        view_zenith=np.array([1.0, np.nan, 5.0, 9.0, 0.0]),
    )
    context = CubeContext(band_names=("blue", "red"), period_middle_doy=100, period_middle_year=2024)
    options = {"haze_band": "blue", "haze_max": 800, "max_cloud_distance": 30}
    options["weights"] = {"cloud": 0.7, "haze": 0.4, "view": 0.2, "year": 0.1}
    bap = bap_options(options, ("blue", "red"))
    exact = bap_scores(window, bap, 100, 2024)
    composite, chosen, picked = _bap_mosaic_kernel(window, bap, 100, 2024)
    expected_composite, expected_chosen = quality_mosaic(window.values, classes, window.order, exact, -9999)
    np.testing.assert_array_equal(chosen, expected_chosen)
    np.testing.assert_array_equal(composite, expected_composite)
    some = chosen >= 0
    np.testing.assert_array_equal(picked[some], np.take_along_axis(exact, chosen[np.newaxis], axis=0)[0][some])
    assert np.isnan(picked[~some]).all() and not some[:10, :10].any()
    assert np.unique(picked[some]).size > 5000  # scores from many distances and haze values
    rule = cube_rule("BAP", options, context)
    by_numpy, compiled = rule.numpy(window), rule.kernel(window)
    for name, pixels in by_numpy.items():
        np.testing.assert_array_equal(compiled[name], pixels, err_msg=name)


def test_bap_options_are_checked():
    with pytest.raises(ValueError, match="target_doy"):
        bap_options({"target_doy": 400}, BANDS)
    with pytest.raises(ValueError, match="haze_band 'B02'"):
        bap_options({"haze_band": "B02"}, BANDS)
    with pytest.raises(ValueError, match="weights.cloud"):
        bap_options({"weights": {"cloud": -1}}, BANDS)
    with pytest.raises(ValueError, match="unknown options"):
        bap_options({"doy": 3}, BANDS)


# ----------------------------------------------------------------------------- GMED


def test_gmed_numba_matches_numpy_with_mads(tmp_path):
    values, quality = random_cube(5)
    results = run_both(tmp_path, values, quality, "GMED", {"mads": ["SMAD", "EMAD", "BCMAD"]})
    assert_engines_equal(results)
    assert (results["numba"]["nir"][:BLOCK, :BLOCK] == -9999).all()
    assert np.isnan(results["numba"]["EMAD"][:BLOCK, :BLOCK]).all()


def test_gmed_of_one_observation_is_that_observation():
    values = np.array([[[[7]], [[900]]], [[[3]], [[800]]]], dtype=np.int16)  # 2 bands, 2 obs
    clear = np.array([[[True]], [[False]]])
    assert geomedian(values, clear, 1e-2, 100)[:, 0, 0].tolist() == [7.0, 3.0]


def test_gmed_equals_geomad_within_a_tenth_of_a_unit():
    geomad = pytest.importorskip("geomad")
    rng = np.random.default_rng(9)
    values = rng.normal(2000, 600, size=(4, 10, 30, 30)).astype(np.float32)
    clear = rng.random((10, 30, 30)) < 0.8
    clear[:, 0, 0] = [True, True] + [False] * 8  # two observations: the midpoint
    ours = geomedian(values, clear, 1e-4, 5000)
    stacked = np.where(clear[np.newaxis], values, np.nan).transpose(2, 3, 0, 1).copy()  # (H, W, B, T)
    theirs = geomad.nangeomedian_pcm(stacked, eps=1e-4, maxiters=5000, num_threads=1).transpose(2, 0, 1)
    # With two points every point between them is a geometric median: geomad starts each pixel
    # from its neighbour's result, this project from the mean (the midpoint); compare the rest.
    unique = clear.sum(axis=0) >= 3
    assert np.abs(ours - theirs)[:, unique].max() < 0.1
    np.testing.assert_allclose(ours[:, 0, 0], values[:, :2, 0, 0].astype(np.float64).mean(axis=1))
    emad = cube_rule("GMED", {"mads": ["EMAD", "SMAD", "BCMAD"]}, CONTEXT)
    assert emad.outputs.keys() == {"EMAD", "SMAD", "BCMAD"}
    theirs_emad = geomad.emad_pcm(stacked, theirs.transpose(1, 2, 0).astype(np.float32).copy(), num_threads=1)
    from cube_assets.raster.composite_cube_rules import geomedian_deviations

    ours_emad = geomedian_deviations(values, clear, ours, ["EMAD"])["EMAD"]
    np.testing.assert_allclose(ours_emad[unique], theirs_emad[unique], rtol=1e-3, atol=0.1)


def test_gmed_options_are_checked():
    with pytest.raises(ValueError, match="mads"):
        geomedian_options({"mads": ["XMAD"]})
    with pytest.raises(ValueError, match="eps"):
        geomedian_options({"eps": 0})


def test_cube_window_clear_ignores_nodata_and_cloud():
    window = CubeWindow(
        values=np.zeros((1, 2, 1, 1), dtype=np.int16),
        classes=np.array([[[CLEAR]], [[CLOUD]]], dtype=np.uint8),
        band_names=("b",),
        order=np.array([0, 1]),
        days=np.array([1, 2], dtype=np.int16),
        years=np.array([2024, 2024]),
        nodata=-9999,
    )
    assert window.clear[:, 0, 0].tolist() == [True, False]


# ----------------------------------------------------------------------------- the drivers


def test_blend_cube_refuses_an_output_without_a_path(tmp_path):
    from cube_assets.errors import InvalidCubeConfig

    values, quality = random_cube(6)
    merges = {
        band: [write(tmp_path / f"{band}_{t}.tif", values[b, t], -9999) for t in range(2)]
        for b, band in enumerate(BANDS)
    }
    qualities = [write(tmp_path / f"q_{t}.tif", quality[t], None) for t in range(2)]
    rule = cube_rule("BAP", {}, CONTEXT)
    outs = {band: tmp_path / f"{band}.tif" for band in BANDS}  # no SCORE, DOY, ...
    with pytest.raises(InvalidCubeConfig, match="SCORE"):
        blend_cube(merges, qualities, DATES[:2], EFFICACIES[:2], RULES, rule, outs, -9999)
    assert not list(tmp_path.glob("B0*.tif")) and not (tmp_path / "blue.tif").exists()


def test_identity_cube_stacks_the_merges_in_date_order(tmp_path):
    from cube_assets.raster.composite import identity_cube

    layers = [np.full((HEIGHT, WIDTH), value, dtype=np.int16) for value in (30, 10, 20)]
    paths = [write(tmp_path / f"m{i}.tif", layer, -9999) for i, layer in enumerate(layers)]
    dates = [datetime.date(2024, 1, 30), datetime.date(2024, 1, 10), datetime.date(2024, 1, 20)]
    out = identity_cube(paths, dates, tmp_path / "IDT.tif", -9999, block_size=BLOCK)
    with rasterio.open(out) as src:
        assert src.count == 3
        assert list(src.descriptions) == ["2024-01-10", "2024-01-20", "2024-01-30"]
        assert src.read()[:, 5, 5].tolist() == [10, 20, 30]
        assert src.nodata == -9999
