"""The catalog object model: state, get/get_many/get_or_create/exists/save/delete, attribute rules, bands.

Every test runs on SQLite and on the real PostgreSQL test server (``catalog`` fixture).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import event, select

from cube_assets.catalog.database import session_factory, upgrade_schema
from cube_assets.catalog.models import Band as BandRow
from cube_assets.catalog.repository import (
    BandRecord,
    ImageFileRecord,
    ImageRecord,
    ProductRecord,
    upsert_bands,
    upsert_image,
    upsert_product,
)
from cube_assets.client import (
    Band,
    Catalog,
    ClassBand,
    ConflictError,
    File,
    GenericBand,
    Image,
    InvalidAttributeError,
    MaskBand,
    NotFoundError,
    ObjectState,
    Product,
    SpectralBand,
    connect,
    disconnect,
)
from cube_assets.errors import CatalogError
from cube_assets_tests.client.objects_fixtures import catalog  # noqa: F401 - fixture

UTC = dt.UTC


def _product(catalog: Catalog | None, product_id: str = "cube-LCF", **attributes: Any) -> Product:
    values = {"name": "Cube LCF", "tags": ["cube"], "properties": {"grid": "BDC_SM"}}
    values.update(attributes)
    return Product(catalog=catalog, id=product_id, **values)


def _image(catalog: Catalog | None, image_id: str = "img-1", **attributes: Any) -> Image:
    values: dict[str, Any] = {
        "product_id": "cube-LCF",
        "acquired": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "geometry": shapely.geometry.box(-45, -10, -44, -9),
        "crs": "EPSG:32723",
        "files": {"B04": File("/data/img-1_B04.tif", 1234)},
    }
    values.update(attributes)
    return Image(catalog=catalog, id=image_id, **values)


@contextlib.contextmanager
def _statements(catalog: Catalog) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements.append(statement)

    event.listen(catalog.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(catalog.engine, "before_cursor_execute", record)


# ------------------------------------------------------------------------------ state


def test_a_new_product_is_unsaved_until_saved(catalog: Catalog) -> None:
    product = _product(catalog)

    assert product.state == ObjectState.UNSAVED
    assert product.created is None
    product.save()

    assert product.state == ObjectState.SAVED
    assert product.created is not None and product.created.tzinfo is not None
    assert Product.exists("cube-LCF", catalog=catalog)


def test_saving_an_unchanged_object_touches_no_database(catalog: Catalog) -> None:
    product = _product(catalog).save()
    image = _image(catalog).save()

    with _statements(catalog) as statements:
        product.save()
        image.save()
        Product.get("cube-LCF", catalog=catalog).save()  # type: ignore[union-attr]  # saved by the test or its fixture just before

    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")  # the get; no write


def test_changing_an_attribute_makes_it_modified_and_save_stores_it(catalog: Catalog) -> None:
    product = _product(catalog).save()
    created, modified = product.created, product.modified

    product.description = "Least cloud first"
    assert product.state == ObjectState.MODIFIED
    product.save()

    stored = Product.get("cube-LCF", catalog=catalog)
    assert stored is not None and stored.description == "Least cloud first"
    assert product.state == ObjectState.SAVED
    assert product.created == created and product.modified is not None and product.modified > modified  # type: ignore[operator]  # both timestamps are set once the product is saved


def test_setting_back_the_saved_value_is_saved_again(catalog: Catalog) -> None:
    product = _product(catalog).save()

    product.name = "Other"
    product.name = "Cube LCF"

    assert product.state == ObjectState.SAVED


@pytest.mark.parametrize(
    "change",
    [
        lambda image: image.tags.append("late"),
        lambda image: image.properties.update({"efficacy": 0.5}),
        lambda image: image.files.update({"B08": File("/data/img-1_B08.tif", 99)}),
    ],
    ids=["tags", "properties", "files"],
)
def test_in_place_changes_are_detected_and_saved(catalog: Catalog, change: Any) -> None:
    _product(catalog).save()
    image = _image(catalog).save()

    change(image)
    assert image.state == ObjectState.MODIFIED
    image.save()

    stored = Image.get("img-1", catalog=catalog)
    assert stored is not None and stored.to_dict() == image.to_dict()


def test_an_image_round_trips_every_attribute(catalog: Catalog) -> None:
    _product(catalog).save()
    image = _image(
        catalog,
        name="LCF 2024-01-01",
        acquired_end="2024-01-16T23:59:59Z",
        geotransform=(500000, 10, 0, 9000000, 0, -10),
        width=10980,
        height=10980,
        pixel_size_x=10,
        pixel_size_y=10,
        cloud_fraction=0.25,
        fill_fraction=0.75,
        provider="earth-search",
        provider_id="S2A_X",
        tile="001002",
        period_start="2024-01-01",
        properties={"observations": 7, "nested": {"a": [1, 2]}},
        tags=["composite", "lcf"],
        files={"B04": File("/b04.tif", 10), "SCL": "/scl.tif"},
    ).save()

    stored = Image.get("img-1", catalog=catalog)

    assert stored is not None
    assert stored.to_dict() == image.to_dict()
    assert stored.acquired_end == dt.datetime(2024, 1, 16, 23, 59, 59, tzinfo=UTC)
    assert stored.period_start == dt.date(2024, 1, 1)
    assert stored.files == {"B04": File("/b04.tif", 10), "SCL": File("/scl.tif", None)}
    assert stored.geotransform == (500000, 10, 0, 9000000, 0, -10)
    assert stored.size_bytes == 10


# ------------------------------------------------------------------------------ attribute rules


def test_unknown_attributes_are_refused_naming_them() -> None:
    with pytest.raises(InvalidAttributeError, match="no attribute 'cloud'.*cloud_fraction"):
        _image(None, cloud=0.2)
    image = _image(None)
    with pytest.raises(InvalidAttributeError, match="no attribute 'colour'"):
        image.colour = "red"  # type: ignore[attr-defined]  # an unknown attribute is the refused input under test
    with pytest.raises(AttributeError):  # it is an AttributeError too
        image.colour = "red"  # type: ignore[attr-defined]  # an unknown attribute is the refused input under test


@pytest.mark.parametrize("name", ["created", "modified"])
def test_created_and_modified_are_read_only(name: str) -> None:
    product = _product(None)

    with pytest.raises(InvalidAttributeError, match=f"product 'cube-LCF': {name} is read-only"):
        setattr(product, name, dt.datetime(2024, 1, 1, tzinfo=UTC))


def test_ids_are_immutable_once_saved(catalog: Catalog) -> None:
    _product(catalog).save()
    image = _image(catalog)
    image.id = "img-2"  # still unsaved: allowed
    image.save()

    with pytest.raises(InvalidAttributeError, match="image 'img-2': id cannot change once saved"):
        image.id = "img-3"
    with pytest.raises(InvalidAttributeError, match="product_id cannot change once saved"):
        image.product_id = "other"
    image.id = "img-2"  # the same value is not a change
    assert image.state == ObjectState.SAVED


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("cloud_fraction", 1.5, "must be in \\[0.0, 1.0\\]"),
        ("cloud_fraction", "low", "must be a finite number"),
        ("fill_fraction", float("nan"), "must be a finite number"),
        ("acquired", "soon", "not an ISO 8601"),
        ("tags", [f"t{i}" for i in range(33)], "33 entries, at most 32"),
        ("tags", ["a", "a"], "duplicates"),
        ("tags", "composite", "list of strings"),
        ("properties", {f"k{i}": i for i in range(51)}, "51 keys, at most 50"),
        ("properties", {"when": dt.date(2024, 1, 1)}, "not JSON-serializable"),
        ("geometry", shapely.geometry.Point(0, 0), "Polygon or MultiPolygon"),
        ("geometry", shapely.geometry.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), "not a valid polygon"),
        ("geometry", shapely.geometry.box(500000, 9000000, 510000, 9010000), "lon/lat"),
        ("geotransform", (1, 2, 3), "6 numbers"),
        ("width", 0, "integer >= 1"),
        ("period_start", dt.datetime(2024, 1, 1, tzinfo=UTC), "expected a date"),
        ("files", {"B04": 3}, "must be a File"),
        ("files", {"B04": File("/x.tif", -1)}, "size_bytes must be an integer >= 0"),
        ("name", "", "non-empty string"),
        ("acquired", None, "cannot be None"),
    ],
)
def test_bad_image_values_are_refused_when_assigned(attribute: str, value: Any, message: str) -> None:
    image = _image(None)

    with pytest.raises(CatalogError, match=f"image 'img-1': {attribute}.*{message}"):
        setattr(image, attribute, value)


def test_rules_across_attributes_are_checked_when_saving(catalog: Catalog) -> None:
    _product(catalog).save()
    image = _image(catalog, acquired_end="2023-12-31")

    with pytest.raises(CatalogError, match="image 'img-1': acquired_end .* is before acquired"):
        image.save()
    assert image.state == ObjectState.UNSAVED


def test_in_place_changes_are_validated_when_saving(catalog: Catalog) -> None:
    _product(catalog).save()
    image = _image(catalog).save()
    image.tags.extend(f"t{i}" for i in range(40))

    with pytest.raises(CatalogError, match="tags has 40 entries"):
        image.save()


def test_missing_required_attributes_are_named_when_saving(catalog: Catalog) -> None:
    _product(catalog).save()
    image = catalog.images(id="img-1", product_id="cube-LCF")

    with pytest.raises(CatalogError, match="image 'img-1': acquired, geometry, crs required"):
        image.save()


def test_an_image_of_an_unknown_product_is_refused(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="product 'cube-LCF' is not in the catalog"):
        _image(catalog).save()


def test_an_image_and_a_band_return_their_product_or_name_it_when_missing(catalog: Catalog) -> None:
    _product(catalog, name="Cube LCF").save()
    image = _image(catalog)
    image.save()
    band = _bands(catalog)[0]

    assert image.product().name == "Cube LCF"
    assert band.product().id == "cube-LCF"
    orphan = _image(catalog, "img-2", product_id="cube-MED")  # never saved: its product does not exist
    with pytest.raises(NotFoundError, match="product 'cube-MED' is not in the catalog"):
        orphan.product()


# ------------------------------------------------------------------------------ get, exists, get_or_create


def test_get_returns_none_for_an_unknown_id(catalog: Catalog) -> None:
    assert Product.get("nope", catalog=catalog) is None
    assert Image.get("nope", catalog=catalog) is None
    assert not Image.exists("nope", catalog=catalog)


def test_get_many_keeps_the_order_asked_and_names_every_missing_id(catalog: Catalog) -> None:
    _product(catalog).save()
    for name in ("a", "b", "c"):
        _image(catalog, name).save()

    assert [image.id for image in Image.get_many(["c", "a", "b"], catalog=catalog)] == ["c", "a", "b"]
    with pytest.raises(NotFoundError, match="images not in the catalog: 'x', 'y'"):
        Image.get_many(["a", "x", "y"], catalog=catalog)
    assert [i.id for i in Image.get_many(["x", "b", "y"], ignore_missing=True, catalog=catalog)] == ["b"]


def test_get_or_create_makes_a_new_unsaved_object(catalog: Catalog) -> None:
    product = Product.get_or_create("cube-MED", catalog=catalog, name="Cube MED")

    assert product.state == ObjectState.UNSAVED and product.id == "cube-MED" and product.name == "Cube MED"
    assert not Product.exists("cube-MED", catalog=catalog)


def test_get_or_create_returns_the_stored_object_with_the_attributes_applied(catalog: Catalog) -> None:
    _product(catalog).save()

    same = Product.get_or_create("cube-LCF", catalog=catalog, name="Cube LCF")
    changed = Product.get_or_create("cube-LCF", catalog=catalog, name="Renamed")

    assert same.state == ObjectState.SAVED
    assert changed.state == ObjectState.MODIFIED and changed.tags == ["cube"]
    changed.save()
    assert Product.get("cube-LCF", catalog=catalog).name == "Renamed"  # type: ignore[union-attr]  # saved by the test or its fixture just before


def test_saving_a_new_object_over_a_stored_id_is_a_conflict(catalog: Catalog) -> None:
    _product(catalog).save()

    with pytest.raises(ConflictError, match="product 'cube-LCF' is already in the catalog"):
        _product(catalog, name="Another").save()
    assert Product.get("cube-LCF", catalog=catalog).name == "Cube LCF"  # type: ignore[union-attr]  # saved by the test or its fixture just before


# ------------------------------------------------------------------------------ delete


def test_deleting_an_image_removes_it_and_its_files(catalog: Catalog) -> None:
    _product(catalog).save()
    image = _image(catalog).save()

    image.delete()

    assert image.state == ObjectState.DELETED
    assert not Image.exists("img-1", catalog=catalog)
    with catalog.session() as session:
        from cube_assets.catalog.models import ImageFile

        assert session.scalars(select(ImageFile)).all() == []
    with pytest.raises(CatalogError, match="was deleted"):
        image.cloud_fraction = 0.1
    with pytest.raises(CatalogError, match="was deleted"):
        image.save()


def test_a_product_with_images_cannot_be_deleted(catalog: Catalog) -> None:
    product = _product(catalog).save()
    _image(catalog).save()

    with pytest.raises(CatalogError, match="product 'cube-LCF' still has 1 image"):
        product.delete()
    Image.get("img-1", catalog=catalog).delete()  # type: ignore[union-attr]  # saved by the test or its fixture just before
    product.delete()
    assert not Product.exists("cube-LCF", catalog=catalog)


def test_an_unsaved_object_cannot_be_deleted(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="never saved"):
        _product(catalog).delete()


def test_deleting_an_object_already_gone_is_reported(catalog: Catalog) -> None:
    product = _product(catalog).save()
    Product.get("cube-LCF", catalog=catalog).delete()  # type: ignore[union-attr]  # saved by the test or its fixture just before

    with pytest.raises(NotFoundError, match="not in the catalog"):
        product.delete()


def test_reload_drops_unsaved_changes(catalog: Catalog) -> None:
    product = _product(catalog).save()
    product.name = "Unsaved"

    product.reload()

    assert product.name == "Cube LCF" and product.state == ObjectState.SAVED


# ------------------------------------------------------------------------------ bands


def _bands(catalog: Catalog | None) -> list[Band]:
    return [
        SpectralBand(catalog=catalog, product_id="cube-LCF", name="B04", data_type="Int16", resolution=10, band_index=0,
                     nodata=-9999, data_range=(0, 10000), display_range=(0, 4000), wavelength_min=0.65,
                     wavelength_max=0.68, wavelength_center=0.665, description="red"),
        MaskBand(catalog=catalog, product_id="cube-LCF", name="ALPHA", data_type="UInt8", resolution=10, band_index=3,
                 is_alpha=True),
        ClassBand(catalog=catalog, product_id="cube-LCF", name="SCL", data_type="UInt8", resolution=20, band_index=1,
                  nodata=0, class_labels={4: "vegetation"}, colormap={4: (0, 160, 0, 255)}),
        GenericBand(catalog=catalog, product_id="cube-LCF", name="NDVI", data_type="Int16", resolution=10, band_index=2,
                    data_range=(-10000, 10000), physical_range=(-1, 1), unit="1"),
    ]  # fmt: skip


def test_bands_round_trip_as_their_own_types_ordered_by_index(catalog: Catalog) -> None:
    product = _product(catalog).save()
    for band in _bands(catalog):
        band.save()

    bands = product.bands()

    assert [(type(b).__name__, b.name) for b in bands] == [
        ("SpectralBand", "B04"), ("ClassBand", "SCL"), ("GenericBand", "NDVI"), ("MaskBand", "ALPHA"),
    ]  # fmt: skip
    spectral, klass, generic, mask = bands
    assert (spectral.wavelength_min, spectral.wavelength_max, spectral.wavelength_center) == (0.65, 0.68, 0.665)
    assert spectral.data_range == (0, 10000) and spectral.display_range == (0, 4000) and spectral.nodata == -9999
    assert klass.class_labels == {"4": "vegetation"} and klass.colormap == {"4": [0, 160, 0, 255]}
    assert generic.physical_range == (-1, 1) and generic.unit == "1"
    assert mask.is_alpha is True and mask.type == "mask"
    assert all(band.state == ObjectState.SAVED for band in bands)


def test_band_ids_are_product_and_name(catalog: Catalog) -> None:
    _product(catalog).save()
    _bands(catalog)[0].save()

    band = Band.get("cube-LCF:B04", catalog=catalog)

    assert isinstance(band, SpectralBand) and band.id == "cube-LCF:B04"
    assert SpectralBand.exists("cube-LCF:B04", catalog=catalog)
    assert Band.get("cube-LCF:B08", catalog=catalog) is None
    with pytest.raises(CatalogError, match="'product_id:band_name'"):
        Band.get("B04", catalog=catalog)


def test_a_band_asked_for_as_another_type_is_not_found(catalog: Catalog) -> None:
    _product(catalog).save()
    _bands(catalog)[0].save()

    assert MaskBand.get("cube-LCF:B04", catalog=catalog) is None
    assert type(Band.get("cube-LCF:B04", catalog=catalog)).__name__ == "SpectralBand"
    with pytest.raises(NotFoundError, match="cube-LCF:B04"):
        MaskBand.get_many(["cube-LCF:B04"], catalog=catalog)


def test_changing_the_alpha_flag_is_saved(catalog: Catalog) -> None:
    _product(catalog).save()
    mask = _bands(catalog)[1].save()

    mask.is_alpha = False
    mask.save()

    assert MaskBand.get("cube-LCF:ALPHA", catalog=catalog).is_alpha is False  # type: ignore[union-attr]  # saved by the test or its fixture just before


def test_band_search_on_a_subclass_returns_only_that_type(catalog: Catalog) -> None:
    _product(catalog).save()
    for band in _bands(catalog):
        band.save()

    assert [b.name for b in SpectralBand.search(catalog=catalog)] == ["B04"]
    assert [b.name for b in Band.search(catalog=catalog)] == ["B04", "SCL", "NDVI", "ALPHA"]


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("data_type", "Octet", "must be one of"),
        ("resolution", 0, "must be > 0"),
        ("band_index", -1, "must be an integer >= 0"),
        ("wavelength_min", -0.5, "must be > 0"),
        ("data_range", (10, 0), "minimum 10.0 is above maximum 0.0"),
        ("type", "mask", "read-only"),
    ],
)
def test_bad_band_values_are_refused(attribute: str, value: Any, message: str) -> None:
    band = _bands(None)[0]

    with pytest.raises(CatalogError, match=f"band 'cube-LCF:B04': {attribute}.*{message}"):
        setattr(band, attribute, value)


def test_band_of_an_unknown_product_is_refused(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="product 'cube-LCF' is not in the catalog"):
        _bands(catalog)[0].save()


def test_band_is_abstract() -> None:
    with pytest.raises(CatalogError, match="Band is abstract"):
        Band(product_id="p", name="b")


# ------------------------------------------------------------------------------ connection


def test_objects_without_a_catalog_use_the_connected_default(catalog_url: str) -> None:
    disconnect()
    with pytest.raises(CatalogError, match="no default catalog: call .*connect"):
        Product.get("cube-LCF")
    connected = connect(catalog_url)
    try:
        Product(id="cube-LCF", name="Cube LCF").save()
        assert Product.get("cube-LCF") is not None
        assert Product.get("cube-LCF").catalog is connected  # type: ignore[union-attr]  # saved by the test or its fixture just before
        assert [p.id for p in Product.search()] == ["cube-LCF"]
    finally:
        disconnect()
    with pytest.raises(CatalogError, match="no default catalog"):
        Product.search()


def test_two_catalogs_are_independent(catalog: Catalog, tmp_path: Any) -> None:
    with Catalog(f"sqlite:///{tmp_path}/other.sqlite") as other:
        _product(catalog).save()

        assert other.products.get("cube-LCF") is None
        assert catalog.products.exists("cube-LCF")
        assert other.products.get_many(["cube-LCF"], ignore_missing=True) == []


# ------------------------------------------------------------------------------ interplay with the repository


def test_rows_written_by_the_repository_upserts_are_saved_objects(catalog: Catalog) -> None:
    """What ``catalog_item`` writes through CatalogIOManager (records + upserts) reads back as objects."""
    sessions = session_factory(catalog.engine)
    with sessions.begin() as session:
        upsert_product(session, ProductRecord(id="cube-LCF", name="Cube LCF", tags=("cube",)))
        upsert_bands(
            session,
            "cube-LCF",
            [BandRecord(name="B04", type="spectral", data_type="Int16", resolution=10, band_index=0)],
        )
        upsert_image(session, ImageRecord(
            id="img-1", product_id="cube-LCF", name="img-1", acquired=dt.datetime(2024, 1, 1, tzinfo=UTC),
            geometry=shapely.geometry.box(-45, -10, -44, -9), crs="EPSG:32723",
            files=(ImageFileRecord(band="B04", href="/b04.tif", size_bytes=5),),
        ))  # fmt: skip

    image = Image.get("img-1", catalog=catalog)
    band = Band.get("cube-LCF:B04", catalog=catalog)

    assert image is not None and image.state == ObjectState.SAVED and image.files == {"B04": File("/b04.tif", 5)}
    assert isinstance(band, SpectralBand) and band.state == ObjectState.SAVED
    image.cloud_fraction = 0.3
    image.save()
    with sessions() as session:
        assert session.get(BandRow, ("cube-LCF", "B04")).is_alpha is False  # the 0003 default


def test_migration_0003_keeps_existing_bands_and_adds_alpha_false(catalog_url: str) -> None:
    from sqlalchemy import text

    from cube_assets.catalog.database import create_catalog_engine

    upgrade_schema(catalog_url, "0002")
    engine = create_catalog_engine(catalog_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO products (id, name, description, tags, properties) VALUES ('p', 'P', '', '[]', '{}')")
            )
            connection.execute(text(
                "INSERT INTO bands (product_id, name, type, data_type, resolution, band_index,"
                " description, class_labels)"
                " VALUES ('p', 'SCL', 'class', 'UInt8', 20, 0, 'scene classes', '{\"4\": \"vegetation\"}')"
            ))  # fmt: skip
        upgrade_schema(engine)
        with Catalog(engine, migrate=False) as catalog:
            band = Band.get("p:SCL", catalog=catalog)
        with session_factory(engine)() as session:
            is_alpha = session.get(BandRow, ("p", "SCL")).is_alpha  # type: ignore[union-attr]  # the row was saved by the test just before
    finally:
        engine.dispose()

    assert isinstance(band, ClassBand)
    assert band.class_labels == {"4": "vegetation"} and band.description == "scene classes" and band.resolution == 20
    assert is_alpha is False
