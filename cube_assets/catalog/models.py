"""SQLAlchemy 2 declarative models of the catalog: products, their bands, images and image files.

The schema is portable between SQLite and PostgreSQL:

* JSON columns are ``JSON`` on SQLite and ``JSONB`` on PostgreSQL (``JSONB`` has equality, which
  the idempotent upserts need, and can be GIN-indexed later).
* Timestamps are timezone-aware ``datetime`` objects in UTC on the Python side (:class:`UTCDateTime`).
* Image footprints are GeoJSON in EPSG:4326 plus four bounding-box columns, so spatial filtering
  works in plain SQL on both backends (see :mod:`cube_assets.catalog.footprints`). Migration 0004
  adds what each backend indexes them with: on SQLite the R*Tree ``images_bbox_rtree``, kept in
  sync by triggers (declared below, so ``create_all`` builds the same schema); on PostgreSQL with
  PostGIS a ``geometry(Geometry, 4326)`` column ``images.footprint`` with a GiST index, filled by a
  trigger. The PostGIS column exists only where the extension does, so it is not modelled here:
  :func:`is_modelled` tells the migration tools which schema objects to leave out of comparisons.
* ``images.size_bytes`` is the sum of the image's known file sizes, written with the files by the
  upserts, so summaries of bytes read the images alone.
* ``created`` and ``modified`` are set by the database clock (:class:`utcnow`), never by callers.

The schema is created by the Alembic migrations in ``migrations/`` (see
:func:`cube_assets.catalog.database.upgrade_schema`), not by ``metadata.create_all``; a test
checks that the migrations and these models never drift apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    event,
    false,
    func,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, WriteOnlyMapped, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint and index names, so later migrations (and SQLite batch mode) can
#: refer to them by name on every backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Values allowed in ``bands.type``.
BAND_TYPES: tuple[str, ...] = ("spectral", "mask", "class", "generic", "microwave", "derived")

#: Values allowed in ``bands.data_type`` (GDAL-style names; ``UInt8`` rather than ``Byte``).
BAND_DATA_TYPES: tuple[str, ...] = (
    "Int8",
    "UInt8",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float32",
    "Float64",
)

#: Most keys an image's or product's ``properties`` may hold.
MAX_PROPERTIES = 50
#: Most entries an image's or product's ``tags`` may hold.
MAX_TAGS = 32


class utcnow(FunctionElement[dt.datetime]):  # reads like the SQL function it renders
    """The database's current UTC time, with sub-second precision on every backend.

    Renders ``now()`` on PostgreSQL (transaction start time, ``timestamptz``) and
    ``strftime('%Y-%m-%d %H:%M:%f', 'now')`` (UTC, milliseconds) on SQLite, whose
    ``CURRENT_TIMESTAMP`` only has whole seconds.
    """

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(utcnow)
def _utcnow_default(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utcnow, "postgresql")
def _utcnow_postgresql(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp stored in UTC.

    Binding a naive ``datetime`` raises ``ValueError`` (an instant without a zone is ambiguous).
    PostgreSQL stores ``timestamptz``; SQLite stores the naive UTC ISO string, so string order is
    time order and SQL comparisons work. Values read back are always aware and in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Return ``value`` converted to UTC (naive UTC for SQLite); raise ``ValueError`` if naive."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} has no time zone; pass an aware datetime")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Return ``value`` as an aware UTC datetime (SQLite gives naive UTC back)."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def json_document() -> JSON:
    """Return the JSON column type used throughout the catalog.

    ``JSON`` on SQLite and ``JSONB`` on PostgreSQL; Python ``None`` is stored as SQL ``NULL``
    (not the JSON text ``null``) so nullable JSON columns can be tested with ``IS NULL``.
    """
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of the catalog models; ``Base.metadata`` is the migrations' target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Product(Base):
    """A catalogued product: a data cube (``cube:S2-16D``) or a source collection (``sentinel-2-l2a``)."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(Text, default="")
    start_datetime: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    end_datetime: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    tags: Mapped[list[str]] = mapped_column(json_document(), default=list)
    properties: Mapped[dict[str, Any]] = mapped_column(json_document(), default=dict)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow(), onupdate=utcnow())

    bands: Mapped[list[Band]] = relationship(
        back_populates="product",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Band.band_index",
    )
    #: Write-only: a product may have millions of images; query with ``product.images.select()``.
    images: WriteOnlyMapped[Image] = relationship(back_populates="product", passive_deletes=True)

    def __repr__(self) -> str:
        return f"Product(id={self.id!r})"


class Band(Base):
    """One band of a product; ``name`` is unique within the product."""

    __tablename__ = "bands"
    __table_args__ = (
        CheckConstraint(
            "type IN ({})".format(", ".join(f"'{t}'" for t in BAND_TYPES)),
            name="type",
        ),
        CheckConstraint("resolution > 0", name="resolution_positive"),
    )

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    type: Mapped[str] = mapped_column(String)
    data_type: Mapped[str] = mapped_column(String)
    data_range: Mapped[list[float] | None] = mapped_column(json_document())
    display_range: Mapped[list[float] | None] = mapped_column(json_document())
    nodata: Mapped[float | None] = mapped_column(Float)
    resolution: Mapped[float] = mapped_column(Float)
    band_index: Mapped[int] = mapped_column(Integer)
    wavelength_min: Mapped[float | None] = mapped_column(Float)
    wavelength_max: Mapped[float | None] = mapped_column(Float)
    wavelength_center: Mapped[float | None] = mapped_column(Float)
    class_labels: Mapped[dict[str, str] | None] = mapped_column(json_document())
    colormap: Mapped[dict[str, list[int]] | None] = mapped_column(json_document())
    physical_range: Mapped[list[float] | None] = mapped_column(json_document())
    unit: Mapped[str | None] = mapped_column(String)
    description: Mapped[str] = mapped_column(Text, default="")
    #: Mask bands only: whether the band is the image's alpha channel (migration 0003).
    is_alpha: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: Spectral bands: full width at half maximum, in micrometres (migration 0005).
    wavelength_fwhm: Mapped[float | None] = mapped_column(Float)
    #: Microwave bands: centre frequency and bandwidth, in GHz (migration 0005).
    frequency: Mapped[float | None] = mapped_column(Float)
    bandwidth: Mapped[float | None] = mapped_column(Float)
    #: Unit of ``resolution``: ``meters`` (also when NULL) or ``degrees`` (migration 0005).
    resolution_unit: Mapped[str | None] = mapped_column(String)
    #: Name of a standard colormap (class and generic bands; migration 0005).
    colormap_name: Mapped[str | None] = mapped_column(String)

    product: Mapped[Product] = relationship(back_populates="bands")

    def __repr__(self) -> str:
        return f"Band(product_id={self.product_id!r}, name={self.name!r})"


class Image(Base):
    """One catalogued raster: a tile-by-period composite, a tile-by-date merge, or a source scene.

    ``geometry`` is the footprint as a GeoJSON Polygon/MultiPolygon in EPSG:4326 (rings closed) and
    ``min_lon``..``max_lat`` its bounding box, used for portable spatial filtering.
    ``acquired``..``acquired_end`` is the time covered (``acquired_end`` is ``None`` for a single
    instant). ``crs``, ``geotransform``, ``width`` and ``height`` describe the raster grid.
    """

    __tablename__ = "images"
    __table_args__ = (
        CheckConstraint("cloud_fraction >= 0 AND cloud_fraction <= 1", name="cloud_fraction_range"),
        CheckConstraint("fill_fraction >= 0 AND fill_fraction <= 1", name="fill_fraction_range"),
        CheckConstraint("min_lon <= max_lon AND min_lat <= max_lat", name="bbox_ordered"),
        # "Images of product P between t0 and t1" ordered by time; with size_bytes, summaries of a
        # product are index-only scans (migration 0004).
        Index(None, "product_id", "acquired", "size_bytes"),
        # Summaries over every product (the whole catalogue, or a time range of it), index-only.
        Index(None, "acquired", "size_bytes"),
        Index(None, "provider", "provider_id"),
    )

    id: Mapped[str] = mapped_column(String, primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    name: Mapped[str] = mapped_column(String)
    acquired: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acquired_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    geometry: Mapped[dict[str, Any]] = mapped_column(json_document())
    min_lon: Mapped[float] = mapped_column(Float, index=True)
    min_lat: Mapped[float] = mapped_column(Float, index=True)
    max_lon: Mapped[float] = mapped_column(Float, index=True)
    max_lat: Mapped[float] = mapped_column(Float, index=True)
    crs: Mapped[str] = mapped_column(Text)
    geotransform: Mapped[list[float] | None] = mapped_column(json_document())
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    pixel_size_x: Mapped[float | None] = mapped_column(Float)
    pixel_size_y: Mapped[float | None] = mapped_column(Float)
    cloud_fraction: Mapped[float | None] = mapped_column(Float)
    fill_fraction: Mapped[float | None] = mapped_column(Float)
    provider: Mapped[str | None] = mapped_column(String)
    provider_id: Mapped[str | None] = mapped_column(String)
    tile: Mapped[str | None] = mapped_column(String, index=True)
    period_start: Mapped[dt.date | None] = mapped_column(Date)
    properties: Mapped[dict[str, Any]] = mapped_column(json_document(), default=dict)
    tags: Mapped[list[str]] = mapped_column(json_document(), default=list)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow(), onupdate=utcnow())
    #: Sum of the known sizes of the image's files (unknown sizes count as 0), written with the files
    #: by :func:`~cube_assets.catalog.repository.upsert_image` (migration 0004).
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))

    product: Mapped[Product] = relationship(back_populates="images")
    files: Mapped[list[ImageFile]] = relationship(
        back_populates="image",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ImageFile.band",
    )

    def __repr__(self) -> str:
        return f"Image(id={self.id!r})"


#: PostgreSQL only (migration 0003): one GiST index over the footprint's bounding box and the time
#: span, so "intersects this tile, during this time" is answered from the index alone. The search
#: (``cube_assets.catalog.search``) writes its predicates with these same expressions.
Index(
    "ix_images_bbox_time_span",
    func.box(func.point(Image.min_lon, Image.min_lat), func.point(Image.max_lon, Image.max_lat)),
    func.tstzrange(
        Image.acquired, func.greatest(Image.acquired, Image.acquired_end), literal("[]", literal_execute=True)
    ),
    postgresql_using="gist",
).ddl_if(dialect="postgresql")


#: SQLite only (migration 0004): an R*Tree over the images' bounding boxes. R*Tree entries are keyed
#: by integers and ``images`` has a text key, so ``images_bbox_rtree_ids`` gives each image a
#: stable integer (a rowid of a table without an INTEGER PRIMARY KEY may change on VACUUM).
#: Triggers keep both in step with every write to ``images``, whoever makes it. Statements in order;
#: the migration holds a frozen copy, and a test checks that both build the same schema.
SQLITE_BBOX_RTREE_DDL: tuple[str, ...] = (
    "CREATE VIRTUAL TABLE images_bbox_rtree USING rtree(id, min_lon, max_lon, min_lat, max_lat)",
    "CREATE TABLE images_bbox_rtree_ids (id INTEGER NOT NULL PRIMARY KEY, image_id VARCHAR NOT NULL UNIQUE)",
    """CREATE TRIGGER images_bbox_rtree_insert AFTER INSERT ON images BEGIN
  INSERT OR IGNORE INTO images_bbox_rtree_ids (image_id) VALUES (new.id);
  INSERT OR REPLACE INTO images_bbox_rtree (id, min_lon, max_lon, min_lat, max_lat)
    VALUES ((SELECT id FROM images_bbox_rtree_ids WHERE image_id = new.id),
            new.min_lon, new.max_lon, new.min_lat, new.max_lat);
END""",
    """CREATE TRIGGER images_bbox_rtree_update AFTER UPDATE OF id, min_lon, min_lat, max_lon, max_lat ON images
WHEN old.id IS NOT new.id OR old.min_lon IS NOT new.min_lon OR old.min_lat IS NOT new.min_lat
  OR old.max_lon IS NOT new.max_lon OR old.max_lat IS NOT new.max_lat BEGIN
  UPDATE images_bbox_rtree_ids SET image_id = new.id WHERE image_id = old.id;
  UPDATE images_bbox_rtree
    SET min_lon = new.min_lon, max_lon = new.max_lon, min_lat = new.min_lat, max_lat = new.max_lat
    WHERE id = (SELECT id FROM images_bbox_rtree_ids WHERE image_id = new.id);
END""",
    """CREATE TRIGGER images_bbox_rtree_delete AFTER DELETE ON images BEGIN
  DELETE FROM images_bbox_rtree WHERE id = (SELECT id FROM images_bbox_rtree_ids WHERE image_id = old.id);
  DELETE FROM images_bbox_rtree_ids WHERE image_id = old.id;
END""",
)
for _statement in SQLITE_BBOX_RTREE_DDL:
    event.listen(
        Image.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]  # SQLAlchemy's DDL() is unannotated
    )
for _statement in ("DROP TABLE IF EXISTS images_bbox_rtree", "DROP TABLE IF EXISTS images_bbox_rtree_ids"):
    event.listen(
        Image.__table__,
        "after_drop",
        DDL(_statement).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]  # SQLAlchemy's DDL() is unannotated
    )

#: Prefix of the SQLite R*Tree's tables (its own, the shadow tables SQLite makes for it, and the ids).
SQLITE_BBOX_RTREE_PREFIX = "images_bbox_rtree"
#: PostgreSQL with PostGIS only (migration 0004): the footprint geometry column and its GiST index.
POSTGIS_FOOTPRINT_COLUMN = "footprint"
POSTGIS_FOOTPRINT_INDEX = "ix_images_footprint"


def is_modelled(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Return whether a schema object is described by these models (Alembic's ``include_name`` hook).

    False for what migration 0004 creates outside the models: the SQLite R*Tree tables and the
    PostGIS footprint column and index, which exist only on some databases. Comparisons between
    the migrated schema and the models (autogenerate, the drift tests) skip them.

    Returns:
        True unless the object is one of those.

    Raises:
        Nothing.
    """
    if type_ == "table" and name is not None and name.startswith(SQLITE_BBOX_RTREE_PREFIX):
        return False
    if parent_names.get("table_name") == "images":
        if type_ == "column" and name == POSTGIS_FOOTPRINT_COLUMN:
            return False
        if type_ == "index" and name == POSTGIS_FOOTPRINT_INDEX:
            return False
    return True


class ImageFile(Base):
    """The file holding one band of an image: a local path or an ``s3://`` URI."""

    __tablename__ = "image_files"
    __table_args__ = (CheckConstraint("size_bytes >= 0", name="size_bytes_non_negative"),)

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    band: Mapped[str] = mapped_column(String, primary_key=True)
    href: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)

    image: Mapped[Image] = relationship(back_populates="files")

    def __repr__(self) -> str:
        return f"ImageFile(image_id={self.image_id!r}, band={self.band!r})"


class ImageUpload(Base):
    """One upload of pixels into an image (migration 0005): its status, events and errors.

    ``status`` is ``pending``, ``running``, ``success``, ``failure`` or ``canceled``; ``events``
    is a list of ``{"event_type", "event_datetime", "message"}`` and ``errors`` a list of
    ``{"error_type", "message"}``. ``image_id`` is not a foreign key: a failed upload's image
    does not exist.
    """

    __tablename__ = "image_uploads"
    __table_args__ = (Index("ix_image_uploads_image_id", "image_id"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    product_id: Mapped[str] = mapped_column(String)
    image_id: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    image_upload_options: Mapped[dict[str, Any]] = mapped_column(json_document(), default=dict)
    events: Mapped[list[dict[str, Any]]] = mapped_column(json_document(), default=list)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(json_document(), default=list)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow(), onupdate=utcnow())

    def __repr__(self) -> str:
        return f"ImageUpload(id={self.id!r}, image_id={self.image_id!r}, status={self.status!r})"
