"""Merge options: a native-grid merge keeps the scenes on their own grid (nothing resampled).

The scenes are cut from the real T29UNU 60 m B04 and SCL: two dates' worth of one granule on
one grid, and one scene on a grid shifted by a pixel.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from cube_assets.errors import InvalidScene
from cube_assets.manifests import SceneRasters
from cube_assets.steps.merge import merge_date
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES
from cube_assets_tests.steps.test_scenes import _cube

pytestmark = [pytest.mark.real_data]

WINDOW = Window(600, 400, 96, 80)


def _scene_files(real_data: Path, folder: Path, window: Window, scene_id: str) -> SceneRasters:
    folder.mkdir(parents=True)
    files = {}
    for band, dtype, nodata in (("B04", "int16", -9999), ("SCL", "uint8", 0)):
        with rasterio.open(real_data / REAL_S2_ASSET_FILES[band]) as src:
            values = src.read(1, window=window)
            profile = {
                "driver": "GTiff",
                "crs": src.crs,
                "transform": src.window_transform(window),
                "width": window.width,
                "height": window.height,
                "count": 1,
                "dtype": dtype,
                "nodata": nodata,
            }
        if band == "B04":
            values = np.where(values == 0, -9999, values.astype(np.int32) - 1000).astype(np.int16)
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
            dst.write(values.astype(dtype), 1)
        files[band] = str(folder / f"{band}.tif")
    return SceneRasters(scene_id=scene_id, bands={"B04": files["B04"]}, quality=files["SCL"])


@pytest.fixture
def native_cube():
    return _cube(bands=[{"name": "B04", "common_name": "red"}], indexes={}).model_copy(update={"native_grid": True})


def test_a_native_grid_merge_keeps_the_scenes_grid_and_pixels(tmp_path, real_data, native_cube):
    scene = _scene_files(real_data, tmp_path / "a", WINDOW, "A")
    store = LocalRasterStore(tmp_path / "store")
    merge = merge_date(native_cube, native_cube.tile("000000"), date(2022, 10, 5), [scene], store)
    for band, source in (("B04", scene.bands["B04"]), ("SCL", scene.quality)):
        merged = merge.bands[band] if band == "B04" else merge.quality
        with rasterio.open(merged) as out, rasterio.open(source) as src:
            assert (out.transform, out.shape, out.crs) == (src.transform, src.shape, src.crs)
            expected = src.read(1)
            if band == "SCL":  # spectral nodata becomes quality nodata, as in every merge
                with rasterio.open(scene.bands["B04"]) as b04:
                    expected = np.where(b04.read(1) == -9999, 0, expected)
            np.testing.assert_array_equal(out.read(1), expected)
    assert merge.total_pixels == WINDOW.width * WINDOW.height
    # the tile of the cube's grid (1830 × 1830 px) is not the merge's grid
    assert native_cube.tile("000000").shape != (WINDOW.height, WINDOW.width)


def test_a_native_grid_merge_refuses_scenes_on_two_grids(tmp_path, real_data, native_cube):
    first = _scene_files(real_data, tmp_path / "a", WINDOW, "A")
    shifted = _scene_files(real_data, tmp_path / "b", Window(601, 400, 96, 80), "B")
    store = LocalRasterStore(tmp_path / "store")
    with pytest.raises(InvalidScene, match=r"scene B band B04 .* lies on another grid than scene A band B04"):
        merge_date(native_cube, native_cube.tile("000000"), date(2022, 10, 5), [first, shifted], store)
    assert not list((tmp_path / "store").rglob("*.tif"))


def test_the_cubes_block_size_sets_the_blocks_of_its_merges(tmp_path, real_data, native_cube):
    scene = _scene_files(real_data, tmp_path / "a", Window(600, 400, 160, 160), "A")
    cube = native_cube.model_copy(update={"block_size": 64})
    merge = merge_date(cube, cube.tile("000000"), date(2022, 10, 5), [scene], LocalRasterStore(tmp_path / "store"))
    for path in (merge.bands["B04"], merge.quality, merge.datasource):
        with rasterio.open(path) as src:
            assert src.block_shapes[0] == (64, 64)


def test_native_grid_merges_are_blended_and_catalogued_on_their_own_grid(tmp_path, real_data, native_cube):
    from cube_assets.steps.blend import blend_period
    from cube_assets.steps.catalog_records import catalog_batch

    cube = native_cube.model_copy(update={"composites": ["LCF"]})
    tile, period = cube.tile("000000"), cube.periods[0]
    store = LocalRasterStore(tmp_path / "store")
    merges = [
        merge_date(
            cube, tile, day, [_scene_files(real_data, tmp_path / day.isoformat(), WINDOW, day.isoformat())], store
        )
        for day in (date(2022, 10, 2), date(2022, 10, 5))
    ]
    blend = blend_period(cube, tile, period, merges, store)
    with rasterio.open(blend.composites["LCF"].bands["B04"]) as out, rasterio.open(merges[0].bands["B04"]) as merged:
        assert (out.transform, out.shape) == (merged.transform, merged.shape)
        assert out.shape == (WINDOW.height, WINDOW.width)
        transform = merged.transform
    images = {image.id: image for image in catalog_batch(cube, tile, period, blend, [], store).images}
    for image in (images[blend.composites["LCF"].item], images[merges[0].item]):
        assert (image.width, image.height) == (WINDOW.width, WINDOW.height)
        assert tuple(image.geotransform) == transform.to_gdal()
