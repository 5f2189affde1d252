"""Blend: ranking, LCF / MED / AVG, provenance, counts, and the windowed GeoTIFF drivers."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cube_assets.errors import InvalidCubeConfig, InvalidRaster
from cube_assets.raster.codecs import DEFAULT_COMPRESSION
from cube_assets.raster.composite import blend_band, blend_quality
from cube_assets.raster.composite_rules import (
    clear_observation_count,
    composite_quality,
    lcf,
    mean_clear,
    median_clear,
    provenance,
    rank_observations,
    total_observation_count,
)
from cube_assets.raster.masks import FMASK4_RULES, QualityClass, classify_quality, propagate_spectral_nodata

N, C, X, S = QualityClass.NODATA, QualityClass.CLEAR, QualityClass.NOT_CLEAR, QualityClass.SATURATED

# ----------------------------------------------------------------------------- worked example (verbatim)

DATES = [datetime.date(2024, 1, 10), datetime.date(2024, 1, 15)]
EFFICACIES = [50.0, 83.0]
FMASK = np.array(
    [
        [[0, 0, 2, 4], [0, 1, 1, 4], [0, 2, 2, 4]],
        [[0, 0, 255, 255], [0, 1, 1, 1], [0, 0, 0, 0]],
    ],
    dtype=np.uint8,
)
NIR = np.array(
    [
        [[702, 876, 7000, 9000], [687, 444, 421, 9113], [1241, 1548, 2111, 1987]],
        [[854, 756, 9800, 9454], [945, 400, 402, 422], [869, 975, 788, 799]],
    ],
    dtype=np.int16,
)
LCF_NIR = [[854, 756, 7000, 9000], [945, 400, 402, 422], [869, 975, 788, 799]]
LCF_PROVENANCE = [[15, 15, 10, 10], [15, 15, 15, 15], [15, 15, 15, 15]]
LCF_QUALITY = [[0, 0, 2, 4], [0, 1, 1, 1], [0, 0, 0, 0]]
MED_NIR = [[778, 816, -9999, -9999], [816, 422, 411, 422], [1055, 975, 788, 799]]


@pytest.fixture
def example_classes() -> np.ndarray:
    return classify_quality(FMASK, FMASK4_RULES)


def test_worked_example_ranks_higher_efficacy_first():
    assert rank_observations(EFFICACIES, DATES) == [1, 0]


def test_worked_example_lcf_nir(example_classes):
    composite, _ = lcf(NIR, example_classes, rank_observations(EFFICACIES, DATES), -9999)
    assert composite.dtype == np.int16
    assert composite.tolist() == LCF_NIR


def test_worked_example_provenance(example_classes):
    _, chosen = lcf(NIR, example_classes, rank_observations(EFFICACIES, DATES), -9999)
    days = [d.timetuple().tm_yday for d in DATES]
    result = provenance(chosen, days)
    assert result.dtype == np.int16
    assert result.tolist() == LCF_PROVENANCE


def test_worked_example_quality(example_classes):
    _, chosen = lcf(NIR, example_classes, rank_observations(EFFICACIES, DATES), -9999)
    assert composite_quality(FMASK, chosen, 255).tolist() == LCF_QUALITY


def test_worked_example_med_nir(example_classes):
    assert median_clear(NIR, example_classes, -9999).tolist() == MED_NIR


def test_worked_example_counts(example_classes):
    assert clear_observation_count(example_classes).tolist() == [[2, 2, 0, 0], [2, 2, 2, 1], [2, 1, 1, 1]]
    assert total_observation_count(example_classes).tolist() == [[2, 2, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]


# ----------------------------------------------------------------------------- ranking


def test_rank_ties_go_to_newer_date():
    dates = [datetime.date(2024, 1, 5), datetime.date(2024, 1, 20), datetime.date(2024, 1, 12)]
    assert rank_observations([70.0, 70.0, 70.0], dates) == [1, 2, 0]


def test_rank_efficacy_beats_date():
    dates = [datetime.date(2024, 1, 5), datetime.date(2024, 1, 20)]
    assert rank_observations([70.5, 70.0], dates) == [0, 1]


def test_rank_rejects_nan_efficacy():
    with pytest.raises(ValueError, match="efficacy nan of observation 1"):
        rank_observations([1.0, float("nan")], DATES)


# ----------------------------------------------------------------------------- LCF


def stack(*rows):
    """(T, 1, n) arrays from T lists of n pixels."""
    return np.array([[row] for row in rows])


def test_lcf_prefers_clear_over_better_ranked_cloudy():
    values = stack([10], [20], [30]).astype(np.int16)
    classes = stack([X], [S], [C]).astype(np.uint8)
    composite, chosen = lcf(values, classes, [0, 1, 2], -1)
    assert composite.tolist() == [[30]]
    assert chosen.tolist() == [[2]]


def test_lcf_falls_back_to_first_non_nodata_in_rank_order():
    values = stack([10], [20], [30]).astype(np.int16)
    classes = stack([N], [X], [S]).astype(np.uint8)
    composite, chosen = lcf(values, classes, [2, 0, 1], -1)
    assert composite.tolist() == [[30]]
    assert chosen.tolist() == [[2]]


def test_lcf_is_nodata_where_every_observation_is_nodata():
    values = stack([10], [20]).astype(np.int16)
    classes = stack([N], [N]).astype(np.uint8)
    composite, chosen = lcf(values, classes, [0, 1], -9999)
    assert composite.tolist() == [[-9999]]
    assert chosen.tolist() == [[-1]]
    assert provenance(chosen, [10, 15]).tolist() == [[-1]]
    assert composite_quality(stack([255], [255]).astype(np.uint8), chosen, 255).tolist() == [[255]]


def test_lcf_rejects_order_that_is_not_a_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        lcf(NIR, classify_quality(FMASK, FMASK4_RULES), [0, 0], -9999)


def test_lcf_rejects_nodata_outside_dtype():
    values = stack([40000]).astype(np.uint16)
    with pytest.raises(InvalidRaster, match="nodata -9999 cannot be stored in uint16"):
        lcf(values, stack([C]).astype(np.uint8), [0], -9999)


def test_composites_reject_mismatched_shapes():
    with pytest.raises(InvalidRaster, match=r"quality classes have shape \(1, 3, 4\)"):
        median_clear(NIR, classify_quality(FMASK[:1], FMASK4_RULES), -9999)


# ----------------------------------------------------------------------------- MED / AVG


def test_median_ignores_cloudy_observations():
    values = stack([100], [5000], [300], [200]).astype(np.int16)
    classes = stack([C], [X], [C], [C]).astype(np.uint8)
    assert median_clear(values, classes, -9999).tolist() == [[200]]


def test_median_of_even_count_truncates_toward_zero():
    values = stack([-3, 3], [-4, 4]).astype(np.int16)
    classes = stack([C, C], [C, C]).astype(np.uint8)
    assert median_clear(values, classes, -9999).tolist() == [[-3, 3]]


def test_mean_truncates_toward_zero():
    values = stack([-3, 3], [-4, 4], [-4, 4]).astype(np.int16)
    classes = np.full(values.shape, C, dtype=np.uint8)
    assert mean_clear(values, classes, -9999).tolist() == [[-3, 3]]


def test_mean_ignores_cloudy_and_is_nodata_without_clear():
    values = stack([100, 1], [5000, 2], [301, 3]).astype(np.int16)
    classes = stack([C, X], [X, S], [C, N]).astype(np.uint8)
    assert mean_clear(values, classes, -9999).tolist() == [[200, -9999]]


def test_uint16_40000_never_wraps_in_lcf_med_avg():
    values = stack([40000, 65535, 40000], [40000, 65534, 40002], [40001, 65533, 40001]).astype(np.uint16)
    classes = np.full(values.shape, C, dtype=np.uint8)
    classes[2, 0, 2] = X  # third pixel: two clear values 40000 and 40002
    assert lcf(values, classes, [0, 1, 2], 0)[0].tolist() == [[40000, 65535, 40000]]
    assert median_clear(values, classes, 0).tolist() == [[40000, 65534, 40001]]
    assert mean_clear(values, classes, 0).tolist() == [[40000, 65534, 40001]]
    assert median_clear(values, classes, 0).dtype == np.uint16


def test_int16_extremes_survive_median_and_mean():
    values = stack([32767, -32768], [32765, -32767]).astype(np.int16)
    classes = np.full(values.shape, C, dtype=np.uint8)
    assert median_clear(values, classes, 0).tolist() == [[32766, -32767]]
    assert mean_clear(values, classes, 0).tolist() == [[32766, -32767]]


def test_median_matches_numpy_median_on_random_clear_subsets():
    rng = np.random.default_rng(7)
    values = rng.integers(0, 65536, size=(7, 20, 20), dtype=np.uint16)
    classes = rng.choice(np.array([N, C, X], dtype=np.uint8), size=values.shape, p=[0.1, 0.6, 0.3])
    result = median_clear(values, classes, 0)
    for row in range(20):
        for col in range(20):
            clear = values[:, row, col][classes[:, row, col] == C].astype(np.int64)
            expected = 0 if clear.size == 0 else int(np.median(clear))  # int() truncates the .5
            assert result[row, col] == expected


def test_float_median_and_mean_are_not_truncated():
    values = stack([1.0], [2.0]).astype(np.float32)
    classes = np.full(values.shape, C, dtype=np.uint8)
    assert median_clear(values, classes, np.nan).tolist() == [[1.5]]
    assert mean_clear(values, classes, np.nan).tolist() == [[1.5]]


def test_counts_saturate_at_255():
    classes = np.full((300, 1, 1), C, dtype=np.uint8)
    assert clear_observation_count(classes).tolist() == [[255]]
    assert total_observation_count(classes).dtype == np.uint8


# ----------------------------------------------------------------------------- windowed drivers

HEIGHT, WIDTH, T = 700, 600, 3
BAND_NODATA = -9999
PROFILE = dict(
    driver="GTiff",
    width=WIDTH,
    height=HEIGHT,
    count=1,
    crs="EPSG:32723",
    transform=from_origin(500000, 8000000, 10, 10),
)
SYNTH_DATES = [datetime.date(2024, 2, 1), datetime.date(2024, 2, 9), datetime.date(2024, 2, 17)]
SYNTH_EFFICACIES = [40.0, 75.0, 75.0]


def write_tif(path: Path, array: np.ndarray, nodata) -> Path:
    with rasterio.open(path, "w", dtype=array.dtype.name, nodata=nodata, **PROFILE) as dst:
        dst.write(array, 1)
    return path


@pytest.fixture
def synthetic_period(tmp_path):
    rng = np.random.default_rng(42)
    nir = rng.integers(-2000, 12000, size=(T, HEIGHT, WIDTH), dtype=np.int16)
    nir[rng.random(nir.shape) < 0.05] = BAND_NODATA
    fmask = rng.choice(np.array([0, 1, 2, 3, 4, 255], dtype=np.uint8), size=(T, HEIGHT, WIDTH))
    inputs = tmp_path / "in"
    inputs.mkdir()
    merges = [write_tif(inputs / f"nir_{i}.tif", nir[i], BAND_NODATA) for i in range(T)]
    qualities = [write_tif(inputs / f"fmask_{i}.tif", fmask[i], 255) for i in range(T)]
    return nir, fmask, merges, qualities


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile


def test_blend_band_windows_match_whole_array_functions(synthetic_period, tmp_path):
    nir, fmask, merges, qualities = synthetic_period
    out = tmp_path / "out"
    out_paths = {name: out / f"nir_{name}.tif" for name in ("LCF", "MED", "AVG")}
    result = blend_band(
        merges,
        qualities,
        SYNTH_DATES,
        SYNTH_EFFICACIES,
        FMASK4_RULES,
        functions=["LCF", "MED", "AVG"],
        out_paths=out_paths,
        band_nodata=BAND_NODATA,
        block_size=256,
    )
    assert result == out_paths
    classes = propagate_spectral_nodata(classify_quality(fmask, FMASK4_RULES), [nir], BAND_NODATA, N)
    order = rank_observations(SYNTH_EFFICACIES, SYNTH_DATES)
    expected = {
        "LCF": lcf(nir, classes, order, BAND_NODATA)[0],
        "MED": median_clear(nir, classes, BAND_NODATA),
        "AVG": mean_clear(nir, classes, BAND_NODATA),
    }
    for name, path in out_paths.items():
        pixels, profile = read(path)
        np.testing.assert_array_equal(pixels, expected[name], err_msg=name)
        assert (profile["dtype"], profile["nodata"], profile["blockxsize"], profile["compress"]) == (
            "int16",
            BAND_NODATA,
            512,
            DEFAULT_COMPRESSION.lower(),
        )
    assert sorted(p.name for p in out.iterdir()) == ["nir_AVG.tif", "nir_LCF.tif", "nir_MED.tif"]


def test_blend_band_never_chooses_spectral_nodata(synthetic_period, tmp_path):
    nir, fmask, merges, qualities = synthetic_period
    out = tmp_path / "lcf.tif"
    blend_band(merges, qualities, SYNTH_DATES, SYNTH_EFFICACIES, FMASK4_RULES, ["LCF"], {"LCF": out}, BAND_NODATA)
    pixels, _ = read(out)
    usable = (nir != BAND_NODATA) & (fmask != 255)
    has_usable = usable.any(axis=0)
    assert np.all(pixels[~has_usable] == BAND_NODATA)
    assert not np.any(pixels[has_usable] == BAND_NODATA)


def test_blend_quality_windows_match_whole_array_functions(synthetic_period, tmp_path):
    _, fmask, _, qualities = synthetic_period
    out = tmp_path / "out"
    paths = blend_quality(
        qualities,
        SYNTH_DATES,
        SYNTH_EFFICACIES,
        {"preset": "fmask4"},
        out_quality_path=out / "q.tif",
        out_provenance_path=out / "prov.tif",
        out_clearob_path=out / "clear.tif",
        out_totalob_path=out / "total.tif",
        block_size=256,
    )
    classes = classify_quality(fmask, FMASK4_RULES)
    _, chosen = lcf(fmask, classes, rank_observations(SYNTH_EFFICACIES, SYNTH_DATES), 255)
    expected = {
        "quality": (composite_quality(fmask, chosen, 255), "uint8", 255),
        "provenance": (provenance(chosen, [32, 40, 48]), "int16", -1),
        "clearob": (clear_observation_count(classes), "uint8", None),
        "totalob": (total_observation_count(classes), "uint8", None),
    }
    assert set(paths) == set(expected)
    for name, (array, dtype, nodata) in expected.items():
        pixels, profile = read(paths[name])
        np.testing.assert_array_equal(pixels, array, err_msg=name)
        assert (profile["dtype"], profile["nodata"], profile["tiled"]) == (dtype, nodata, True)
    provenance_pixels, _ = read(paths["provenance"])
    assert set(np.unique(provenance_pixels)) <= {-1, 32, 40, 48}


def test_blend_band_calls_finalize_instead_of_moving(synthetic_period, tmp_path):
    _, _, merges, qualities = synthetic_period
    calls = []

    def finalize(tmp: Path, final: Path) -> None:
        calls.append((tmp.name, final))
        assert tmp.exists() and tmp != final
        final.write_bytes(b"COG:" + tmp.read_bytes()[:4])

    final = tmp_path / "out" / "nir_MED.tif"
    blend_band(
        merges,
        qualities,
        SYNTH_DATES,
        SYNTH_EFFICACIES,
        FMASK4_RULES,
        ["MED"],
        {"MED": final},
        BAND_NODATA,
        finalize=finalize,
    )
    assert len(calls) == 1 and calls[0][1] == final
    assert final.read_bytes().startswith(b"COG:II")  # little-endian TIFF header of the staged file
    assert [p.name for p in final.parent.iterdir()] == ["nir_MED.tif"]


def test_blend_band_rejects_input_on_another_grid_naming_the_file(synthetic_period, tmp_path):
    nir, _, merges, qualities = synthetic_period
    odd = tmp_path / "odd.tif"
    with rasterio.open(odd, "w", **{**PROFILE, "width": WIDTH - 1}, dtype="uint8") as dst:
        dst.write(np.zeros((HEIGHT, WIDTH - 1), dtype=np.uint8), 1)
    out = tmp_path / "out" / "nir_LCF.tif"
    with pytest.raises(InvalidRaster, match=r"odd\.tif: shape 700x599 differs"):
        blend_band(
            merges,
            [*qualities[:2], odd],
            SYNTH_DATES,
            SYNTH_EFFICACIES,
            FMASK4_RULES,
            ["LCF"],
            {"LCF": out},
            BAND_NODATA,
        )
    assert not out.exists()


def test_blend_band_rejects_unknown_function(synthetic_period, tmp_path):
    _, _, merges, qualities = synthetic_period
    with pytest.raises(InvalidCubeConfig, match="'MAXIMUM' is unknown"):
        blend_band(
            merges,
            qualities,
            SYNTH_DATES,
            SYNTH_EFFICACIES,
            FMASK4_RULES,
            ["MAXIMUM"],
            {"MAXIMUM": tmp_path / "x.tif"},
            BAND_NODATA,
        )


def test_blend_band_leaves_no_file_when_writing_fails(synthetic_period, tmp_path):
    _, _, merges, qualities = synthetic_period
    out = tmp_path / "out"

    def broken_finalize(tmp: Path, final: Path) -> None:
        raise RuntimeError("COG conversion failed")

    with pytest.raises(RuntimeError, match="COG conversion failed"):
        blend_band(
            merges,
            qualities,
            SYNTH_DATES,
            SYNTH_EFFICACIES,
            FMASK4_RULES,
            ["AVG"],
            {"AVG": out / "avg.tif"},
            BAND_NODATA,
            finalize=broken_finalize,
        )
    assert list(out.iterdir()) == []


def test_blend_quality_finalizes_its_outputs_in_threads_and_cleans_up_when_one_fails(synthetic_period, tmp_path):
    _, _, _, qualities = synthetic_period
    out = tmp_path / "out"
    names = ("quality", "PROVENANCE", "CLEAROB", "TOTALOB")
    threads = {}

    def finalize(tmp: Path, final: Path) -> None:
        threads[final.stem] = threading.current_thread().name
        if final.stem == "CLEAROB":
            raise RuntimeError("COG conversion of CLEAROB failed")
        tmp.rename(final)

    with pytest.raises(RuntimeError, match="CLEAROB failed"):
        blend_quality(
            qualities,
            SYNTH_DATES,
            SYNTH_EFFICACIES,
            FMASK4_RULES,
            *(out / f"{n}.tif" for n in names),
            finalize=finalize,
        )
    assert set(threads) == set(names)  # every output was finalized, not only those before the failure
    assert all(name.startswith("blend-cog") for name in threads.values())
    assert not list(out.glob(".*"))  # no temporary file left behind
    assert not (out / "CLEAROB.tif").exists()


def test_blend_band_uint16_reflectance_does_not_wrap(tmp_path):
    values = np.full((2, 20, 30), 40000, dtype=np.uint16)
    values[1] = 40002
    quality = np.zeros((2, 20, 30), dtype=np.uint8)
    profile = {**PROFILE, "width": 30, "height": 20}
    paths = []
    for i, (array, nodata) in enumerate([(values[0], 0), (values[1], 0), (quality[0], 255), (quality[1], 255)]):
        path = tmp_path / f"{i}.tif"
        with rasterio.open(path, "w", **profile, dtype=array.dtype.name, nodata=nodata) as dst:
            dst.write(array, 1)
        paths.append(path)
    outs = {name: tmp_path / f"{name}.tif" for name in ("LCF", "MED", "AVG")}
    blend_band(paths[:2], paths[2:], DATES, [10.0, 10.0], FMASK4_RULES, list(outs), outs, 0, block_size=16)
    assert read(outs["LCF"])[0][0, 0] == 40002  # tie on efficacy: newer date wins
    assert read(outs["MED"])[0][0, 0] == 40001
    assert read(outs["AVG"])[0][0, 0] == 40001
