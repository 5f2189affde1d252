"""Cube-file options: non-square grids, band valid ranges and indexes, quality presets, cube-builder options.

Each bad value must be refused when the file is loaded, naming the file and the field path.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from rasterio.transform import Affine

from cube_assets.cube_config import load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets.raster.masks import QualityClass, classify_quality, rules_from_config
from cube_assets.raster.warp import warp_to_grid
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

# CBERS-4 AWFI's native pixel: 63.9973 m wide, 64.0023 m high.
AWFI = [63.9973, 64.0023]


def _load(tmp_path, cubes=None, **change):
    cube = {**copy.deepcopy(SMALL_CUBE), **change}
    path = write_cube_file(tmp_path, cube, [SMALL_SIMULATOR])
    if cubes is not None:
        import yaml

        path.write_text(yaml.safe_dump({"providers": [SMALL_SIMULATOR], "cubes": [cube, *cubes]}, sort_keys=False))
    return path, load_project_config(path)


def _refused(tmp_path, message, cubes=None, **change):
    with pytest.raises(InvalidCubeConfig, match=message) as info:
        _load(tmp_path, cubes, **change)
    assert str(tmp_path / "cubes.yaml") in str(info.value)
    return str(info.value)


def test_a_grid_with_non_square_pixels_is_declared_with_an_x_and_a_y_resolution(tmp_path):
    grid = {**SMALL_CUBE["grid"], "resolution": AWFI}
    _, config = _load(tmp_path, grid=grid)
    tile = config.cube("small").tile("000000")
    assert (tile.resolution_x, tile.resolution_y) == tuple(AWFI)
    assert tile.transform == Affine(63.9973, 0, 200500, 0, -64.0023, 8249500)
    left, bottom, right, top = tile.bounds
    assert right - left == pytest.approx(256 * 63.9973) and top - bottom == pytest.approx(256 * 64.0023)
    # the next tile down starts where this one ends
    below = config.cube("small").grid_definition.tile(0, 1)
    assert below.transform.f == pytest.approx(bottom)


def test_a_scene_warps_onto_a_non_square_grid(tmp_path):
    _, config = _load(tmp_path, grid={**SMALL_CUBE["grid"], "resolution": AWFI, "tile_size": [4, 3]})
    tile = config.cube("small").tile("000000")
    # a 1 m source whose value is its row: the warped rows sample every 64.0023 m, the columns every 63.9973 m
    rows = np.repeat(np.arange(300, dtype=np.float32)[:, None], 300, axis=1)
    source = (rows, 32723, Affine(1, 0, 200500, 0, -1, 8249500))
    warped = warp_to_grid(
        source, dst_crs=tile.crs_wkt, dst_transform=tile.transform, dst_shape=tile.shape, dst_nodata=-1
    )
    assert warped.shape == (3, 4)
    np.testing.assert_array_equal(warped[:, 0], np.floor((np.arange(3) + 0.5) * 64.0023))


def test_a_square_resolution_given_twice_is_a_square_grid(tmp_path):
    _, config = _load(tmp_path, grid={**SMALL_CUBE["grid"], "resolution": [10, 10]})
    assert config.cube("small").grid_definition.resolution_y is None


@pytest.mark.parametrize("resolution", [[0, 10], [10, -1], -5])
def test_a_non_positive_resolution_is_refused_at_its_field(tmp_path, resolution):
    _refused(
        tmp_path, r"cubes\[0\]\.grid\.resolution: .*positive", grid={**SMALL_CUBE["grid"], "resolution": resolution}
    )


def test_a_valid_range_is_a_band_property(tmp_path):
    bands = [{"name": "NDVI", "valid_range": [-10000, 10000]}, {"name": "B04", "common_name": "red"}]
    _, config = _load(tmp_path, bands=bands, indexes={}, nodata=-32768)
    cube = config.cube("small")
    assert cube.band_storage(cube.bands[0]).valid_range == (-10000, 10000)
    assert cube.band_storage(cube.bands[1]).valid_range is None


def test_a_valid_range_holding_the_cubes_nodata_is_refused(tmp_path):
    bands = [{"name": "NDVI", "valid_range": [-10000, 10000]}]
    message = _refused(
        tmp_path, r"cubes\[0\]\.bands\[0\]\.valid_range: the cube's nodata -9999", bands=bands, indexes={}
    )
    assert "lies inside the valid range" in message


def test_an_inverted_valid_range_is_refused(tmp_path):
    _refused(tmp_path, r"bands\[0\]\.valid_range: .*min below max", bands=[{"name": "B04", "valid_range": [5, 1]}])


def test_a_band_index_must_be_a_band_number_from_one(tmp_path):
    _refused(tmp_path, r"bands\[0\]\.band_index", bands=[{"name": "B04", "band_index": 0}], indexes={})


def test_the_two_cbers4_cloud_mask_presets_are_named_for_their_codes():
    fill0 = rules_from_config({"preset": "cbers4_cmask_127clear_255cloud_0fill"})
    nodata255 = rules_from_config({"preset": "cbers4_mask_0clear_4cloud_255nodata"})
    values = np.array([0, 4, 127, 255], dtype=np.uint8)
    c, x, n = QualityClass.CLEAR, QualityClass.NOT_CLEAR, QualityClass.NODATA
    assert classify_quality(values, fill0).tolist() == [n, x, c, x]
    assert classify_quality(values, nodata255).tolist() == [c, x, x, n]
    assert rules_from_config({"preset": "cmask"}) is fill0  # the former name still works


def test_the_quality_nodata_defaults_to_the_presets_nodata_code(tmp_path):
    quality = {"band": "CMASK", "rules": {"preset": "cbers4_mask_0clear_4cloud_255nodata"}}
    _, config = _load(tmp_path, quality=quality)
    assert config.cube("small").quality.nodata == 255
    quality = {"band": "CMASK", "rules": {"preset": "cbers4_cmask_127clear_255cloud_0fill"}}
    _, config = _load(tmp_path, quality=quality)
    assert config.cube("small").quality.nodata == 0


def test_a_custom_cloud_mask_rule_classifies_its_own_codes(tmp_path):
    rules = {"kind": "values", "clear": [0, 1], "not_clear": [2, 3, 4], "nodata": [255]}
    _, config = _load(tmp_path, quality={"band": "MASK", "rules": rules})
    assert config.cube("small").quality.nodata == 255
    classes = classify_quality(np.array([1, 3, 255, 9]), rules_from_config(rules))
    assert classes.tolist() == [QualityClass.CLEAR, QualityClass.NOT_CLEAR, QualityClass.NODATA, QualityClass.NOT_CLEAR]


@pytest.mark.parametrize("size", [8, 100, 8192])
def test_block_size_must_be_a_multiple_of_16_within_bounds(tmp_path, size):
    _refused(tmp_path, r"cubes\[0\]\.block_size: block size", block_size=size)


def test_block_size_defaults_to_512(tmp_path):
    _, config = _load(tmp_path)
    assert config.cube("small").file_block_size == 512
    _, config = _load(tmp_path, block_size=256)
    assert config.cube("small").file_block_size == 256


def _reusing(**change) -> dict:
    cube = {**copy.deepcopy(SMALL_CUBE), "name": "small_med", "reuse_data_cube": "small", "composites": ["MED"]}
    return {**cube, **change}


def test_a_cube_reusing_another_one_knows_it_once_the_file_is_loaded(tmp_path):
    _, config = _load(tmp_path, cubes=[_reusing(bands=[{"name": "B04", "common_name": "red"}], indexes={})])
    assert config.cube("small_med").reused_cube is config.cube("small")
    assert config.cube("small").reused_cube is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reuse_data_cube": "nowhere"}, "'nowhere' is no cube of this file"),
        ({"reuse_data_cube": "small_med"}, "'small_med' is itself"),
        ({"dtype": "uint16", "nodata": 0}, "cube small differs in dtype, nodata"),
        ({"apply_valid_range": True}, "cube small differs in apply_valid_range"),
        (
            {"bands": [{"name": "B04", "valid_range": [0, 5000]}], "indexes": {}},
            "cube small differs in bands' valid_range",
        ),
        ({"grid": {**SMALL_CUBE["grid"], "resolution": 20}}, "cube small differs in grid"),
        ({"bands": [{"name": "B11"}], "indexes": {}}, r"bands \['B11'\] are not bands of cube small"),
    ],
)
def test_a_reuse_that_cannot_hold_is_refused_at_its_field(tmp_path, change, message):
    _refused(tmp_path, r"cubes\[1\]\.reuse_data_cube: " + message, cubes=[_reusing(**change)])


def test_radsat_is_refused_for_a_collection_that_is_not_landsat(tmp_path):
    quality = {**SMALL_CUBE["quality"], "radsat": "QA_RADSAT"}
    _refused(tmp_path, r"cubes\[0\]\.quality\.radsat: QA_RADSAT is a Landsat band", quality=quality)
