"""Tests of warping onto a tile grid, first-valid mosaics and the scene merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from cube_assets.errors import InvalidRaster, InvalidScene
from cube_assets.raster.warp import (
    DATASOURCE,
    merge_scenes_to_tile,
    mosaic_first_valid,
    warp_to_grid,
)


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """A north-up transform (``rasterio.transform.from_origin`` without its affine-3 warning)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


UTM33 = CRS.from_epsg(32633)
ORIGIN = from_origin(500_000, 5_000_000, 10, 10)
LANDSAT = "stactools-landsat/tests/data-files/assets3/LC08_L2SP_008059_20191201_20200825_02_T1_{}.TIF"
ALBERS = CRS.from_proj4("+proj=aea +lat_0=0 +lon_0=-74 +lat_1=-5 +lat_2=10 +datum=WGS84 +units=m +no_defs")


def write_tif(
    path: Path,
    array: np.ndarray,
    *,
    crs: CRS = UTM33,
    transform: Affine = ORIGIN,
    nodata: float | None = None,
) -> Path:
    """A one-band GeoTIFF of ``array``."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array, 1)
    return path


def albers_grid(path: Path, resolution: float) -> tuple[Affine, tuple[int, int]]:
    """A north-up Albers grid of ``resolution`` metres covering the raster at ``path``."""
    with rasterio.open(path) as src:
        left, bottom, right, top = transform_bounds(src.crs, ALBERS, *src.bounds)
    transform = from_origin(
        np.floor(left / resolution) * resolution, np.ceil(top / resolution) * resolution, resolution, resolution
    )
    shape = (int(np.ceil((top - bottom) / resolution)) + 1, int(np.ceil((right - left) / resolution)) + 1)
    return transform, shape


# --- warp_to_grid ---------------------------------------------------------------------------


def test_nearest_on_the_source_grid_returns_the_source_pixels(tmp_path: Path) -> None:
    source = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40)
    path = write_tif(tmp_path / "b.tif", source, nodata=0)

    out = warp_to_grid(
        path, dst_crs=UTM33, dst_transform=ORIGIN, dst_shape=(30, 40), dst_nodata=0, resampling="nearest"
    )

    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, source)


def test_bilinear_interpolates_between_pixel_centres(tmp_path: Path) -> None:
    columns = np.tile(np.arange(20, dtype=np.uint16) * 100, (10, 1))
    path = write_tif(tmp_path / "b.tif", columns)
    half_pixel_east = from_origin(500_005, 5_000_000, 10, 10)

    out = warp_to_grid(
        path,
        dst_crs=UTM33,
        dst_transform=half_pixel_east,
        dst_shape=(10, 18),
        dst_nodata=-1,
        resampling="bilinear",
        dtype="float32",
    )

    assert out.dtype == np.float32
    np.testing.assert_allclose(out[5, :5], [50, 150, 250, 350, 450])


def test_bilinear_does_not_blend_nodata_into_valid_pixels(tmp_path: Path) -> None:
    source = np.full((20, 20), 1000, dtype=np.uint16)
    source[5:12, 5:12] = 0
    source[:, 15:] = 0
    path = write_tif(tmp_path / "b.tif", source, nodata=0)
    shifted = from_origin(500_003, 4_999_996, 10, 10)

    out = warp_to_grid(
        path, dst_crs=UTM33, dst_transform=shifted, dst_shape=(20, 20), dst_nodata=0, resampling="bilinear"
    )

    assert set(np.unique(out)) == {0, 1000}
    assert out[8, 8] == 0  # inside the nodata square
    assert out[8, 2] == 1000


def test_src_nodata_overrides_a_file_without_nodata(tmp_path: Path) -> None:
    source = np.full((20, 20), 1000, dtype=np.uint16)
    source[:, 10:] = 7  # a fill value the file does not declare
    path = write_tif(tmp_path / "b.tif", source)
    shifted = from_origin(500_004, 5_000_000, 10, 10)

    out = warp_to_grid(
        path,
        dst_crs=UTM33,
        dst_transform=shifted,
        dst_shape=(20, 18),
        src_nodata=7,
        dst_nodata=7,
        resampling="bilinear",
    )

    assert set(np.unique(out)) == {7, 1000}


def test_destination_pixels_the_source_does_not_reach_are_dst_nodata(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "b.tif", np.full((10, 10), 5, dtype=np.int16), nodata=-9999)
    wider = from_origin(499_950, 5_000_000, 10, 10)  # five columns west of the source

    out = warp_to_grid(
        path, dst_crs=UTM33, dst_transform=wider, dst_shape=(10, 20), dst_nodata=-9999, resampling="nearest"
    )

    assert (out[:, :5] == -9999).all()
    assert (out[:, 5:15] == 5).all()
    assert (out[:, 15:] == -9999).all()


def test_a_window_equals_the_same_slice_of_the_whole_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_tif(tmp_path / "b.tif", rng.integers(1, 10_000, (64, 64), dtype=np.uint16), nodata=0)
    west, _south, _east, north = transform_bounds(UTM33, "EPSG:4326", 500_000, 4_999_360, 500_640, 5_000_000)
    lonlat_grid = from_origin(west, north, 0.0001, 0.0001)
    common = dict(
        dst_crs="EPSG:4326", dst_transform=lonlat_grid, dst_shape=(60, 90), dst_nodata=0, resampling="bilinear"
    )

    whole = warp_to_grid(path, **common)
    part = warp_to_grid(path, window=Window(30, 20, 25, 15), **common)

    assert (whole != 0).sum() > 1000
    np.testing.assert_array_equal(part, whole[20:35, 30:55])


def test_array_source_warps_like_the_same_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    source = rng.integers(1, 10_000, (40, 40), dtype=np.uint16)
    path = write_tif(tmp_path / "b.tif", source, nodata=0)
    grid = dict(
        dst_crs="EPSG:3857",
        dst_transform=from_origin(1_669_780, 5_645_720, 12, 12),  # covers the source
        dst_shape=(50, 50),
        dst_nodata=0,
        resampling="nearest",
    )

    from_file = warp_to_grid(path, **grid)
    from_array = warp_to_grid((source, UTM33, ORIGIN), src_nodata=0, **grid)

    assert (from_file != 0).sum() > 100
    np.testing.assert_array_equal(from_array, from_file)


def test_unknown_resampling_is_refused(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "b.tif", np.ones((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="blurry"):
        warp_to_grid(path, dst_crs=UTM33, dst_transform=ORIGIN, dst_shape=(4, 4), dst_nodata=0, resampling="blurry")


def test_window_outside_the_grid_is_refused(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "b.tif", np.ones((4, 4), dtype=np.uint8))
    with pytest.raises(InvalidRaster, match="not inside"):
        warp_to_grid(
            path, dst_crs=UTM33, dst_transform=ORIGIN, dst_shape=(4, 4), dst_nodata=0, window=Window(2, 2, 4, 4)
        )


def test_unreadable_source_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "not_a_raster.tif"
    path.write_text("hello")
    with pytest.raises(InvalidRaster, match="not_a_raster.tif"):
        warp_to_grid(path, dst_crs=UTM33, dst_transform=ORIGIN, dst_shape=(4, 4), dst_nodata=0)


@pytest.mark.real_data
def test_real_landsat_nearest_to_albers_takes_the_source_pixel_under_each_centre(real_data: Path) -> None:
    path = real_data / LANDSAT.format("SR_B4")
    transform, shape = albers_grid(path, 400.0)
    with rasterio.open(path) as src:
        source, src_transform, src_crs = src.read(1), src.transform, src.crs

    out = warp_to_grid(
        path, dst_crs=ALBERS, dst_transform=transform, dst_shape=shape, dst_nodata=0, resampling="nearest"
    )

    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = transform @ (cols + 0.5, rows + 0.5)
    src_x, src_y = Transformer.from_crs(ALBERS, src_crs, always_xy=True).transform(x, y)
    col_f, row_f = ~src_transform @ (src_x, src_y)
    col, row = np.floor(col_f).astype(int), np.floor(row_f).astype(int)
    inside = (col >= 0) & (col < source.shape[1]) & (row >= 0) & (row < source.shape[0])
    # GDAL's approximate transformer is off by < 0.125 pixel; skip centres that close to an edge.
    clear_of_edges = (np.abs(col_f - col - 0.5) < 0.3) & (np.abs(row_f - row - 0.5) < 0.3)
    checked = inside & clear_of_edges & (out != 0)
    assert checked.sum() > 50_000
    np.testing.assert_array_equal(out[checked], source[row[checked], col[checked]])
    assert (out[~inside] == 0).all()


@pytest.mark.real_data
def test_real_qa_pixel_nearest_only_holds_values_of_the_input(real_data: Path) -> None:
    path = real_data / LANDSAT.format("QA_PIXEL")
    transform, shape = albers_grid(path, 300.0)
    with rasterio.open(path) as src:
        input_values = set(np.unique(src.read(1)).tolist())

    out = warp_to_grid(
        path, dst_crs=ALBERS, dst_transform=transform, dst_shape=shape, src_nodata=1, dst_nodata=1, resampling="nearest"
    )

    output_values = set(np.unique(out).tolist())
    assert len(output_values) > 5
    assert output_values <= input_values


# --- mosaic_first_valid ---------------------------------------------------------------------


def test_mosaic_first_valid_value_wins_and_its_index_is_recorded() -> None:
    first = np.array([[0, 1, 0], [0, 0, 0]], dtype=np.uint16)
    second = np.array([[2, 2, 0], [2, 0, 0]], dtype=np.uint16)
    third = np.array([[3, 3, 3], [3, 0, 0]], dtype=np.uint16)

    mosaic, source_index = mosaic_first_valid([first, second, third], nodata=0)

    np.testing.assert_array_equal(mosaic, [[2, 1, 3], [2, 0, 0]])
    np.testing.assert_array_equal(source_index, [[1, 0, 2], [1, 255, 255]])
    assert mosaic.dtype == np.uint16 and source_index.dtype == np.uint8


def test_mosaic_first_valid_treats_nan_as_missing() -> None:
    first = np.array([np.nan, 1.5], dtype=np.float32)
    second = np.array([4.0, 9.0], dtype=np.float32)

    mosaic, source_index = mosaic_first_valid([first, second], nodata=np.nan)

    np.testing.assert_array_equal(mosaic, [4.0, 1.5])
    np.testing.assert_array_equal(source_index, [1, 0])


def test_mosaic_first_valid_refuses_arrays_of_different_shapes() -> None:
    with pytest.raises(InvalidRaster, match="array 1"):
        mosaic_first_valid([np.zeros((2, 2)), np.zeros((3, 2))], nodata=0)


# --- merge_scenes_to_tile -------------------------------------------------------------------


def make_scene(folder: Path, *, quality: np.ndarray, red: np.ndarray, transform: Affine = ORIGIN) -> dict[str, Path]:
    """A scene of a quality band (nodata 0) and a red band (nodata 0) as GeoTIFFs."""
    folder.mkdir()
    return {
        "SCL": write_tif(folder / "SCL.tif", quality, transform=transform, nodata=0),
        "B04": write_tif(folder / "B04.tif", red, transform=transform, nodata=0),
    }


MERGE_GRID = dict(dst_crs=UTM33, dst_transform=ORIGIN, dst_shape=(4, 6), band_nodata={"SCL": 0, "B04": 0})


def test_merge_takes_every_band_of_a_pixel_from_the_first_scene_with_valid_quality(tmp_path: Path) -> None:
    quality_a = np.full((4, 6), 4, dtype=np.uint8)
    quality_a[:, :3] = 0  # scene A's quality is missing on the left half...
    red_a = np.full((4, 6), 111, dtype=np.uint16)  # ...although its red band has values there
    scene_a = make_scene(tmp_path / "a", quality=quality_a, red=red_a)
    scene_b = make_scene(tmp_path / "b", quality=np.full((4, 6), 8, np.uint8), red=np.full((4, 6), 222, np.uint16))

    merged = merge_scenes_to_tile([scene_a, scene_b], bands=["B04"], quality_band="SCL", **MERGE_GRID)

    assert set(merged) == {"SCL", "B04", DATASOURCE}
    assert (merged["B04"][:, :3] == 222).all() and (merged["B04"][:, 3:] == 111).all()
    assert (merged["SCL"][:, :3] == 8).all() and (merged["SCL"][:, 3:] == 4).all()
    assert (merged[DATASOURCE][:, :3] == 1).all() and (merged[DATASOURCE][:, 3:] == 0).all()


def test_merge_pixels_without_valid_quality_in_any_scene_are_nodata(tmp_path: Path) -> None:
    quality = np.full((4, 6), 4, dtype=np.uint8)
    quality[0, 0] = 0
    scene = make_scene(tmp_path / "a", quality=quality, red=np.full((4, 6), 500, np.uint16))

    merged = merge_scenes_to_tile([scene], bands=["B04"], quality_band="SCL", **MERGE_GRID)

    assert merged["B04"][0, 0] == 0 and merged["SCL"][0, 0] == 0
    assert merged[DATASOURCE][0, 0] == 255
    assert (merged[DATASOURCE] == 0).sum() == 4 * 6 - 1
    assert merged["B04"][0, 1] == 500


def test_merge_of_scenes_that_miss_the_tile_is_empty_with_source_types(tmp_path: Path) -> None:
    far_away = from_origin(700_000, 5_300_000, 10, 10)
    scene = make_scene(
        tmp_path / "a",
        quality=np.full((4, 6), 4, np.uint8),
        red=np.full((4, 6), 500, np.uint16),
        transform=far_away,
    )

    merged = merge_scenes_to_tile([scene], bands=["B04"], quality_band="SCL", **MERGE_GRID)

    assert merged["SCL"].dtype == np.uint8 and merged["B04"].dtype == np.uint16
    assert merged[DATASOURCE].dtype == np.uint8
    assert all(array.shape == (4, 6) for array in merged.values())
    assert (merged["SCL"] == 0).all() and (merged["B04"] == 0).all() and (merged[DATASOURCE] == 255).all()


def test_merge_defaults_to_nearest_for_quality_and_bilinear_for_spectral(tmp_path: Path) -> None:
    quality = np.tile(np.array([3, 5], dtype=np.uint8), (20, 10))
    red = np.tile(np.arange(20, dtype=np.uint16) * 100 + 100, (20, 1))
    scene = make_scene(tmp_path / "a", quality=quality, red=red)
    half_pixel_east = from_origin(500_005, 5_000_000, 10, 10)

    merged = merge_scenes_to_tile(
        [scene],
        bands=["B04"],
        quality_band="SCL",
        dst_crs=UTM33,
        dst_transform=half_pixel_east,
        dst_shape=(20, 18),
        band_nodata={"SCL": 0, "B04": 0},
    )

    assert set(np.unique(merged["SCL"]).tolist()) == {3, 5}
    assert merged["B04"][10, 0] == 150  # halfway between 100 and 200


def test_merge_in_blocks_equals_merge_in_one_piece(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    scenes = []
    for name, column_offset in (("a", 0), ("b", 300)):
        quality = rng.integers(0, 4, (50, 50), dtype=np.uint8)  # about a quarter nodata
        red = rng.integers(1, 10_000, (50, 50), dtype=np.uint16)
        transform = from_origin(500_000 + column_offset, 5_000_000, 10, 10)
        scenes.append(make_scene(tmp_path / name, quality=quality, red=red, transform=transform))
    grid = dict(
        bands=["B04"],
        quality_band="SCL",
        dst_crs="EPSG:3857",
        dst_transform=from_origin(1_669_700, 5_645_800, 15, 15),  # both scenes and a margin
        dst_shape=(60, 80),
        band_nodata={"SCL": 0, "B04": 0},
    )

    whole = merge_scenes_to_tile(scenes, **grid)
    blocked = merge_scenes_to_tile(scenes, block_size=16, **grid)

    assert {0, 1, 255} <= set(np.unique(whole[DATASOURCE]).tolist())
    for band in ("SCL", "B04", DATASOURCE):
        np.testing.assert_array_equal(blocked[band], whole[band])


def test_merge_scene_without_a_band_names_the_scene_and_band(tmp_path: Path) -> None:
    scene = make_scene(tmp_path / "a", quality=np.ones((4, 6), np.uint8), red=np.ones((4, 6), np.uint16))
    with pytest.raises(InvalidScene, match=r"scene 1.*B08"):
        merge_scenes_to_tile(
            [{**scene, "B08": scene["B04"]}, scene],
            bands=["B04", "B08"],
            quality_band="SCL",
            **{**MERGE_GRID, "band_nodata": {"SCL": 0, "B04": 0, "B08": 0}},
        )


def test_merge_refuses_a_band_whose_type_differs_between_scenes(tmp_path: Path) -> None:
    scene_a = make_scene(tmp_path / "a", quality=np.ones((4, 6), np.uint8), red=np.ones((4, 6), np.uint16))
    scene_b = make_scene(tmp_path / "b", quality=np.ones((4, 6), np.uint8), red=np.ones((4, 6), np.int16))
    with pytest.raises(InvalidScene, match="B04"):
        merge_scenes_to_tile([scene_a, scene_b], bands=["B04"], quality_band="SCL", **MERGE_GRID)


@pytest.mark.real_data
def test_real_landsat_merge_marks_qa_fill_as_no_source(real_data: Path) -> None:
    scene = {band: real_data / LANDSAT.format(band) for band in ("QA_PIXEL", "SR_B4", "SR_B5")}
    transform, shape = albers_grid(scene["QA_PIXEL"], 500.0)
    quality = warp_to_grid(
        scene["QA_PIXEL"],
        dst_crs=ALBERS,
        dst_transform=transform,
        dst_shape=shape,
        src_nodata=1,
        dst_nodata=1,
        resampling="nearest",
    )

    merged = merge_scenes_to_tile(
        [scene, scene],
        bands=["SR_B4", "SR_B5"],
        quality_band="QA_PIXEL",
        dst_crs=ALBERS,
        dst_transform=transform,
        dst_shape=shape,
        band_nodata={"QA_PIXEL": 1, "SR_B4": 0, "SR_B5": 0},
        block_size=128,
    )

    no_source = merged[DATASOURCE] == 255
    assert 0.1 < no_source.mean() < 0.9
    np.testing.assert_array_equal(no_source, quality == 1)
    assert (merged[DATASOURCE][~no_source] == 0).all()  # the identical second scene never wins
    assert (merged["SR_B4"][no_source] == 0).all()
    assert (merged["SR_B4"][~no_source] > 0).mean() > 0.99
    assert merged["SR_B4"].dtype == np.uint16 and merged["SR_B5"].dtype == np.uint16
