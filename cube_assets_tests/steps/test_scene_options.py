"""Cube options of the scene stage, on small real-like products cut from the real samples.

* an index band (NDVI × 10,000 from the real T29UNU 60 m B04 and B8A, negative over the sea):
  a band's ``valid_range`` keeps its negative and zero values, the input nodata is the
  product's (the Item's or the file's, never 0 by default), ``apply_valid_range`` makes values
  outside the range nodata;
* a BOA stack (B02, B04, B8A of T29UNU in one 3-band GeoTIFF): each band read from its index;
* the real Landsat 8 C2 L2 scene with ``QA_RADSAT``: saturated pixels become quality nodata;
* ``block_size``: the scene files' GeoTIFF blocks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import box, mapping

from cube_assets.errors import InvalidRaster
from cube_assets.providers.local import ProductManifest, write_product_manifest
from cube_assets.raster.masks import radsat_saturated
from cube_assets.steps.scenes import reflectance_for_scene
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES
from cube_assets_tests.steps.test_scenes import LANDSAT_CUBE, LANDSAT_FOLDER, LANDSAT_ID, _cube, _scene

pytestmark = [pytest.mark.real_data, pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]

# 200 × 200 px of T29UNU at 60 m: coast, sea (negative NDVI) and land.
WINDOW = Window(600, 400, 200, 200)
WHEN = datetime(2022, 10, 5, 11, 54, 11, tzinfo=UTC)


def _read_window(real_data: Path, band: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(real_data / REAL_S2_ASSET_FILES[band]) as src:
        profile = {
            "driver": "GTiff",
            "crs": src.crs,
            "transform": src.window_transform(WINDOW),
            "width": WINDOW.width,
            "height": WINDOW.height,
        }
        return src.read(1, window=WINDOW), profile


def _product(folder: Path, collection: str, bands: dict[str, str], item_assets: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    footprint = box(-9.0, 53.0, -8.0, 54.0)
    write_product_manifest(
        folder, ProductManifest(folder.name, collection, WHEN, footprint, 10.0, bands, properties={})
    )
    item = {"id": folder.name, "properties": {"s2:processing_baseline": "04.00"}, "assets": item_assets}
    (folder / "item.json").write_text(json.dumps(item))
    return folder


def _raw(folder: Path, collection: str):
    scene = _scene(folder.name, folder, mapping(box(-9.0, 53.0, -8.0, 54.0)), WHEN)
    return scene.model_copy(update={"collection": collection})


@pytest.fixture(scope="module")
def ndvi_product(tmp_path_factory, real_data) -> tuple[Path, np.ndarray]:
    """An NDVI × 10,000 int16 band with no declared nodata, and an SCL band, as a band-by-band product."""
    red, profile = _read_window(real_data, "B04")
    nir, _ = _read_window(real_data, "B8A")
    red, nir = red.astype(float) - 1000, nir.astype(float) - 1000
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.rint(10000 * (nir - red) / (nir + red))
    ndvi = np.where(np.isfinite(ndvi), ndvi, 0).astype(np.int16)
    ndvi[:3, :] = 0  # a strip of legitimate zeros (bare soil)
    scl = np.full(ndvi.shape, 4, dtype=np.uint8)
    folder = tmp_path_factory.mktemp("ndvi") / "NDVI_T29UNU_20221005"
    folder.mkdir()
    with rasterio.open(folder / "ndvi.tif", "w", **profile, count=1, dtype="int16") as dst:
        dst.write(ndvi, 1)
    with rasterio.open(folder / "scl.tif", "w", **profile, count=1, dtype="uint8") as dst:
        dst.write(scl, 1)
    assets = {"ndvi": {"href": "ndvi.tif", "raster:bands": [{"scale": 0.0001}]}, "scl": {"href": "scl.tif"}}
    _product(folder, "ndvi-index", {"NDVI": "ndvi.tif", "SCL": "scl.tif"}, assets)
    assert (ndvi < 0).sum() > 5000 and (ndvi == 0).sum() >= 600
    return folder, ndvi


def _ndvi_cube(**band):
    return _cube(
        collection="ndvi-index",
        bands=[{"name": "NDVI", **band}],
        indexes={},
        nodata=-32768,
    )


def _reflectance(cube, folder: Path, collection: str, tmp_path: Path) -> dict[str, np.ndarray]:
    scene = reflectance_for_scene(cube, _raw(folder, collection), LocalRasterStore(tmp_path))
    out = {}
    for band, uri in {**scene.bands, "quality": scene.quality}.items():
        with rasterio.open(uri) as src:
            out[band] = src.read(1)
            out[f"{band}.profile"] = src.profile
    return out


def test_an_index_band_with_a_valid_range_keeps_its_negative_and_zero_values(ndvi_product, tmp_path):
    folder, ndvi = ndvi_product
    cube = _ndvi_cube(valid_range=[-10000, 10000])
    written = _reflectance(cube, folder, "ndvi-index", tmp_path)
    np.testing.assert_array_equal(written["NDVI"], ndvi)  # every pixel, the negative and zero ones too
    assert written["NDVI.profile"]["nodata"] == -32768


def test_without_a_valid_range_an_index_band_loses_its_negative_values_as_reflectance_does(ndvi_product, tmp_path):
    folder, ndvi = ndvi_product
    written = _reflectance(_ndvi_cube(), folder, "ndvi-index", tmp_path)
    np.testing.assert_array_equal(written["NDVI"] == -32768, ndvi < 0)
    # zero is data: nothing declares it nodata (no Item nodata, no file tag)
    assert (written["NDVI"][ndvi == 0] == 0).all()


def test_the_input_nodata_is_the_one_the_item_declares(ndvi_product, tmp_path):
    folder, ndvi = ndvi_product
    copy = tmp_path / "declared" / folder.name
    copy.mkdir(parents=True)
    for name in ("ndvi.tif", "scl.tif", "product.json"):
        (copy / name).write_bytes((folder / name).read_bytes())
    item = json.loads((folder / "item.json").read_text())
    item["assets"]["ndvi"]["raster:bands"][0]["nodata"] = 0
    (copy / "item.json").write_text(json.dumps(item))
    written = _reflectance(_ndvi_cube(valid_range=[-10000, 10000]), copy, "ndvi-index", tmp_path / "out")
    np.testing.assert_array_equal(written["NDVI"] == -32768, ndvi == 0)


def test_the_cube_files_source_nodata_names_an_input_nodata_the_product_lacks(ndvi_product, tmp_path):
    folder, ndvi = ndvi_product
    cube = _ndvi_cube(valid_range=[-10000, 10000], source_nodata=0)
    written = _reflectance(cube, folder, "ndvi-index", tmp_path)
    np.testing.assert_array_equal(written["NDVI"] == -32768, ndvi == 0)


def test_apply_valid_range_makes_values_outside_it_nodata_instead_of_clipped(ndvi_product, tmp_path):
    folder, ndvi = ndvi_product
    clipped = _reflectance(_ndvi_cube(valid_range=[-2000, 5000]), folder, "ndvi-index", tmp_path / "clip")["NDVI"]
    cube = _ndvi_cube(valid_range=[-2000, 5000]).model_copy(update={"apply_valid_range": True})
    masked = _reflectance(cube, folder, "ndvi-index", tmp_path / "mask")["NDVI"]
    inside = (ndvi >= -2000) & (ndvi <= 5000)
    assert (ndvi > 5000).sum() > 100 and (ndvi < -2000).sum() > 100
    np.testing.assert_array_equal(masked[inside], ndvi[inside])
    assert (masked[~inside] == -32768).all()
    # without it: below the range is nodata (as negative reflectance), above is clipped to the top
    assert (clipped[ndvi > 5000] == 5000).all() and (clipped[ndvi < -2000] == -32768).all()


@pytest.fixture(scope="module")
def boa_stack(tmp_path_factory, real_data) -> tuple[Path, dict[str, np.ndarray]]:
    """B02, B04 and B8A of T29UNU in one 3-band GeoTIFF (a BOA stack), listed in the Item's ``eo:bands``."""
    dns = {band: _read_window(real_data, band)[0] for band in ("B02", "B04", "B8A")}
    _, profile = _read_window(real_data, "B02")
    scl, _ = _read_window(real_data, "B02")
    folder = tmp_path_factory.mktemp("boa") / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_BOA"
    folder.mkdir()
    with rasterio.open(folder / "boa.tif", "w", **profile, count=3, dtype="uint16") as dst:
        for index, band in enumerate(dns, start=1):
            dst.write(dns[band], index)
    with rasterio.open(folder / "scl.tif", "w", **profile, count=1, dtype="uint8") as dst:
        dst.write(np.where(scl == 0, 0, 4).astype(np.uint8), 1)
    assets = {
        "boa": {"href": "boa.tif", "eo:bands": [{"name": "B02"}, {"name": "B04"}, {"name": "B8A"}]},
        "scl": {"href": "scl.tif", "eo:bands": [{"name": "SCL"}]},
    }
    bands = {"B02": "boa.tif", "B04": "boa.tif", "B8A": "boa.tif", "SCL": "scl.tif"}
    return _product(folder, "sentinel-2-l2a", bands, assets), dns


def _expected_reflectance(dn: np.ndarray) -> np.ndarray:
    values = dn.astype(float) - 1000
    return np.where((dn == 0) | (values < 0), -9999, np.rint(values)).astype(np.int16)


def test_bands_of_a_multi_band_file_are_read_from_their_index_in_the_item(boa_stack, tmp_path):
    folder, dns = boa_stack
    cube = _cube(bands=[{"name": "B8A", "common_name": "nir"}, {"name": "B04", "common_name": "red"}], indexes={})
    written = _reflectance(cube, folder, "sentinel-2-l2a", tmp_path)
    for band in ("B04", "B8A"):
        np.testing.assert_array_equal(written[band], _expected_reflectance(dns[band]))
    assert not np.array_equal(written["B04"], written["B8A"])


def test_a_band_index_in_the_cube_file_picks_the_band_of_a_stack_the_item_does_not_describe(boa_stack, tmp_path):
    folder, dns = boa_stack
    item = json.loads((folder / "item.json").read_text())
    item["assets"]["boa"].pop("eo:bands")
    copy = tmp_path / "plain" / folder.name
    copy.mkdir(parents=True)
    for name in ("boa.tif", "scl.tif", "product.json"):
        (copy / name).write_bytes((folder / name).read_bytes())
    (copy / "item.json").write_text(json.dumps(item))
    cube = _cube(bands=[{"name": "B04", "band_index": 2}, {"name": "B8A", "band_index": 3}], indexes={})
    written = _reflectance(cube, copy, "sentinel-2-l2a", tmp_path / "out")
    np.testing.assert_array_equal(written["B04"], _expected_reflectance(dns["B04"]))
    np.testing.assert_array_equal(written["B8A"], _expected_reflectance(dns["B8A"]))


def test_a_band_index_beyond_the_file_names_the_file_and_its_band_count(boa_stack, tmp_path):
    folder, _ = boa_stack
    cube = _cube(bands=[{"name": "B04", "band_index": 4}], indexes={})
    with pytest.raises(InvalidRaster, match=r"boa\.tif: no band 4 \(the file has 3 band\(s\)"):
        _reflectance(cube, folder, "sentinel-2-l2a", tmp_path)


def test_block_size_sets_the_blocks_of_the_scene_files(boa_stack, tmp_path):
    folder, _ = boa_stack
    cube = _cube(bands=[{"name": "B04"}], indexes={}, block_size=128)
    written = _reflectance(cube, folder, "sentinel-2-l2a", tmp_path)
    for band in ("B04", "quality"):
        assert (written[f"{band}.profile"]["blockxsize"], written[f"{band}.profile"]["blockysize"]) == (128, 128)


def test_landsat_radsat_saturation_becomes_quality_nodata(tmp_path, real_data):
    folder = real_data / LANDSAT_FOLDER
    quality = {**LANDSAT_CUBE["quality"], "radsat": "QA_RADSAT"}
    cube = _cube(**{**LANDSAT_CUBE, "quality": quality})
    scene = _scene(LANDSAT_ID, folder, None, WHEN).model_copy(update={"collection": "landsat-c2-l2"})
    written = reflectance_for_scene(cube, scene, LocalRasterStore(tmp_path))
    with (
        rasterio.open(folder / f"{LANDSAT_ID}_QA_PIXEL.TIF") as qa,
        rasterio.open(folder / f"{LANDSAT_ID}_QA_RADSAT.TIF") as radsat,
        rasterio.open(written.quality) as out,
    ):
        saturated = radsat_saturated(radsat.read(1))
        source, values = qa.read(1), out.read(1)
    assert saturated.sum() > 0
    assert (values[saturated] == cube.quality.nodata).all()
    np.testing.assert_array_equal(values[~saturated], source[~saturated])


def test_radsat_is_applied_to_a_landsat_scene_stored_band_by_band(tmp_path, real_data):
    source = real_data / LANDSAT_FOLDER
    folder = tmp_path / "raw" / LANDSAT_ID
    folder.mkdir(parents=True)
    files = {"SR_B4": "SR_B4.TIF", "QA_PIXEL": "QA_PIXEL.TIF", "QA_RADSAT": "QA_RADSAT.TIF"}
    for name in files.values():
        (folder / name).write_bytes((source / f"{LANDSAT_ID}_{name}").read_bytes())
    _product(folder, "landsat-c2-l2", files, {})
    quality = {**LANDSAT_CUBE["quality"], "radsat": "QA_RADSAT"}
    cube = _cube(**{**LANDSAT_CUBE, "quality": quality, "bands": [{"name": "red", "source": "SR_B4"}], "indexes": {}})
    written = reflectance_for_scene(cube, _raw(folder, "landsat-c2-l2"), LocalRasterStore(tmp_path / "store"))
    with rasterio.open(folder / "QA_RADSAT.TIF") as radsat, rasterio.open(written.quality) as out:
        saturated = radsat_saturated(radsat.read(1))
        assert saturated.sum() > 0 and (out.read(1)[saturated] == 1).all()
