"""Tests of the windowed merge core: ``open_scene_mosaic``, ``merge_scenes_to_files`` and ``MergeStatistics``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from cube_assets.errors import InvalidScene
from cube_assets.raster.masks import SCL_RULES, classify_quality, cloud_ratio, efficacy, propagate_spectral_nodata
from cube_assets.raster.warp import (
    DATASOURCE,
    MergeStatistics,
    merge_scenes_to_files,
    merge_scenes_to_tile,
    open_scene_mosaic,
)

UTM33 = CRS.from_epsg(32633)
BLOCK = 32  # a small warp block, so small grids hold several


def _write(path: Path, array: np.ndarray, transform: Affine, nodata: float) -> str:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs=UTM33,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array, 1)
    return str(path)


@pytest.fixture
def scenes(tmp_path: Path) -> list[dict[str, str]]:
    """Two overlapping UTM scenes of SCL (with nodata) and an int16 band with scattered nodata."""
    rng = np.random.default_rng(7)
    result = []
    for name, west in (("a", 500_000), ("b", 500_600)):
        scl = rng.choice(np.array([0, 3, 4, 5, 8, 9], dtype=np.uint8), size=(120, 100))
        red = rng.integers(1, 10_000, (120, 100), dtype=np.int16)
        red[rng.random(red.shape) < 0.05] = -9999
        transform = Affine(10, 0, west, 0, -10, 5_001_200)
        result.append(
            {
                "SCL": _write(tmp_path / f"{name}_SCL.tif", scl, transform, 0),
                "B04": _write(tmp_path / f"{name}_B04.tif", red, transform, -9999),
            }
        )
    return result


GRID = dict(
    bands=["B04"],
    quality_band="SCL",
    dst_crs="EPSG:3857",
    dst_transform=Affine(12, 0, 1_669_650, 0, -12, 5_646_700),
    dst_shape=(110, 130),
    band_nodata={"SCL": 0, "B04": -9999},
    warp_block=BLOCK,
)


def _merge_files(scenes, folder: Path, window_size: int, **overrides) -> tuple[MergeStatistics, dict[str, np.ndarray]]:
    paths = {name: folder / f"{name}.tif" for name in ("SCL", "B04", DATASOURCE)}
    statistics = merge_scenes_to_files(
        scenes, quality_rules={"preset": "scl"}, out_paths=paths, window_size=window_size, **{**GRID, **overrides}
    )
    arrays = {}
    for name, path in paths.items():
        with rasterio.open(path) as src:
            arrays[name] = src.read(1)
    return statistics, arrays


def test_merge_to_files_is_the_same_whatever_the_window_size(tmp_path, scenes) -> None:
    results = []
    for size in (BLOCK, 3 * BLOCK, 5 * BLOCK):  # 96 neither divides 110 x 130 nor covers it; 160 covers it
        (tmp_path / str(size)).mkdir()
        results.append(_merge_files(scenes, tmp_path / str(size), size))

    statistics, arrays = results[0]
    assert {0, 1, 255} <= set(np.unique(arrays[DATASOURCE]).tolist())
    for other_statistics, other_arrays in results[1:]:
        assert other_statistics == statistics
        for name, array in arrays.items():
            np.testing.assert_array_equal(other_arrays[name], array)


def test_merge_to_files_masks_spectral_nodata_and_counts_like_the_whole_tile_rules(tmp_path, scenes) -> None:
    statistics, arrays = _merge_files(scenes, tmp_path, 2 * BLOCK)

    whole = merge_scenes_to_tile(
        scenes, **{key: value for key, value in GRID.items() if key != "warp_block"}, block_size=BLOCK
    )
    quality = propagate_spectral_nodata(whole["SCL"], [whole["B04"]], -9999, 0)
    classes = classify_quality(quality, SCL_RULES)
    assert np.count_nonzero(quality != whole["SCL"]) > 0  # some winners had nodata in B04
    np.testing.assert_array_equal(arrays["SCL"], quality)
    np.testing.assert_array_equal(arrays["B04"], whole["B04"])
    np.testing.assert_array_equal(arrays[DATASOURCE], whole[DATASOURCE])
    assert statistics == MergeStatistics(
        classes.size, int((classes != 0).sum()), int((classes == 1).sum()), int((classes == 2).sum())
    )
    assert statistics.efficacy == efficacy(classes) and statistics.cloud_ratio == cloud_ratio(classes)


def test_merge_statistics_of_a_tile_without_observations_are_zero() -> None:
    statistics = MergeStatistics.of(np.zeros((3, 4), dtype=np.uint8))

    assert (statistics.total_pixels, statistics.valid_pixels, statistics.efficacy, statistics.cloud_ratio) == (
        12,
        0,
        0.0,
        0.0,
    )


def test_a_window_size_that_is_not_a_multiple_of_the_warp_block_is_refused(tmp_path, scenes) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"window size 40 .* multiple of the warp block 32"):
        _merge_files(scenes, out, 40)
    assert list(out.iterdir()) == []


def test_a_mosaic_window_off_the_warp_blocks_is_refused(scenes) -> None:
    with open_scene_mosaic(scenes, **GRID) as mosaic:
        assert mosaic.read(Window(BLOCK, 0, BLOCK, 110 % BLOCK + 3 * BLOCK))["SCL"].shape == (110, BLOCK)
        with pytest.raises(ValueError, match="warp-block boundaries"):
            mosaic.read(Window(10, 0, BLOCK, BLOCK))


def test_a_failing_finalize_leaves_no_output_and_no_temporary_file(tmp_path, scenes) -> None:
    finalized = []

    def finalize(tmp: Path, destination: Path) -> None:
        if finalized:
            raise OSError(f"disk full while writing {destination.name}")
        destination.write_bytes(tmp.read_bytes())
        finalized.append(destination)

    paths = {name: tmp_path / f"{name}.tif" for name in ("SCL", "B04", DATASOURCE)}
    with pytest.raises(OSError, match="disk full"):
        merge_scenes_to_files(
            scenes, quality_rules=SCL_RULES, out_paths=paths, window_size=BLOCK, finalize=finalize, **GRID
        )

    assert len(finalized) == 1  # the first output was finalized, then removed again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_B04.tif", "a_SCL.tif", "b_B04.tif", "b_SCL.tif"]


def test_an_unreadable_scene_file_is_named(tmp_path, scenes) -> None:
    Path(scenes[1]["B04"]).write_bytes(b"not a tiff")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidScene, match=r"merge scene 1: band B04 file .*b_B04\.tif"):
        _merge_files(scenes, out, BLOCK)
    assert list(out.iterdir()) == []
