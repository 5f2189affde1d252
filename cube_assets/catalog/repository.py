"""Idempotent writes into the catalog and a basic image search.

Assets build plain, validated records (:class:`ProductRecord`, :class:`BandRecord`,
:class:`ImageRecord`, :class:`ImageFileRecord`) and hand them to the ``upsert_*`` functions, which
issue one ``INSERT ... ON CONFLICT DO UPDATE`` per table through the SQLite or PostgreSQL dialect.
The update only fires when some column differs from the stored row (``IS DISTINCT FROM``), so
re-writing an identical record leaves ``modified`` alone, and a concurrent writer of the same row
never fails on the primary key.

The functions take a ``Session`` and never commit: the caller owns the transaction, e.g.
``with session_factory(engine).begin() as session: ...``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely.geometry
from shapely.errors import GEOSException
from shapely.validation import explain_validity
from sqlalchemy import ColumnElement, CursorResult, Table, delete, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.util import identity_key

from cube_assets.catalog.models import BAND_TYPES, Band, Image, ImageFile, Product, utcnow
from cube_assets.catalog.validation import (
    check_class_labels,
    check_colormap,
    check_data_type,
    check_identifier,
    check_integer,
    check_number,
    check_properties,
    check_range,
    check_tag_list,
    check_text,
    json_copy,
)
from cube_assets.errors import CatalogError

_PRODUCTS: Table = Product.__table__  # type: ignore[assignment]  # declarative classes type __table__ as FromClause; it is a Table
_BANDS: Table = Band.__table__  # type: ignore[assignment]  # declarative classes type __table__ as FromClause; it is a Table
_IMAGES: Table = Image.__table__  # type: ignore[assignment]  # declarative classes type __table__ as FromClause; it is a Table
_IMAGE_FILES: Table = ImageFile.__table__  # type: ignore[assignment]  # declarative classes type __table__ as FromClause; it is a Table

BBox = tuple[float, float, float, float]
"""``(min_lon, min_lat, max_lon, max_lat)`` in EPSG:4326 degrees."""


# --------------------------------------------------------------------------------------------
# Validation helpers: each raises CatalogError naming the object (``what``) and the field; the
# checks of one value are the catalog's (:mod:`cube_assets.catalog.validation`), shared with the
# client's attributes.
# --------------------------------------------------------------------------------------------


def _check_id(what: str, field_name: str, value: object) -> str:
    return check_identifier(f"{what}: {field_name}", value)


def _check_optional_str(what: str, field_name: str, value: object) -> str | None:
    if value is None:
        return None
    return _check_id(what, field_name, value)


def _check_number(
    what: str,
    field_name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    return check_number(f"{what}: {field_name}", value, minimum=minimum, maximum=maximum, positive=positive)


def _check_optional_number(what: str, field_name: str, value: object, **limits: Any) -> float | None:
    if value is None:
        return None
    return _check_number(what, field_name, value, **limits)


def _check_positive_int(what: str, field_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogError(f"{what}: {field_name} must be a positive integer, got {value!r}")
    return value


def _check_range(what: str, field_name: str, value: object) -> tuple[float, float] | None:
    return None if value is None else check_range(f"{what}: {field_name}", value)


def _check_aware(what: str, field_name: str, value: object) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise CatalogError(f"{what}: {field_name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise CatalogError(f"{what}: {field_name} {value.isoformat()} has no time zone; pass an aware datetime")
    return value.astimezone(dt.UTC)


def _check_optional_aware(what: str, field_name: str, value: object) -> dt.datetime | None:
    return None if value is None else _check_aware(what, field_name, value)


def _check_tags(what: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise CatalogError(f"{what}: tags must be a list of strings, got {value!r}")
    return tuple(check_tag_list(f"{what}: tags", list(value)))


def _json_copy(what: str, field_name: str, value: object) -> Any:
    """Return a JSON round-trip copy of ``value`` (tuples become lists, detached from the caller)."""
    return json_copy(f"{what}: {field_name}", value)


def _check_properties(what: str, value: object) -> dict[str, Any]:
    return check_properties(f"{what}: properties", value)


def _check_geometry(what: str, value: object) -> tuple[dict[str, Any], BBox]:
    """Return the normalized GeoJSON ``{"type", "coordinates"}`` and its bounding box."""
    if hasattr(value, "__geo_interface__") and not isinstance(value, Mapping):
        value = value.__geo_interface__
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what}: geometry must be a GeoJSON mapping, got {type(value).__name__}")
    kind = value.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        raise CatalogError(f"{what}: geometry type must be Polygon or MultiPolygon, got {kind!r}")
    if "coordinates" not in value:
        raise CatalogError(f"{what}: geometry has no coordinates")
    geojson = {"type": kind, "coordinates": _json_copy(what, "geometry", value["coordinates"])}
    try:
        shape = shapely.geometry.shape(geojson)
        _close_rings(geojson)
    except (GEOSException, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise CatalogError(f"{what}: geometry is not a valid GeoJSON {kind}: {exc}") from exc
    if shape.is_empty:
        raise CatalogError(f"{what}: geometry is empty")
    min_lon, min_lat, max_lon, max_lat = shape.bounds
    if not all(math.isfinite(v) for v in shape.bounds):
        raise CatalogError(f"{what}: geometry has non-finite coordinates")
    if min_lon < -180 or max_lon > 180 or min_lat < -90 or max_lat > 90:
        raise CatalogError(
            f"{what}: geometry must be lon/lat in EPSG:4326, bounds {shape.bounds} are outside [-180, 180] x [-90, 90]"
        )
    if not shape.is_valid:
        raise CatalogError(f"{what}: geometry is invalid: {explain_validity(shape)}")
    return geojson, (min_lon, min_lat, max_lon, max_lat)


def _close_rings(geojson: dict[str, Any]) -> None:
    """Repeat the first position at the end of every ring that lacks it (GeoJSON rings are closed).

    Shapely closes rings silently; PostGIS, which reads the stored GeoJSON into the footprint
    column (migration 0004), refuses unclosed rings.
    """
    polygons = [geojson["coordinates"]] if geojson["type"] == "Polygon" else geojson["coordinates"]
    for polygon in polygons:
        for ring in polygon:
            if ring and ring[0] != ring[-1]:
                ring.append(list(ring[0]))


def _check_bbox(value: object) -> BBox:
    what = "search_images"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 4:
        raise CatalogError(f"{what}: bbox must be (min_lon, min_lat, max_lon, max_lat), got {value!r}")
    min_lon = _check_number(what, "bbox min_lon", value[0], minimum=-180, maximum=180)
    min_lat = _check_number(what, "bbox min_lat", value[1], minimum=-90, maximum=90)
    max_lon = _check_number(what, "bbox max_lon", value[2], minimum=-180, maximum=180)
    max_lat = _check_number(what, "bbox max_lat", value[3], minimum=-90, maximum=90)
    if min_lon > max_lon or min_lat > max_lat:
        raise CatalogError(
            f"{what}: bbox {tuple(value)!r} has a minimum above its maximum"
            " (bboxes crossing the antimeridian are not supported)"
        )
    return (min_lon, min_lat, max_lon, max_lat)


# --------------------------------------------------------------------------------------------
# Records: plain, frozen, validated data that assets build.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductRecord:
    """A product to upsert. Datetimes must be timezone-aware; they are converted to UTC.

    Raises:
        CatalogError: on construction, naming the product and the bad field.
    """

    id: str
    name: str
    description: str = ""
    start_datetime: dt.datetime | None = None
    end_datetime: dt.datetime | None = None
    tags: Sequence[str] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        what = f"product {self.id!r}"
        _check_id(what, "id", self.id)
        _check_id(what, "name", self.name)
        check_text(f"{what}: description", self.description)
        start = _check_optional_aware(what, "start_datetime", self.start_datetime)
        end = _check_optional_aware(what, "end_datetime", self.end_datetime)
        if start is not None and end is not None and start > end:
            raise CatalogError(f"{what}: start_datetime {start.isoformat()} is after end_datetime {end.isoformat()}")
        object.__setattr__(self, "start_datetime", start)
        object.__setattr__(self, "end_datetime", end)
        object.__setattr__(self, "tags", _check_tags(what, self.tags))
        object.__setattr__(self, "properties", _check_properties(what, self.properties))


@dataclass(frozen=True)
class BandRecord:
    """A band of a product to upsert.

    ``type`` is one of :data:`~cube_assets.catalog.models.BAND_TYPES`, ``data_type`` one of
    :data:`~cube_assets.catalog.models.BAND_DATA_TYPES`; ranges are ``(min, max)``; ``resolution``
    is in metres; wavelengths in micrometres. ``class_labels`` maps pixel value to label and
    ``colormap`` pixel value to ``[r, g, b, a]``; their keys are stored as strings (JSON objects
    only have string keys). ``nodata`` must be finite: SQLite cannot store NaN (it becomes NULL).

    Raises:
        CatalogError: on construction, naming the band and the bad field.
    """

    name: str
    type: str
    data_type: str
    resolution: float
    band_index: int
    data_range: tuple[float, float] | None = None
    display_range: tuple[float, float] | None = None
    nodata: float | None = None
    wavelength_min: float | None = None
    wavelength_max: float | None = None
    wavelength_center: float | None = None
    class_labels: Mapping[int | str, str] | None = None
    colormap: Mapping[int | str, Sequence[int]] | None = None
    physical_range: tuple[float, float] | None = None
    unit: str | None = None
    description: str = ""
    wavelength_fwhm: float | None = None
    frequency: float | None = None
    bandwidth: float | None = None
    resolution_unit: str | None = None
    colormap_name: str | None = None

    def __post_init__(self) -> None:
        what = f"band {self.name!r}"
        _check_id(what, "name", self.name)
        if self.type not in BAND_TYPES:
            raise CatalogError(f"{what}: type must be one of {BAND_TYPES}, got {self.type!r}")
        check_data_type(f"{what}: data_type", self.data_type)
        object.__setattr__(self, "resolution", _check_number(what, "resolution", self.resolution, positive=True))
        check_integer(f"{what}: band_index", self.band_index, 0)
        for name in ("data_range", "display_range", "physical_range"):
            object.__setattr__(self, name, _check_range(what, name, getattr(self, name)))
        for name in (
            "nodata",
            "wavelength_min",
            "wavelength_max",
            "wavelength_center",
            "wavelength_fwhm",
            "frequency",
            "bandwidth",
        ):
            limits = {"positive": True} if name != "nodata" else {}
            object.__setattr__(self, name, _check_optional_number(what, name, getattr(self, name), **limits))
        low, center, high = self.wavelength_min, self.wavelength_center, self.wavelength_max
        if low is not None and high is not None and low > high:
            raise CatalogError(f"{what}: wavelength_min {low} is above wavelength_max {high}")
        if center is not None and ((low is not None and center < low) or (high is not None and center > high)):
            raise CatalogError(f"{what}: wavelength_center {center} is outside [{low}, {high}]")
        if self.class_labels is not None:
            object.__setattr__(self, "class_labels", check_class_labels(f"{what}: class_labels", self.class_labels))
        if self.colormap is not None:
            object.__setattr__(self, "colormap", check_colormap(f"{what}: colormap", self.colormap))
        _check_optional_str(what, "unit", self.unit)
        _check_optional_str(what, "colormap_name", self.colormap_name)
        if self.resolution_unit not in (None, "meters", "degrees"):
            raise CatalogError(f"{what}: resolution_unit must be 'meters' or 'degrees', got {self.resolution_unit!r}")
        check_text(f"{what}: description", self.description)


@dataclass(frozen=True)
class ImageFileRecord:
    """The file of one band of an image: a local path or ``s3://`` URI, and its size if known.

    Raises:
        CatalogError: on construction, naming the band and the bad field.
    """

    band: str
    href: str
    size_bytes: int | None = None

    def __post_init__(self) -> None:
        what = f"file of band {self.band!r}"
        _check_id(what, "band", self.band)
        _check_id(what, "href", self.href)
        if self.size_bytes is not None:
            check_integer(f"{what}: size_bytes", self.size_bytes, 0)


@dataclass(frozen=True)
class ImageRecord:
    """An image to upsert, with its files.

    ``geometry`` is a GeoJSON Polygon/MultiPolygon (or an object with ``__geo_interface__``) in
    EPSG:4326 lon/lat; it is stored as ``{"type", "coordinates"}`` (rings closed) and ``bbox`` is derived from it.
    ``acquired``/``acquired_end`` must be timezone-aware and are converted to UTC.
    ``geotransform`` is the GDAL 6-tuple. ``files`` lists every file of the image: upserting
    replaces the stored list.

    Raises:
        CatalogError: on construction, naming the image id and the bad field.
    """

    id: str
    product_id: str
    name: str
    acquired: dt.datetime
    geometry: Mapping[str, Any]
    crs: str
    acquired_end: dt.datetime | None = None
    geotransform: Sequence[float] | None = None
    width: int | None = None
    height: int | None = None
    pixel_size_x: float | None = None
    pixel_size_y: float | None = None
    cloud_fraction: float | None = None
    fill_fraction: float | None = None
    provider: str | None = None
    provider_id: str | None = None
    tile: str | None = None
    period_start: dt.date | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    tags: Sequence[str] = ()
    files: Sequence[ImageFileRecord] = ()
    bbox: BBox = field(init=False)

    def __post_init__(self) -> None:
        what = f"image {self.id!r}"
        _check_id(what, "id", self.id)
        _check_id(what, "product_id", self.product_id)
        _check_id(what, "name", self.name)
        acquired = _check_aware(what, "acquired", self.acquired)
        acquired_end = _check_optional_aware(what, "acquired_end", self.acquired_end)
        if acquired_end is not None and acquired_end < acquired:
            raise CatalogError(
                f"{what}: acquired_end {acquired_end.isoformat()} is before acquired {acquired.isoformat()}"
            )
        object.__setattr__(self, "acquired", acquired)
        object.__setattr__(self, "acquired_end", acquired_end)
        geometry, bbox = _check_geometry(what, self.geometry)
        object.__setattr__(self, "geometry", geometry)
        object.__setattr__(self, "bbox", bbox)
        _check_id(what, "crs", self.crs)
        if self.geotransform is not None:
            gt = self.geotransform
            if isinstance(gt, str | bytes) or not isinstance(gt, Sequence) or len(gt) != 6:
                raise CatalogError(f"{what}: geotransform must be 6 numbers, got {gt!r}")
            object.__setattr__(self, "geotransform", tuple(_check_number(what, "geotransform", v) for v in gt))
        for name in ("width", "height"):
            if getattr(self, name) is not None:
                check_integer(f"{what}: {name}", getattr(self, name), 1)
        for name in ("pixel_size_x", "pixel_size_y"):
            object.__setattr__(self, name, _check_optional_number(what, name, getattr(self, name), positive=True))
        for name in ("cloud_fraction", "fill_fraction"):
            object.__setattr__(
                self, name, _check_optional_number(what, name, getattr(self, name), minimum=0.0, maximum=1.0)
            )
        for name in ("provider", "provider_id", "tile"):
            _check_optional_str(what, name, getattr(self, name))
        if self.period_start is not None and (
            isinstance(self.period_start, dt.datetime) or not isinstance(self.period_start, dt.date)
        ):
            raise CatalogError(f"{what}: period_start must be a date (not a datetime), got {self.period_start!r}")
        object.__setattr__(self, "properties", _check_properties(what, self.properties))
        object.__setattr__(self, "tags", _check_tags(what, self.tags))
        if isinstance(self.files, str | bytes) or not isinstance(self.files, Sequence):
            raise CatalogError(f"{what}: files must be a sequence of ImageFileRecord, got {self.files!r}")
        bands = []
        for file in self.files:
            if not isinstance(file, ImageFileRecord):
                raise CatalogError(f"{what}: files must hold ImageFileRecord, got {file!r}")
            bands.append(file.band)
        duplicates = sorted({b for b in bands if bands.count(b) > 1})
        if duplicates:
            raise CatalogError(f"{what}: files lists band(s) {duplicates} more than once")
        object.__setattr__(self, "files", tuple(self.files))


# --------------------------------------------------------------------------------------------
# Upserts
# --------------------------------------------------------------------------------------------


def _dialect_insert(session: Session, table: Table) -> sqlite.Insert | postgresql.Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise CatalogError(f"catalog upserts support sqlite and postgresql, not {dialect!r}")


def _upsert_rows(session: Session, table: Table, rows: list[dict[str, Any]], key: Sequence[str]) -> int:
    """Insert ``rows`` or update the stored rows whose values differ; return how many were written.

    Rows equal to the stored ones are left untouched (their ``modified`` too): the update's
    ``WHERE`` only lets through rows where some column ``IS DISTINCT FROM`` the new value.
    """
    if not rows:
        return 0
    insert = _dialect_insert(session, table).values(rows)
    updated = [name for name in rows[0] if name not in key]
    set_: dict[str, Any] = {name: insert.excluded[name] for name in updated}
    if "modified" in table.c:
        set_["modified"] = utcnow()
    differs: ColumnElement[bool] = or_(
        false(), *(table.c[name].is_distinct_from(insert.excluded[name]) for name in updated)
    )
    statement = insert.on_conflict_do_update(index_elements=list(key), set_=set_, where=differs).returning(
        table.c[key[0]]
    )
    return len(session.execute(statement).all())


def _touch(session: Session, table: Table, key_column: str, key_value: str) -> None:
    session.execute(update(table).where(table.c[key_column] == key_value).values(modified=utcnow()))


def _expire_cached(session: Session, model: type, key: tuple[Any, ...]) -> None:
    """Expire an ORM object the session may hold for a row just written behind its back."""
    cached = session.identity_map.get(identity_key(model, key))
    if cached is not None:
        session.expire(cached)


def _require_product(session: Session, what: str, product_id: str) -> None:
    # On SQLite this read runs before the write that opens the transaction (the sqlite3 module
    # only begins one on INSERT/UPDATE/DELETE), so it cannot leave a stale WAL snapshot behind.
    if session.execute(select(_PRODUCTS.c.id).where(_PRODUCTS.c.id == product_id)).first() is None:
        raise CatalogError(f"{what}: product {product_id!r} is not in the catalog; upsert_product it first")


def upsert_product(session: Session, record: ProductRecord) -> bool:
    """Insert the product or update it where it differs; ``modified`` moves only on a change.

    Returns:
        True if the row was inserted or changed, False if it was already identical.

    Raises:
        CatalogError: if ``record`` is not a ``ProductRecord`` or the dialect is unsupported.
        sqlalchemy.exc.SQLAlchemyError: if the database rejects the write.
    """
    if not isinstance(record, ProductRecord):
        raise CatalogError(f"upsert_product takes a ProductRecord, got {type(record).__name__}")
    row = {
        "id": record.id,
        "name": record.name,
        "description": record.description,
        "start_datetime": record.start_datetime,
        "end_datetime": record.end_datetime,
        "tags": list(record.tags),
        "properties": record.properties,
    }
    written = _upsert_rows(session, _PRODUCTS, [row], ["id"]) > 0
    _expire_cached(session, Product, (record.id,))
    return written


def upsert_bands(session: Session, product_id: str, bands: Sequence[BandRecord]) -> int:
    """Insert or update the listed bands of ``product_id``; bands not listed are kept.

    When any band is inserted or changed, the product's ``modified`` moves too.

    Returns:
        How many bands were inserted or changed (0 when all were already identical).

    Raises:
        CatalogError: if the product is not in the catalog, a band name or band_index is listed
            twice, or an item is not a ``BandRecord``.
        sqlalchemy.exc.SQLAlchemyError: if the database rejects the write.
    """
    what = f"bands of product {product_id!r}"
    for band in bands:
        if not isinstance(band, BandRecord):
            raise CatalogError(f"{what}: expected BandRecord, got {type(band).__name__}")
    for attribute in ("name", "band_index"):
        values = [getattr(band, attribute) for band in bands]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise CatalogError(f"{what}: {attribute} {duplicates} listed more than once")
    _require_product(session, what, product_id)
    rows = [
        {
            "product_id": product_id,
            "name": band.name,
            "type": band.type,
            "data_type": band.data_type,
            "data_range": _as_list(band.data_range),
            "display_range": _as_list(band.display_range),
            "nodata": band.nodata,
            "resolution": band.resolution,
            "band_index": band.band_index,
            "wavelength_min": band.wavelength_min,
            "wavelength_max": band.wavelength_max,
            "wavelength_center": band.wavelength_center,
            "class_labels": band.class_labels,
            "colormap": band.colormap,
            "physical_range": _as_list(band.physical_range),
            "unit": band.unit,
            "description": band.description,
            "wavelength_fwhm": band.wavelength_fwhm,
            "frequency": band.frequency,
            "bandwidth": band.bandwidth,
            "resolution_unit": band.resolution_unit,
            "colormap_name": band.colormap_name,
        }
        for band in bands
    ]
    written = _upsert_rows(session, _BANDS, rows, ["product_id", "name"])
    if written:
        _touch(session, _PRODUCTS, "id", product_id)
    _expire_cached(session, Product, (product_id,))
    for band in bands:
        _expire_cached(session, Band, (product_id, band.name))
    return written


def _as_list(value: Sequence[float] | None) -> list[float] | None:
    return None if value is None else list(value)


def upsert_image(session: Session, record: ImageRecord) -> bool:
    """Insert the image or update it where it differs, and make its files exactly ``record.files``.

    Files no longer listed are deleted, new ones inserted, changed ones updated, and the image's
    ``size_bytes`` becomes the sum of their known sizes. ``modified`` moves when the image row or
    any of its files changed, and only then.

    Returns:
        True if the image or any of its files was inserted, changed or deleted; False if all
        were already identical.

    Raises:
        CatalogError: if ``record`` is not an ``ImageRecord`` or its product is not in the catalog.
        sqlalchemy.exc.SQLAlchemyError: if the database rejects the write.
    """
    if not isinstance(record, ImageRecord):
        raise CatalogError(f"upsert_image takes an ImageRecord, got {type(record).__name__}")
    _require_product(session, f"image {record.id!r}", record.product_id)
    min_lon, min_lat, max_lon, max_lat = record.bbox
    row = {
        "id": record.id,
        "product_id": record.product_id,
        "name": record.name,
        "acquired": record.acquired,
        "acquired_end": record.acquired_end,
        "geometry": record.geometry,
        "min_lon": min_lon,
        "min_lat": min_lat,
        "max_lon": max_lon,
        "max_lat": max_lat,
        "crs": record.crs,
        "geotransform": _as_list(record.geotransform),
        "width": record.width,
        "height": record.height,
        "pixel_size_x": record.pixel_size_x,
        "pixel_size_y": record.pixel_size_y,
        "cloud_fraction": record.cloud_fraction,
        "fill_fraction": record.fill_fraction,
        "provider": record.provider,
        "provider_id": record.provider_id,
        "tile": record.tile,
        "period_start": record.period_start,
        "properties": record.properties,
        "tags": list(record.tags),
        # The image's bytes for summaries: its files are exactly record.files after this upsert.
        "size_bytes": sum(file.size_bytes or 0 for file in record.files),
    }
    image_written = _upsert_rows(session, _IMAGES, [row], ["id"]) > 0

    bands = [file.band for file in record.files]
    deleted: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # a DELETE returns a CursorResult; Session.execute is typed as Result
        delete(_IMAGE_FILES).where(_IMAGE_FILES.c.image_id == record.id, _IMAGE_FILES.c.band.not_in(bands))
    )
    removed = deleted.rowcount
    files_written = _upsert_rows(
        session,
        _IMAGE_FILES,
        [
            {"image_id": record.id, "band": file.band, "href": file.href, "size_bytes": file.size_bytes}
            for file in record.files
        ],
        ["image_id", "band"],
    )
    files_changed = bool(removed) or files_written > 0
    if files_changed and not image_written:
        _touch(session, _IMAGES, "id", record.id)
    _expire_cached(session, Image, (record.id,))
    return image_written or files_changed


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------


def search_images(
    session: Session,
    *,
    product_id: str | None = None,
    bbox: BBox | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    max_cloud_fraction: float | None = None,
    tile: str | None = None,
    period_start: dt.date | None = None,
    limit: int | None = None,
) -> list[Image]:
    """Return the images matching every given filter, ordered by ``acquired`` then ``id``.

    All filtering happens in SQL:

    * ``bbox`` ``(min_lon, min_lat, max_lon, max_lat)``: the image's bounding box intersects it
      (edges touching count). This is a bounding-box test, not an exact footprint intersection.
    * ``start``/``end`` (timezone-aware): the image's time span ``[acquired, acquired_end]``
      (or the instant ``acquired``) overlaps the closed interval ``[start, end]``; either bound
      may be omitted.
    * ``max_cloud_fraction``: ``cloud_fraction <= max_cloud_fraction``; images whose cloud
      fraction is unknown (NULL) are excluded.
    * ``product_id``, ``tile``, ``period_start`` (a ``date``): equality.

    Returns:
        The matching ``Image`` objects (at most ``limit``), with their ``files`` already loaded
        (one extra ``IN`` query), so they stay usable after the session is closed.

    Raises:
        CatalogError: if ``bbox`` is malformed or out of lon/lat range, a datetime is naive,
            ``start`` is after ``end``, ``max_cloud_fraction`` is outside [0, 1], ``period_start``
            is not a date or ``limit`` is not a positive integer.
    """
    what = "search_images"
    _check_search_text(what, product_id=product_id, tile=tile)
    statement = select(Image).options(selectinload(Image.files))
    if product_id is not None:
        statement = statement.where(Image.product_id == product_id)
    if tile is not None:
        statement = statement.where(Image.tile == tile)
    if period_start is not None:
        if isinstance(period_start, dt.datetime) or not isinstance(period_start, dt.date):
            raise CatalogError(f"{what}: period_start must be a date (not a datetime), got {period_start!r}")
        statement = statement.where(Image.period_start == period_start)
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = _check_bbox(bbox)
        statement = statement.where(
            Image.min_lon <= max_lon,
            Image.max_lon >= min_lon,
            Image.min_lat <= max_lat,
            Image.max_lat >= min_lat,
        )
    start = _check_optional_aware(what, "start", start)
    end = _check_optional_aware(what, "end", end)
    if start is not None and end is not None and start > end:
        raise CatalogError(f"{what}: start {start.isoformat()} is after end {end.isoformat()}")
    if start is not None:
        statement = statement.where(func.coalesce(Image.acquired_end, Image.acquired) >= start)
    if end is not None:
        statement = statement.where(Image.acquired <= end)
    if max_cloud_fraction is not None:
        cloud = _check_number(what, "max_cloud_fraction", max_cloud_fraction, minimum=0.0, maximum=1.0)
        statement = statement.where(Image.cloud_fraction <= cloud)
    statement = statement.order_by(Image.acquired, Image.id)
    if limit is not None:
        if isinstance(limit, int) and limit > _MAX_SEARCH_LIMIT:
            raise CatalogError(
                f"{what}: limit must be at most {_MAX_SEARCH_LIMIT}, got an integer of {limit.bit_length()} bits"
            )
        statement = statement.limit(_check_positive_int(what, "limit", limit))
    return list(session.scalars(statement))


#: Largest ``limit`` of :func:`search_images`: the largest 64-bit integer the databases accept.
_MAX_SEARCH_LIMIT = 2**63 - 1


def _check_search_text(what: str, **values: str | None) -> None:
    """Refuse search text that is not a string, holds NUL or cannot be encoded as UTF-8."""
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise CatalogError(f"{what}: {name} must be text, got {type(value).__name__}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CatalogError(f"{what}: {name} is not encodable as UTF-8: {value[:200]!r}") from exc
        if "\x00" in value:
            raise CatalogError(f"{what}: {name} contains a NUL character: {value[:200]!r}")


def image_files(session: Session, image_id: str) -> dict[str, str]:
    """Return the files of ``image_id`` as ``{band: href}``, ordered by band name.

    Returns:
        The mapping; empty if the image exists but has no files.

    Raises:
        CatalogError: if no image ``image_id`` is in the catalog.
    """
    rows = session.execute(
        select(_IMAGE_FILES.c.band, _IMAGE_FILES.c.href)
        .where(_IMAGE_FILES.c.image_id == image_id)
        .order_by(_IMAGE_FILES.c.band)
    ).all()
    if not rows and session.execute(select(_IMAGES.c.id).where(_IMAGES.c.id == image_id)).first() is None:
        raise CatalogError(f"image {image_id!r} is not in the catalog")
    return {band: href for band, href in rows}
