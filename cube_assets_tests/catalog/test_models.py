"""Catalog models on a migrated database: time zones, database-set timestamps, keys, cascades, checks."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.catalog.models import Band, Image, ImageFile, Product

BRT = dt.timezone(dt.timedelta(hours=-3))
SQUARE = {"type": "Polygon", "coordinates": [[[-45, -10], [-44, -10], [-44, -9], [-45, -9], [-45, -10]]]}


def _image(image_id: str = "S2-16D:001002:2024-01-01", **overrides: object) -> Image:
    values: dict[str, object] = {
        "id": image_id,
        "product_id": "cube:S2-16D",
        "name": image_id,
        "acquired": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "geometry": SQUARE,
        "min_lon": -45.0,
        "min_lat": -10.0,
        "max_lon": -44.0,
        "max_lat": -9.0,
        "crs": "EPSG:32723",
    }
    values.update(overrides)
    return Image(**values)


@pytest.fixture
def product(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        session.add(Product(id="cube:S2-16D", name="Sentinel-2 16-day cube"))
    return "cube:S2-16D"


def test_acquired_reads_back_as_the_same_instant_in_utc(sessions: sessionmaker[Session], product: str) -> None:
    with sessions.begin() as session:
        session.add(_image(acquired=dt.datetime(2024, 1, 1, 21, 30, tzinfo=BRT)))

    with sessions() as session:
        acquired = session.scalars(select(Image.acquired)).one()

    assert acquired == dt.datetime(2024, 1, 2, 0, 30, tzinfo=dt.UTC)
    assert acquired.utcoffset() == dt.timedelta(0)


def test_naive_acquired_is_refused(sessions: sessionmaker[Session], product: str) -> None:
    with pytest.raises(StatementError, match="no time zone"):
        with sessions.begin() as session:
            session.add(_image(acquired=dt.datetime(2024, 1, 1)))


def test_created_and_modified_come_from_the_database_clock(sessions: sessionmaker[Session], product: str) -> None:
    before = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        session.add(_image())
    after = dt.datetime.now(dt.UTC)

    with sessions() as session:
        created, modified = session.execute(select(Image.created, Image.modified)).one()

    assert created == modified
    assert before - dt.timedelta(seconds=5) <= created <= after + dt.timedelta(seconds=5)


def test_orm_update_moves_modified_but_not_created(sessions: sessionmaker[Session], product: str) -> None:
    with sessions.begin() as session:
        session.add(_image())
    with sessions() as session:
        created, modified = session.execute(select(Image.created, Image.modified)).one()
    time.sleep(0.01)

    with sessions.begin() as session:
        session.get(Image, "S2-16D:001002:2024-01-01").cloud_fraction = 0.25  # type: ignore[union-attr]  # the row was saved by the test just before

    with sessions() as session:
        created_after, modified_after = session.execute(select(Image.created, Image.modified)).one()
    assert created_after == created
    assert modified_after > modified


def test_deleting_an_image_deletes_its_files(sessions: sessionmaker[Session], product: str) -> None:
    with sessions.begin() as session:
        image = _image()
        image.files = [ImageFile(band="B04", href="/cube/b04.tif"), ImageFile(band="B08", href="/cube/b08.tif")]
        session.add(image)

    with sessions.begin() as session:
        session.execute(delete(Image))  # database-level ON DELETE CASCADE, not the ORM

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ImageFile)) == 0


def test_deleting_a_product_with_images_is_refused(sessions: sessionmaker[Session], product: str) -> None:
    with sessions.begin() as session:
        session.add(_image())

    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.execute(delete(Product))


def test_image_of_unknown_product_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(_image(product_id="no-such-product"))


def test_band_name_is_unique_per_product(sessions: sessionmaker[Session], product: str) -> None:
    band = {"type": "spectral", "data_type": "UInt16", "resolution": 10.0, "band_index": 0}
    with sessions.begin() as session:
        session.add(Product(id="sentinel-2-l2a", name="Sentinel-2 L2A"))
        session.add(Band(product_id=product, name="B04", **band))
        session.add(Band(product_id="sentinel-2-l2a", name="B04", **band))  # other product: fine

    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(Band(product_id=product, name="B04", **band))


def test_product_bands_are_ordered_by_band_index(sessions: sessionmaker[Session], product: str) -> None:
    with sessions.begin() as session:
        for index, name in [(2, "NDVI"), (0, "B04"), (1, "B08")]:
            session.add(
                Band(product_id=product, name=name, type="spectral", data_type="Int16", resolution=10, band_index=index)
            )

    with sessions() as session:
        names = [band.name for band in session.get(Product, product).bands]  # type: ignore[union-attr]  # the row was saved by the test just before

    assert names == ["B04", "B08", "NDVI"]


def test_json_none_is_stored_as_sql_null(sessions: sessionmaker[Session], product: str) -> None:
    with sessions.begin() as session:
        session.add(Band(product_id=product, name="SCL", type="class", data_type="UInt8", resolution=20, band_index=0))

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Band).where(Band.class_labels.is_(None))) == 1


def test_unknown_band_type_is_refused_by_the_database(sessions: sessionmaker[Session], product: str) -> None:
    with pytest.raises(IntegrityError, match="ck_bands_type"):
        with sessions.begin() as session:
            session.add(
                Band(product_id=product, name="B04", type="optical", data_type="UInt16", resolution=10, band_index=0)
            )


def test_cloud_fraction_above_one_is_refused_by_the_database(sessions: sessionmaker[Session], product: str) -> None:
    with pytest.raises(IntegrityError, match="ck_images_cloud_fraction_range"):
        with sessions.begin() as session:
            session.add(_image(cloud_fraction=1.5))


def test_json_columns_round_trip_nested_values(sessions: sessionmaker[Session], product: str) -> None:
    properties = {"sensor": {"platform": "sentinel-2a", "orbit": 23}, "quality": [0.5, None, True]}
    with sessions.begin() as session:
        session.add(_image(properties=properties, tags=["composite", "16D"], geotransform=[1, 10, 0, 2, 0, -10]))

    with sessions() as session:
        image = session.get(Image, "S2-16D:001002:2024-01-01")
        assert image is not None
        assert (image.properties, image.tags, image.geotransform) == (
            properties,
            ["composite", "16D"],
            [1, 10, 0, 2, 0, -10],
        )
