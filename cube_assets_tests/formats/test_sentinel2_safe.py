"""Parsing real Sentinel-2 product and tile metadata, and finding band files in .SAFE folders.

Expected values were read by hand from the XML files in
``stactools-sentinel2/tests/data-files`` (see ``shared/data/real/SOURCES.md``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import MultiPolygon, Point, Polygon

from cube_assets.errors import InvalidScene
from cube_assets.formats.sentinel2_safe import (
    BAND_NAMES,
    normalize_band_name,
    open_safe,
    parse_product_metadata,
    parse_tile_metadata,
)

DATA_FILES = "stactools-sentinel2/tests/data-files"


@dataclass(frozen=True)
class ExpectedProduct:
    folder: str
    product_id: str
    product_type: str
    spacecraft: str
    sensing_time: datetime
    baseline: str
    baseline_version: tuple[int, int]
    tile_id: str
    cloud_cover: float
    nodata_pixel_percentage: float | None
    offset: float
    relative_orbit: int
    inside: tuple[tuple[float, float], ...]  # (lon, lat) points in the footprint
    outside: tuple[tuple[float, float], ...]


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


PRODUCTS = [
    ExpectedProduct(
        folder="S2A_MSIL1C_20200717T221941_R029_T01LAC_20200717T234135.SAFE",
        # PRODUCT_URI keeps the N0209 the shortened folder name lacks.
        product_id="S2A_MSIL1C_20200717T221941_N0209_R029_T01LAC_20200717T234135",
        product_type="L1C",
        spacecraft="S2A",
        sensing_time=_utc(2020, 7, 17, 22, 19, 41, 24000),
        baseline="02.09",
        baseline_version=(2, 9),
        tile_id="T01LAC",
        cloud_cover=5.4828,
        nodata_pixel_percentage=None,
        offset=0.0,
        relative_orbit=29,
        # Crosses the antimeridian: both sides are in, Greenwich is not.
        inside=((179.5, -15.8), (-179.85, -15.85)),
        outside=((0.0, -15.8), (-179.5, -15.8)),
    ),
    ExpectedProduct(
        folder="S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE",
        product_id="S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248",
        product_type="L1C",
        spacecraft="S2A",
        sensing_time=_utc(2021, 9, 8, 4, 27, 1, 24000),
        baseline="03.01",
        baseline_version=(3, 1),
        tile_id="T46RER",
        cloud_cover=88.2972,
        nodata_pixel_percentage=None,
        offset=0.0,
        relative_orbit=133,
        inside=((93.1, 27.5),),
        outside=((93.4, 27.1),),
    ),
    ExpectedProduct(
        folder="S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857.SAFE",
        product_id="S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857",
        product_type="L2A",
        spacecraft="S2A",
        sensing_time=_utc(2019, 2, 12, 19, 26, 51, 24000),
        baseline="02.12",
        baseline_version=(2, 12),
        tile_id="T07HFE",
        cloud_cover=51.580326,
        nodata_pixel_percentage=96.769554,
        offset=0.0,
        relative_orbit=13,
        inside=((-139.75, -31.68),),
        outside=((-139.9, -31.75),),
    ),
    ExpectedProduct(
        folder="S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE",
        product_id="S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454",
        product_type="L2A",
        spacecraft="S2A",
        sensing_time=_utc(2022, 10, 5, 11, 54, 11, 24000),
        baseline="04.00",
        baseline_version=(4, 0),
        tile_id="T29UNU",
        cloud_cover=59.769726,
        nodata_pixel_percentage=40.419397,
        offset=-1000.0,
        relative_orbit=23,
        inside=((-8.6, 52.8),),
        outside=((-7.0, 52.8),),
    ),
    ExpectedProduct(
        folder="S2A_MSIL2A_20230625T234621_N0509_R073_T01WCP_20230626T022157.SAFE",
        product_id="S2A_MSIL2A_20230625T234621_N0509_R073_T01WCP_20230626T022157",
        product_type="L2A",
        spacecraft="S2A",
        sensing_time=_utc(2023, 6, 25, 23, 46, 21, 24000),
        baseline="05.09",
        baseline_version=(5, 9),
        tile_id="T01WCP",
        cloud_cover=15.047897000000003,
        nodata_pixel_percentage=7.0e-6,
        offset=-1000.0,
        relative_orbit=73,
        inside=((179.0, 66.0), (-179.5, 66.2)),
        outside=((0.0, 66.0), (-178.0, 66.2)),
    ),
    ExpectedProduct(
        folder="S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE",
        product_id="S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126",
        product_type="L2A",
        spacecraft="S2B",
        sensing_time=_utc(2022, 4, 13, 15, 7, 59, 24000),
        baseline="04.00",
        baseline_version=(4, 0),
        tile_id="T33XWJ",
        cloud_cover=98.944211,
        nodata_pixel_percentage=98.441625,
        offset=-1000.0,
        relative_orbit=25,
        inside=((16.0, 80.14),),
        outside=((16.0, 80.12),),
    ),
]


@dataclass(frozen=True)
class ExpectedTile:
    folder: str
    tile_id: str
    epsg: int
    sensing_time: datetime
    ulx: float
    uly: float


TILES = [
    ExpectedTile(PRODUCTS[0].folder, "T01LAC", 32701, _utc(2020, 7, 17, 22, 20, 29, 740125), 99960, 8300020),
    ExpectedTile(PRODUCTS[1].folder, "T46RER", 32646, _utc(2021, 9, 8, 4, 40, 48, 758475), 499980, 3100020),
    ExpectedTile(PRODUCTS[2].folder, "T07HFE", 32707, _utc(2019, 2, 12, 19, 33, 32, 161000), 600000, 6500020),
    ExpectedTile(PRODUCTS[3].folder, "T29UNU", 32629, _utc(2022, 10, 5, 11, 56, 49, 581767), 499980, 5900040),
    ExpectedTile(PRODUCTS[4].folder, "T01WCP", 32601, _utc(2023, 6, 25, 23, 47, 55, 578328), 300000, 7400040),
    ExpectedTile(PRODUCTS[5].folder, "T33XWJ", 32633, _utc(2022, 4, 13, 15, 8, 7, 846358), 499980, 8900040),
]


def _ids(items: list) -> list[str]:
    return [re.search(r"_(T\d{2}[A-Z]{3})_", item.folder).group(1) for item in items]


@pytest.fixture(scope="module")
def data_files(real_data: Path) -> Path:
    return real_data / DATA_FILES


def test_every_real_metadata_file_is_covered(data_files: Path) -> None:
    product_files = sorted(p.parent.name for p in data_files.glob("*.SAFE/MTD_MSIL*.xml"))
    tile_files = sorted(p.parents[2].name for p in data_files.glob("*.SAFE/GRANULE/*/MTD_TL.xml"))
    assert product_files == sorted(e.folder for e in PRODUCTS)
    assert tile_files == sorted(e.folder for e in TILES)


# -- product metadata ------------------------------------------------------------------------


@pytest.mark.parametrize("expected", PRODUCTS, ids=_ids(PRODUCTS))
def test_product_metadata_matches_the_xml(data_files: Path, expected: ExpectedProduct) -> None:
    metadata = parse_product_metadata(data_files / expected.folder)

    assert metadata.product_id == expected.product_id
    assert metadata.product_uri == expected.product_id + ".SAFE"
    assert metadata.product_type == expected.product_type
    assert metadata.spacecraft == expected.spacecraft
    assert metadata.sensing_time == expected.sensing_time
    assert metadata.sensing_time.utcoffset().total_seconds() == 0
    assert metadata.processing_baseline == expected.baseline
    assert metadata.baseline_version == expected.baseline_version
    assert metadata.tile_id == expected.tile_id
    assert metadata.cloud_cover == pytest.approx(expected.cloud_cover, abs=1e-9)
    if expected.nodata_pixel_percentage is None:
        assert metadata.nodata_pixel_percentage is None
    else:
        assert metadata.nodata_pixel_percentage == pytest.approx(expected.nodata_pixel_percentage, abs=1e-9)
    assert metadata.quantification_value == 10000.0
    assert metadata.relative_orbit == expected.relative_orbit


@pytest.mark.parametrize("expected", PRODUCTS, ids=_ids(PRODUCTS))
def test_offsets_are_given_for_every_band_by_name(data_files: Path, expected: ExpectedProduct) -> None:
    metadata = parse_product_metadata(data_files / expected.folder)

    assert tuple(metadata.band_offsets) == BAND_NAMES
    assert set(metadata.band_offsets.values()) == {expected.offset}


@pytest.mark.parametrize("expected", PRODUCTS, ids=_ids(PRODUCTS))
def test_footprint_is_lon_lat_and_covers_the_swath(data_files: Path, expected: ExpectedProduct) -> None:
    footprint = parse_product_metadata(data_files / expected.folder).footprint

    for lon, lat in expected.inside:
        assert footprint.contains(Point(lon, lat)), (lon, lat)
    for lon, lat in expected.outside:
        assert not footprint.contains(Point(lon, lat)), (lon, lat)


def test_mtd_file_path_gives_the_same_metadata_as_the_folder(data_files: Path) -> None:
    folder = data_files / PRODUCTS[3].folder

    assert parse_product_metadata(folder / "MTD_MSIL2A.xml") == parse_product_metadata(folder)


def test_t29unu_radiometry_turns_dn_into_reflectance(data_files: Path) -> None:
    metadata = parse_product_metadata(data_files / PRODUCTS[3].folder)
    scale, offset = metadata.scale_and_offset("B04")

    assert metadata.offset("B8A") == -1000.0
    assert 1000 * scale + offset == pytest.approx(0.0)
    assert 3500 * scale + offset == pytest.approx(0.25)


def test_baselines_compare_as_versions(data_files: Path) -> None:
    old = parse_product_metadata(data_files / PRODUCTS[2].folder)  # 02.12
    new = parse_product_metadata(data_files / PRODUCTS[4].folder)  # 05.09

    assert old.baseline_version < (4, 0) <= new.baseline_version
    assert old.baseline_number == pytest.approx(2.12)
    assert new.baseline_number == pytest.approx(5.09)


def test_antimeridian_footprint_is_split_not_wrapped_round_the_globe(data_files: Path) -> None:
    footprint = parse_product_metadata(data_files / PRODUCTS[0].folder).footprint

    assert isinstance(footprint, MultiPolygon)
    assert len(footprint.geoms) == 2
    # The tile covers about 1 square degree; wrapped the wrong way it would cover ~360.
    assert footprint.area == pytest.approx(1.015, abs=0.01)


def test_footprint_of_an_ordinary_product_is_one_polygon(data_files: Path) -> None:
    footprint = parse_product_metadata(data_files / PRODUCTS[3].folder).footprint

    assert isinstance(footprint, Polygon)
    assert footprint.bounds == pytest.approx((-9.000305, 52.25776004518753, -7.7604675, 53.24962646775486))


def test_offset_of_an_unknown_band_names_the_product(data_files: Path) -> None:
    metadata = parse_product_metadata(data_files / PRODUCTS[3].folder)

    with pytest.raises(InvalidScene, match=r"S2A_MSIL2A_20221005T115411.*'B13'"):
        metadata.offset("B13")


@pytest.mark.parametrize(("raw", "normalized"), [("B1", "B01"), ("b8a", "B8A"), ("B12", "B12"), ("scl", "SCL")])
def test_band_names_are_normalized(raw: str, normalized: str) -> None:
    assert normalize_band_name(raw) == normalized


# -- tile metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("expected", TILES, ids=_ids(TILES))
def test_tile_metadata_matches_the_xml(data_files: Path, expected: ExpectedTile) -> None:
    tile = parse_tile_metadata(data_files / expected.folder)

    assert tile.tile_id == expected.tile_id
    assert tile.epsg == expected.epsg
    assert tile.sensing_time == expected.sensing_time
    assert dict(tile.sizes) == {10: (10980, 10980), 20: (5490, 5490), 60: (1830, 1830)}
    assert set(tile.origins.values()) == {(expected.ulx, expected.uly)}
    assert tile.transform(60).a == 60.0 and tile.transform(60).e == -60.0
    assert tile.bounds() == (expected.ulx, expected.uly - 109800, expected.ulx + 109800, expected.uly)


def test_tile_grid_at_an_unknown_resolution_is_an_error(data_files: Path) -> None:
    tile = parse_tile_metadata(data_files / PRODUCTS[3].folder)

    with pytest.raises(InvalidScene, match=r"no 30 m grid.*10 m, 20 m, 60 m"):
        tile.transform(30)


def test_tile_metadata_file_path_gives_the_same_result(data_files: Path) -> None:
    folder = data_files / PRODUCTS[3].folder
    mtd = next((folder / "GRANULE").glob("*/MTD_TL.xml"))

    assert parse_tile_metadata(mtd) == parse_tile_metadata(folder)


# -- opened products -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t29unu(t29unu_safe: Path):
    return open_safe(t29unu_safe)


def test_t29unu_band_files_are_those_on_disk(t29unu) -> None:
    found = {band: sorted(files) for band, files in t29unu.band_files.items()}

    assert found == {"B02": [60], "B03": [60], "B04": [60], "B8A": [60], "B11": [60], "SCL": [20, 60]}
    assert t29unu.quality_band == "SCL"
    assert t29unu.pvi_path is None
    assert t29unu.tile_metadata.epsg == 32629
    assert t29unu.metadata.cloud_cover == 59.769726


def test_band_path_defaults_to_the_finest_file(t29unu) -> None:
    assert t29unu.band_path("B04").name == "T29UNU_20221005T115411_B04_60m.jp2"
    assert t29unu.band_path("SCL").name == "T29UNU_20221005T115411_SCL_20m.jp2"


def test_band_path_at_an_existing_resolution(t29unu) -> None:
    assert t29unu.band_path("SCL", 20).name == "T29UNU_20221005T115411_SCL_20m.jp2"
    assert t29unu.band_path("SCL", 60).name == "T29UNU_20221005T115411_SCL_60m.jp2"
    assert t29unu.band_path("SCL", 20).parent.name == "R20m"


def test_band_path_falls_back_to_the_finest_coarser_file(t29unu) -> None:
    assert t29unu.band_path("B02", 10).name == "T29UNU_20221005T115411_B02_60m.jp2"
    assert t29unu.band_path("SCL", 10).name == "T29UNU_20221005T115411_SCL_20m.jp2"


def test_band_path_without_coarser_fallback_names_band_and_resolutions(t29unu) -> None:
    with pytest.raises(InvalidScene, match=r"S2A_MSIL2A_20221005T115411.*band B02 not available at 10 m.*60 m"):
        t29unu.band_path("B02", 10, allow_coarser=False)


def test_band_path_never_returns_a_finer_file(t29unu) -> None:
    with pytest.raises(InvalidScene, match=r"band SCL has no file at 120 m or coarser.*20 m, 60 m"):
        t29unu.band_path("SCL", 120)


def test_missing_band_names_the_band_and_what_is_there(t29unu) -> None:
    with pytest.raises(InvalidScene, match=r"S2A_MSIL2A_20221005T115411.*band B05 missing in archive.*B02, B03"):
        t29unu.band_path("B05")


def test_band_path_accepts_unpadded_names(t29unu) -> None:
    assert t29unu.band_path("b2") == t29unu.band_path("B02")


def _l1c_copy(data_files: Path, tmp_path: Path, band_files: list[str]) -> Path:
    """The real T46RER L1C metadata in a .SAFE with (empty) band files of the given names."""
    source = data_files / PRODUCTS[1].folder
    safe = tmp_path / source.name
    granule = safe / "GRANULE" / "L1C_T46RER_A032448_20210908T043714"
    (granule / "IMG_DATA").mkdir(parents=True)
    shutil.copy(source / "MTD_MSIL1C.xml", safe / "MTD_MSIL1C.xml")
    shutil.copy(source / "GRANULE" / granule.name / "MTD_TL.xml", granule / "MTD_TL.xml")
    for name in band_files:
        (granule / "IMG_DATA" / name).write_bytes(b"")
    return safe


def test_l1c_band_files_get_their_native_resolution(data_files: Path, tmp_path: Path) -> None:
    names = ["T46RER_20210908T042701_B04.jp2", "T46RER_20210908T042701_B8A.jp2", "T46RER_20210908T042701_B10.jp2"]
    product = open_safe(_l1c_copy(data_files, tmp_path, names))

    assert {band: dict(files) for band, files in product.band_files.items()} == {
        "B04": {10: product.granule_dir / "IMG_DATA" / names[0]},
        "B8A": {20: product.granule_dir / "IMG_DATA" / names[1]},
        "B10": {60: product.granule_dir / "IMG_DATA" / names[2]},
    }
    assert product.quality_band is None
    assert product.metadata.product_type == "L1C"


# -- errors ----------------------------------------------------------------------------------


def test_missing_product_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidScene, match=r"nowhere\.SAFE: no such product folder"):
        parse_product_metadata(tmp_path / "nowhere.SAFE")


def test_folder_without_metadata_is_named(tmp_path: Path) -> None:
    (tmp_path / "EMPTY.SAFE").mkdir()

    with pytest.raises(InvalidScene, match=r"EMPTY\.SAFE: no product metadata file"):
        parse_product_metadata(tmp_path / "EMPTY.SAFE")


def test_malformed_xml_is_an_invalid_scene(tmp_path: Path) -> None:
    mtd = tmp_path / "X.SAFE" / "MTD_MSIL2A.xml"
    mtd.parent.mkdir()
    mtd.write_text("<n1:Level-2A_User_Product><unclosed>")

    with pytest.raises(InvalidScene, match=r"MTD_MSIL2A\.xml: cannot parse XML"):
        parse_product_metadata(mtd.parent)


def _edited_t29unu_mtd(data_files: Path, tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    source = data_files / PRODUCTS[3].folder / "MTD_MSIL2A.xml"
    text = source.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    target = tmp_path / PRODUCTS[3].folder / "MTD_MSIL2A.xml"
    target.parent.mkdir()
    target.write_text(text, encoding="utf-8")
    return target


def test_missing_required_element_is_named(data_files: Path, tmp_path: Path) -> None:
    mtd = _edited_t29unu_mtd(data_files, tmp_path, ("<PROCESSING_BASELINE>04.00</PROCESSING_BASELINE>", ""))

    with pytest.raises(InvalidScene, match=r"element PROCESSING_BASELINE missing"):
        parse_product_metadata(mtd)


def test_baseline_4_without_offsets_is_refused(data_files: Path, tmp_path: Path) -> None:
    mtd = _edited_t29unu_mtd(
        data_files, tmp_path, ("<BOA_ADD_OFFSET band_id", "<IGNORED band_id"), ("</BOA_ADD_OFFSET>", "</IGNORED>")
    )

    with pytest.raises(InvalidScene, match=r"T29UNU.*baseline 04.00 but no BOA_ADD_OFFSET"):
        parse_product_metadata(mtd)


def test_product_and_tile_naming_different_tiles_is_refused(data_files: Path, tmp_path: Path) -> None:
    safe = _l1c_copy(data_files, tmp_path, [])
    mtd = safe / "MTD_MSIL1C.xml"
    mtd.write_text(mtd.read_text(encoding="utf-8").replace("_T46RER_", "_T46RES_"), encoding="utf-8")

    with pytest.raises(InvalidScene, match=r"product names tile T46RES but .*MTD_TL\.xml names T46RER"):
        open_safe(safe)
