"""Idempotent upserts, record validation and image search of the catalog, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema
from cube_assets.catalog.models import Band, Image, ImageFile, Product
from cube_assets.catalog.repository import (
    BandRecord,
    ImageFileRecord,
    ImageRecord,
    ProductRecord,
    image_files,
    search_images,
    upsert_bands,
    upsert_image,
    upsert_product,
)
from cube_assets.errors import CatalogError
from cube_assets_tests.processes import run_in_processes

CUBE = "cube:S2-16D"
SCENES = "sentinel-2-l2a"
UTC = dt.UTC


def _at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def _box(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> dict[str, Any]:
    return shapely.geometry.mapping(shapely.geometry.box(min_lon, min_lat, max_lon, max_lat))


def _product(**overrides: Any) -> ProductRecord:
    values: dict[str, Any] = {
        "id": CUBE,
        "name": "Sentinel-2 16-day cube",
        "description": "Median composites",
        "start_datetime": _at(2024, 1, 1),
        "tags": ["cube", "sentinel-2"],
        "properties": {"grid": "BDC_SM", "period_days": 16},
    }
    values.update(overrides)
    return ProductRecord(**values)


def _image(image_id: str = "S2-16D:001002:2024-01-01", **overrides: Any) -> ImageRecord:
    values: dict[str, Any] = {
        "id": image_id,
        "product_id": CUBE,
        "name": image_id,
        "acquired": _at(2024, 1, 1),
        "acquired_end": _at(2024, 1, 16, 23, 59, 59),
        "geometry": _box(-45, -10, -44, -9),
        "crs": "EPSG:32723",
        "geotransform": (500000.0, 10.0, 0.0, 9000000.0, 0.0, -10.0),
        "width": 10980,
        "height": 10980,
        "pixel_size_x": 10.0,
        "pixel_size_y": 10.0,
        "cloud_fraction": 0.1,
        "fill_fraction": 0.95,
        "tile": "001002",
        "period_start": dt.date(2024, 1, 1),
        "properties": {"composite": "median", "observations": 7},
        "tags": ["composite"],
        "files": (
            ImageFileRecord("B04", f"s3://cubes/{image_id}/B04.tif", 1000),
            ImageFileRecord("B08", f"s3://cubes/{image_id}/B08.tif", 1100),
        ),
    }
    values.update(overrides)
    return ImageRecord(**values)


def _band(name: str = "B04", band_index: int = 0, **overrides: Any) -> BandRecord:
    values: dict[str, Any] = {
        "name": name,
        "type": "spectral",
        "data_type": "Int16",
        "resolution": 10.0,
        "band_index": band_index,
        "data_range": (0, 10000),
        "nodata": -9999,
        "wavelength_min": 0.65,
        "wavelength_max": 0.68,
        "wavelength_center": 0.665,
    }
    values.update(overrides)
    return BandRecord(**values)


def _write(sessions: sessionmaker[Session], *records: ProductRecord | ImageRecord) -> list[bool]:
    with sessions.begin() as session:
        return [
            upsert_product(session, r) if isinstance(r, ProductRecord) else upsert_image(session, r) for r in records
        ]


def _times(
    sessions: sessionmaker[Session], model: type[Product] | type[Image], key: str
) -> tuple[dt.datetime, dt.datetime]:
    with sessions() as session:
        return session.execute(select(model.created, model.modified).where(model.id == key)).one()  # type: ignore[return-value]  # a Row of two datetimes


def _count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))  # type: ignore[return-value]  # a count is an int


# ---------------------------------------------------------------------------------------------
# Products and bands
# ---------------------------------------------------------------------------------------------


def test_upserting_a_product_twice_keeps_one_row_with_the_new_fields(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    _write(sessions, _product(name="S2 16D", tags=["cube"], properties={"grid": "BDC_MD"}))

    with sessions() as session:
        products = session.scalars(select(Product)).all()
    assert [(p.id, p.name, p.tags, p.properties) for p in products] == [(CUBE, "S2 16D", ["cube"], {"grid": "BDC_MD"})]


def test_reupserting_an_identical_product_keeps_modified(sessions: sessionmaker[Session]) -> None:
    assert _write(sessions, _product()) == [True]
    first = _times(sessions, Product, CUBE)
    time.sleep(0.01)

    assert _write(sessions, _product()) == [False]

    assert _times(sessions, Product, CUBE) == first


def test_changing_a_product_moves_modified_and_keeps_created(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    created, modified = _times(sessions, Product, CUBE)
    time.sleep(0.01)

    assert _write(sessions, _product(end_datetime=_at(2024, 12, 31))) == [True]

    created_after, modified_after = _times(sessions, Product, CUBE)
    assert created_after == created
    assert modified_after > modified


def test_upsert_bands_inserts_new_and_updates_changed_bands(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    with sessions.begin() as session:
        assert upsert_bands(session, CUBE, [_band("B04", 0), _band("B08", 1)]) == 2

    with sessions.begin() as session:
        written = upsert_bands(session, CUBE, [_band("B04", 0, nodata=0), _band("B08", 1), _band("NDVI", 2)])

    assert written == 2  # B04 changed, NDVI new, B08 identical
    with sessions() as session:
        bands = {b.name: (b.band_index, b.nodata) for b in session.scalars(select(Band))}
    assert bands == {"B04": (0, 0.0), "B08": (1, -9999.0), "NDVI": (2, -9999.0)}


def test_identical_bands_write_nothing_and_keep_product_modified(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    with sessions.begin() as session:
        upsert_bands(session, CUBE, [_band("B04", 0)])
    before = _times(sessions, Product, CUBE)
    time.sleep(0.01)

    with sessions.begin() as session:
        assert upsert_bands(session, CUBE, [_band("B04", 0)]) == 0

    assert _times(sessions, Product, CUBE) == before


def test_changed_band_moves_product_modified(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    with sessions.begin() as session:
        upsert_bands(session, CUBE, [_band("B04", 0)])
    _, modified = _times(sessions, Product, CUBE)
    time.sleep(0.01)

    with sessions.begin() as session:
        upsert_bands(session, CUBE, [_band("B04", 0, display_range=(0, 3000))])

    assert _times(sessions, Product, CUBE)[1] > modified


def test_band_class_labels_and_colormap_are_stored_with_string_keys(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    scl = _band(
        "SCL",
        0,
        type="class",
        data_type="UInt8",
        data_range=(0, 11),
        wavelength_min=None,
        wavelength_max=None,
        wavelength_center=None,
        class_labels={4: "vegetation", 9: "cloud high probability"},
        colormap={4: (0, 160, 0, 255), 9: (255, 255, 255)},
    )
    with sessions.begin() as session:
        upsert_bands(session, CUBE, [scl])

    with sessions() as session:
        band = session.get(Band, (CUBE, "SCL"))
        assert band is not None
        assert band.class_labels == {"4": "vegetation", "9": "cloud high probability"}
        assert band.colormap == {"4": [0, 160, 0, 255], "9": [255, 255, 255]}


def test_upsert_bands_of_an_unknown_product_names_it(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(CatalogError, match="'cube:missing'"):
        with sessions.begin() as session:
            upsert_bands(session, "cube:missing", [_band()])


def test_upsert_bands_refuses_a_band_listed_twice(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product())
    with pytest.raises(CatalogError, match=r"name \['B04'\]"):
        with sessions.begin() as session:
            upsert_bands(session, CUBE, [_band("B04", 0), _band("B04", 1)])


# ---------------------------------------------------------------------------------------------
# Images and files
# ---------------------------------------------------------------------------------------------


def test_upserting_an_image_twice_keeps_one_row_with_the_new_fields(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())
    _write(sessions, _image(cloud_fraction=0.3, tags=["composite", "reprocessed"]))

    with sessions() as session:
        images = session.scalars(select(Image)).all()
    assert [(i.id, i.cloud_fraction, i.tags) for i in images] == [
        ("S2-16D:001002:2024-01-01", 0.3, ["composite", "reprocessed"])
    ]


def test_image_bbox_columns_come_from_the_geometry(sessions: sessionmaker[Session]) -> None:
    triangle = {"type": "Polygon", "coordinates": [[[-45.5, -10.25], [-44.0, -10.0], [-44.5, -9.0], [-45.5, -10.25]]]}
    _write(sessions, _product(), _image(geometry=triangle))

    with sessions() as session:
        image = session.scalars(select(Image)).one()
    assert (image.min_lon, image.min_lat, image.max_lon, image.max_lat) == (-45.5, -10.25, -44.0, -9.0)
    assert image.geometry == triangle


def test_image_fields_round_trip(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())

    with sessions() as session:
        image = session.scalars(select(Image)).one()
    assert image.acquired == _at(2024, 1, 1)
    assert image.acquired_end == _at(2024, 1, 16, 23, 59, 59)
    assert image.geotransform == [500000.0, 10.0, 0.0, 9000000.0, 0.0, -10.0]
    assert (image.width, image.height, image.crs, image.tile) == (10980, 10980, "EPSG:32723", "001002")
    assert image.period_start == dt.date(2024, 1, 1)
    assert image.properties == {"composite": "median", "observations": 7}


def test_reupserting_an_identical_image_keeps_modified(sessions: sessionmaker[Session]) -> None:
    assert _write(sessions, _product(), _image()) == [True, True]
    before = _times(sessions, Image, "S2-16D:001002:2024-01-01")
    time.sleep(0.01)

    assert _write(sessions, _product(), _image()) == [False, False]

    assert _times(sessions, Image, "S2-16D:001002:2024-01-01") == before


def test_reordered_property_keys_are_not_a_change(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image(properties={"a": 1, "b": {"y": 2, "x": 3}}))

    assert _write(sessions, _image(properties={"b": {"x": 3, "y": 2}, "a": 1})) == [False]


def test_changing_an_image_moves_modified_and_keeps_created(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())
    created, modified = _times(sessions, Image, "S2-16D:001002:2024-01-01")
    time.sleep(0.01)

    assert _write(sessions, _image(fill_fraction=0.5)) == [True]

    created_after, modified_after = _times(sessions, Image, "S2-16D:001002:2024-01-01")
    assert created_after == created
    assert modified_after > modified


def test_upserting_an_image_replaces_its_files(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())

    _write(
        sessions,
        _image(files=(ImageFileRecord("B04", "/cube/v2/B04.tif", 999), ImageFileRecord("B11", "/cube/v2/B11.tif"))),
    )

    with sessions() as session:
        assert image_files(session, "S2-16D:001002:2024-01-01") == {
            "B04": "/cube/v2/B04.tif",
            "B11": "/cube/v2/B11.tif",
        }
        sizes = dict(session.execute(select(ImageFile.band, ImageFile.size_bytes)).all())
    assert sizes == {"B04": 999, "B11": None}


def test_upserting_an_image_without_files_deletes_them(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())

    _write(sessions, _image(files=()))

    with sessions() as session:
        assert image_files(session, "S2-16D:001002:2024-01-01") == {}
    assert _count(sessions, ImageFile) == 0


def test_a_file_change_alone_moves_image_modified(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())
    _, modified = _times(sessions, Image, "S2-16D:001002:2024-01-01")
    time.sleep(0.01)

    assert _write(sessions, _image(files=(ImageFileRecord("B04", "s3://cubes/other/B04.tif", 1000),))) == [True]

    assert _times(sessions, Image, "S2-16D:001002:2024-01-01")[1] > modified


def test_files_of_other_images_are_untouched(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image("a"), _image("b"))

    _write(sessions, _image("a", files=()))

    with sessions() as session:
        assert image_files(session, "b") == {"B04": "s3://cubes/b/B04.tif", "B08": "s3://cubes/b/B08.tif"}


def test_upsert_image_refreshes_an_image_already_loaded_in_the_session(sessions: sessionmaker[Session]) -> None:
    _write(sessions, _product(), _image())
    with sessions.begin() as session:
        loaded = session.get(Image, "S2-16D:001002:2024-01-01")
        assert loaded is not None and loaded.cloud_fraction == 0.1

        upsert_image(session, _image(cloud_fraction=0.7))

        assert loaded.cloud_fraction == 0.7


def test_upsert_image_of_an_unknown_product_names_image_and_product(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(CatalogError, match=r"image 'x'.*product 'cube:missing'"):
        with sessions.begin() as session:
            upsert_image(session, _image("x", product_id="cube:missing"))


def test_image_files_of_an_unknown_image_raises(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(CatalogError, match="'nope'"):
        image_files(session, "nope")


# ---------------------------------------------------------------------------------------------
# Validation: every error names the object and the bad field
# ---------------------------------------------------------------------------------------------

BOW_TIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
UTM_SQUARE = _box(500000, 9000000, 600000, 9100000)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tags": [f"t{i}" for i in range(33)]}, "tags"),
        ({"tags": ["a", "a"]}, "tags"),
        ({"tags": "composite"}, "tags"),
        ({"properties": {f"k{i}": i for i in range(51)}}, "properties"),
        ({"properties": {"when": dt.date(2024, 1, 1)}}, "properties"),
        ({"properties": {"ratio": float("nan")}}, "properties"),
        ({"cloud_fraction": 1.5}, "cloud_fraction"),
        ({"cloud_fraction": -0.1}, "cloud_fraction"),
        ({"cloud_fraction": float("nan")}, "cloud_fraction"),
        ({"fill_fraction": 2}, "fill_fraction"),
        ({"geometry": {"type": "Point", "coordinates": [0, 0]}}, "geometry"),
        ({"geometry": BOW_TIE}, "geometry"),
        ({"geometry": UTM_SQUARE}, "geometry"),
        ({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1]]]}}, "geometry"),
        ({"geometry": {"type": "Polygon", "coordinates": []}}, "geometry"),
        ({"acquired": dt.datetime(2024, 1, 1)}, "acquired"),
        ({"acquired_end": _at(2023, 12, 31)}, "acquired_end"),
        ({"geotransform": (1, 2, 3)}, "geotransform"),
        ({"width": 0}, "width"),
        ({"crs": ""}, "crs"),
        ({"period_start": _at(2024, 1, 1)}, "period_start"),
        ({"files": (ImageFileRecord("B04", "/a.tif"), ImageFileRecord("B04", "/b.tif"))}, "files"),
    ],
)
def test_invalid_image_record_names_image_and_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(CatalogError) as raised:
        _image("S2-16D:001002:2024-01-01", **overrides)

    message = str(raised.value)
    assert message.startswith("image 'S2-16D:001002:2024-01-01': "), message
    assert field in message, message


def test_valid_multipolygon_is_accepted_and_bounded() -> None:
    geometry = {
        "type": "MultiPolygon",
        "coordinates": [_box(-45, -10, -44, -9)["coordinates"], _box(-43, -12, -42, -11)["coordinates"]],
    }
    assert _image(geometry=geometry).bbox == (-45, -12, -42, -9)


def test_shapely_geometry_is_accepted() -> None:
    record = _image(geometry=shapely.geometry.box(-45, -10, -44, -9))
    assert record.geometry["type"] == "Polygon"
    assert record.bbox == (-45, -10, -44, -9)


def test_image_record_converts_datetimes_to_utc() -> None:
    brt = dt.timezone(dt.timedelta(hours=-3))
    record = _image(acquired=dt.datetime(2024, 1, 1, 22, tzinfo=brt), acquired_end=None)
    assert record.acquired == _at(2024, 1, 2, 1)
    assert record.acquired.tzinfo is UTC


def test_image_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _image().cloud_fraction = 0.5  # type: ignore[misc]  # assigning to a frozen record is the behaviour under test


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "optical"}, "type"),
        ({"data_type": "Byte"}, "data_type"),
        ({"resolution": 0}, "resolution"),
        ({"band_index": -1}, "band_index"),
        ({"data_range": (10, 0)}, "data_range"),
        ({"nodata": float("nan")}, "nodata"),
        ({"wavelength_center": 0.9}, "wavelength_center"),
        ({"colormap": {1: (0, 0, 300)}}, "colormap"),
    ],
)
def test_invalid_band_record_names_band_and_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(CatalogError) as raised:
        _band("B04", **overrides)

    message = str(raised.value)
    assert message.startswith("band 'B04': "), message
    assert field in message, message


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tags": [str(i) for i in range(33)]}, "tags"),
        ({"properties": {str(i): i for i in range(51)}}, "properties"),
        ({"start_datetime": dt.datetime(2024, 1, 1)}, "start_datetime"),
        ({"end_datetime": _at(2023, 1, 1)}, "end_datetime"),
    ],
)
def test_invalid_product_record_names_product_and_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(CatalogError) as raised:
        _product(**overrides)

    message = str(raised.value)
    assert message.startswith(f"product '{CUBE}': "), message
    assert field in message, message


def test_limits_are_inclusive() -> None:
    record = _image(tags=[f"t{i}" for i in range(32)], properties={f"k{i}": i for i in range(50)}, cloud_fraction=1)
    assert (len(record.tags), len(record.properties), record.cloud_fraction) == (32, 50, 1.0)


# ---------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def catalogued(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Four cube composites and one source scene.

    ====  ======  ======  =======================  ======  ==========================
    id    product tile    time                     cloud   lon / lat
    ====  ======  ======  =======================  ======  ==========================
    a     cube    001002  01-01 .. 01-16 23:59:59  0.10    -45..-44 / -10..-9
    b     cube    001002  01-17 .. 02-01 23:59:59  0.50    -45..-44 / -10..-9
    c     cube    002002  01-01 .. 01-16 23:59:59  0.05    -44..-43 / -10..-9
    d     cube    003003  02-02 .. 02-17 23:59:59  NULL     10..11  /  40..41
    e     scenes  23LLF   01-10 13:00 (instant)    0.20    -45.5..-44.5 / -10.5..-9.5
    ====  ======  ======  =======================  ======  ==========================
    """
    records: list[ProductRecord | ImageRecord] = [
        _product(),
        _product(id=SCENES, name="Sentinel-2 L2A"),
        _image("a"),
        _image(
            "b",
            acquired=_at(2024, 1, 17),
            acquired_end=_at(2024, 2, 1, 23, 59, 59),
            period_start=dt.date(2024, 1, 17),
            cloud_fraction=0.5,
        ),
        _image("c", geometry=_box(-44, -10, -43, -9), tile="002002", cloud_fraction=0.05),
        _image(
            "d",
            acquired=_at(2024, 2, 2),
            acquired_end=_at(2024, 2, 17, 23, 59, 59),
            period_start=dt.date(2024, 2, 2),
            geometry=_box(10, 40, 11, 41),
            tile="003003",
            cloud_fraction=None,
        ),
        _image(
            "e",
            product_id=SCENES,
            acquired=_at(2024, 1, 10, 13),
            acquired_end=None,
            geometry=_box(-45.5, -10.5, -44.5, -9.5),
            tile="23LLF",
            cloud_fraction=0.2,
            provider="element84",
            provider_id="S2A_23LLF_20240110_0_L2A",
            period_start=None,
        ),
    ]
    _write(sessions, *records)
    return sessions


def _ids(sessions: sessionmaker[Session], **filters: Any) -> list[str]:
    with sessions() as session:
        return [image.id for image in search_images(session, **filters)]


def test_search_without_filters_returns_all_ordered_by_acquired_then_id(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued) == ["a", "c", "e", "b", "d"]


def test_search_by_product(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, product_id=CUBE) == ["a", "c", "b", "d"]
    assert _ids(catalogued, product_id=SCENES) == ["e"]


def test_search_by_bbox_returns_images_whose_bbox_intersects(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, bbox=(-44.9, -9.9, -44.1, -9.1)) == ["a", "e", "b"]
    assert _ids(catalogued, bbox=(-43.5, -9.5, -43.2, -9.2)) == ["c"]
    assert _ids(catalogued, bbox=(10.5, 40.5, 12, 42)) == ["d"]
    assert _ids(catalogued, bbox=(0, 0, 1, 1)) == []


def test_search_bbox_touching_an_edge_counts_as_intersecting(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, bbox=(-43.0, -9.5, -42.0, -9.2)) == ["c"]


def test_search_by_time_returns_images_whose_span_overlaps(catalogued: sessionmaker[Session]) -> None:
    # a spans 01-01..01-16 and started before `start`: it still overlaps.
    assert _ids(catalogued, start=_at(2024, 1, 12), end=_at(2024, 1, 20)) == ["a", "c", "b"]
    assert _ids(catalogued, start=_at(2024, 1, 10, 13), end=_at(2024, 1, 10, 13)) == ["a", "c", "e"]
    assert _ids(catalogued, start=_at(2024, 2, 1, 23, 59, 59, 1)) == ["d"]
    assert _ids(catalogued, end=_at(2023, 12, 31)) == []


def test_search_time_bounds_accept_any_time_zone(catalogued: sessionmaker[Session]) -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    # 2024-02-02 08:00 in Tokyo is 2024-02-01 23:00 UTC: inside b, before d.
    assert _ids(catalogued, start=dt.datetime(2024, 2, 2, 8, tzinfo=tokyo)) == ["b", "d"]


def test_search_by_max_cloud_fraction_is_inclusive_and_skips_unknown(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, max_cloud_fraction=0.1) == ["a", "c"]
    assert _ids(catalogued, max_cloud_fraction=1.0) == ["a", "c", "e", "b"]


def test_search_by_tile(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, tile="001002") == ["a", "b"]
    assert _ids(catalogued, tile="23LLF") == ["e"]


def test_search_by_period_start(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, period_start=dt.date(2024, 1, 1)) == ["a", "c"]
    assert _ids(catalogued, period_start=dt.date(2024, 1, 17)) == ["b"]
    assert _ids(catalogued, period_start=dt.date(2024, 1, 10)) == []


def test_search_combines_filters(catalogued: sessionmaker[Session]) -> None:
    assert _ids(
        catalogued,
        product_id=CUBE,
        bbox=(-45, -10, -43.5, -9),
        start=_at(2024, 1, 1),
        end=_at(2024, 1, 31),
        max_cloud_fraction=0.3,
    ) == ["a", "c"]


def test_search_limit_keeps_the_first_in_order(catalogued: sessionmaker[Session]) -> None:
    assert _ids(catalogued, limit=2) == ["a", "c"]


def test_searched_images_keep_their_files_after_the_session_closes(catalogued: sessionmaker[Session]) -> None:
    with catalogued() as session:
        [image] = search_images(session, tile="23LLF")

    assert {file.band: file.href for file in image.files} == {
        "B04": "s3://cubes/e/B04.tif",
        "B08": "s3://cubes/e/B08.tif",
    }


def test_search_filters_in_sql(catalogued: sessionmaker[Session], engine: Engine) -> None:
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        ids = _ids(
            catalogued, bbox=(-45, -10, -44, -9), start=_at(2024, 1, 1), max_cloud_fraction=0.2, tile="001002", limit=5
        )
    finally:
        event.remove(engine, "before_cursor_execute", capture)

    assert ids == ["a"]
    [sql] = [s for s in statements if "FROM images" in s]
    where = sql.split("WHERE", 1)[1]
    for fragment in ("images.min_lon <=", "images.max_lat >=", "images.cloud_fraction <=", "images.tile =", "coalesce"):
        assert fragment in where
    assert "LIMIT" in where


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"bbox": (-44, -10, -45, -9)}, "bbox"),
        ({"bbox": (-45, -10, -44)}, "bbox"),
        ({"bbox": (-200, -10, -44, -9)}, "bbox min_lon"),
        ({"start": dt.datetime(2024, 1, 1)}, "start"),
        ({"start": _at(2024, 2, 1), "end": _at(2024, 1, 1)}, "start"),
        ({"max_cloud_fraction": 1.5}, "max_cloud_fraction"),
        ({"limit": 0}, "limit"),
        ({"period_start": _at(2024, 1, 1)}, "period_start"),
    ],
)
def test_invalid_search_arguments_are_refused(
    sessions: sessionmaker[Session], filters: dict[str, Any], field: str
) -> None:
    with sessions() as session, pytest.raises(CatalogError, match=f"search_images: {field}"):
        search_images(session, **filters)


# ---------------------------------------------------------------------------------------------
# Concurrent writers
# ---------------------------------------------------------------------------------------------

WORKERS = 4
ITEMS_PER_WORKER = 20
STRIDE = 10  # worker k writes items k*STRIDE .. k*STRIDE+ITEMS_PER_WORKER-1: neighbours overlap by 10


def _concurrent_item(n: int) -> ImageRecord:
    return _image(
        f"S2-16D:{n:03d}:2024-01-01",
        tile=f"{n:03d}",
        files=(
            ImageFileRecord("B04", f"/cube/{n:03d}/B04.tif", n),
            ImageFileRecord("B08", f"/cube/{n:03d}/B08.tif", n),
        ),
    )


def _concurrent_writer(worker: int, url: str) -> None:
    """Run in a separate process: migrate, then upsert this worker's items one transaction each."""
    upgrade_schema(url)
    engine = create_catalog_engine(url)
    sessions = session_factory(engine)
    for n in range(worker * STRIDE, worker * STRIDE + ITEMS_PER_WORKER):
        with sessions.begin() as session:
            upsert_product(session, _product())
            upsert_image(session, _concurrent_item(n))
    engine.dispose()


def test_concurrent_writers_of_overlapping_items_store_each_item_once(catalog_url: str) -> None:
    # Separate processes, so SQLite file locking is exercised, not just one process's threads.
    outcomes = run_in_processes(_concurrent_writer, WORKERS, catalog_url, timeout_s=120)

    assert outcomes == {worker: None for worker in range(WORKERS)}, "\n".join(filter(None, outcomes.values()))
    expected = range((WORKERS - 1) * STRIDE + ITEMS_PER_WORKER)
    engine = create_catalog_engine(catalog_url)
    try:
        with session_factory(engine)() as session:
            ids = session.scalars(select(Image.id).order_by(Image.id)).all()
            files = session.execute(select(ImageFile.image_id, ImageFile.band, ImageFile.href)).all()
            products = session.scalars(select(Product.id)).all()
    finally:
        engine.dispose()
    assert ids == [f"S2-16D:{n:03d}:2024-01-01" for n in expected]
    assert sorted(files) == sorted(
        (f"S2-16D:{n:03d}:2024-01-01", band, f"/cube/{n:03d}/{band}.tif") for n in expected for band in ("B04", "B08")
    )
    assert products == [CUBE]
