"""Spatial indexes of footprints on every backend (PostGIS where available); per-image byte totals.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

* ``images.size_bytes``: the sum of the known sizes of the image's files, backfilled here and
  written with the files by the upserts, so summaries of bytes aggregate images alone instead of
  joining every file row. Indexes ``(product_id, acquired, size_bytes)`` (replacing
  ``(product_id, acquired)``) and ``(acquired, size_bytes)`` make the month summaries of a
  product or of the whole catalogue index-only scans on PostgreSQL.
* SQLite: an R*Tree over the bounding boxes (``images_bbox_rtree``, keyed through
  ``images_bbox_rtree_ids``), filled here and kept in step by triggers; ``intersects`` finds its
  candidates there. SQLite cannot add a column in place without making its stored DDL differ from
  what the models create, so ``images`` is rebuilt with ``size_bytes`` in its modelled place.
* PostgreSQL with PostGIS: ``images.footprint geometry(Geometry, 4326)``, filled from the GeoJSON
  by a trigger on insert and on any change of ``geometry`` (backfilled here), with the GiST index
  ``ix_images_footprint``; ``intersects`` then uses ``ST_Intersects``. PostGIS is used when the
  extension is installed in the database, or when the server offers it
  (``pg_available_extensions``) and it can be created here (it is created in schema ``public``,
  where every schema of the database finds it; a failure, e.g. for lack of privilege, leaves the
  portable path). ``upgrade_schema(..., postgis=False)`` (or ``-x postgis=off`` on the Alembic
  command line) skips it. Downgrading removes the column, index, trigger and function; the
  extension stays, as other schemas of the database may use it.

Hand-written; the drift tests in ``cube_assets_tests/catalog/test_migrations.py`` compare the
result with ``cube_assets/catalog/models.py`` (byte for byte on SQLite).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

_IMAGE_COLUMNS = (
    "id, product_id, name, acquired, acquired_end, geometry, min_lon, min_lat, max_lon, max_lat, crs,"
    " geotransform, width, height, pixel_size_x, pixel_size_y, cloud_fraction, fill_fraction, provider,"
    " provider_id, tile, period_start, properties, tags, created, modified"
)
_OLD_IMAGES = "_images_before_0004"

#: The indexes of ``images`` that 0001 created and 0004 keeps (name, columns), SQLite and PostgreSQL.
_KEPT_INDEXES = (
    ("ix_images_min_lon", ["min_lon"]),
    ("ix_images_min_lat", ["min_lat"]),
    ("ix_images_max_lon", ["max_lon"]),
    ("ix_images_max_lat", ["max_lat"]),
    ("ix_images_tile", ["tile"]),
    ("ix_images_provider_provider_id", ["provider", "provider_id"]),
)
_OLD_PRODUCT_INDEX = ("ix_images_product_id_acquired", ["product_id", "acquired"])
_NEW_INDEXES = (
    ("ix_images_product_id_acquired_size_bytes", ["product_id", "acquired", "size_bytes"]),
    ("ix_images_acquired_size_bytes", ["acquired", "size_bytes"]),
)

#: Frozen copy of ``models.SQLITE_BBOX_RTREE_DDL`` as of this revision.
_SQLITE_RTREE_DDL = (
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
_SQLITE_RTREE_TRIGGERS = ("images_bbox_rtree_insert", "images_bbox_rtree_update", "images_bbox_rtree_delete")

_FOOTPRINT_FUNCTION = "images_footprint_from_geometry"
_FOOTPRINT_TRIGGERS = ("images_footprint_on_insert", "images_footprint_on_update")


def _json() -> sa.types.TypeEngine:
    """JSON on SQLite, JSONB on PostgreSQL; ``None`` stored as SQL NULL."""
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _sqlite_now() -> sa.TextClause:
    return sa.text("(strftime('%Y-%m-%d %H:%M:%f', 'now'))")


def _create_sqlite_images(with_size_bytes: bool) -> None:
    """Create ``images`` as 0001 did, plus ``size_bytes`` as the last column when asked (SQLite only)."""
    extra = [sa.Column("size_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False)]
    op.create_table(
        "images",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("product_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("acquired", _timestamp(), nullable=False),
        sa.Column("acquired_end", _timestamp(), nullable=True),
        sa.Column("geometry", _json(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("crs", sa.Text(), nullable=False),
        sa.Column("geotransform", _json(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("pixel_size_x", sa.Float(), nullable=True),
        sa.Column("pixel_size_y", sa.Float(), nullable=True),
        sa.Column("cloud_fraction", sa.Float(), nullable=True),
        sa.Column("fill_fraction", sa.Float(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.Column("tile", sa.String(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("properties", _json(), nullable=False),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("created", _timestamp(), server_default=_sqlite_now(), nullable=False),
        sa.Column("modified", _timestamp(), server_default=_sqlite_now(), nullable=False),
        *(extra if with_size_bytes else []),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.CheckConstraint("cloud_fraction >= 0 AND cloud_fraction <= 1", name=op.f("ck_images_cloud_fraction_range")),
        sa.CheckConstraint("fill_fraction >= 0 AND fill_fraction <= 1", name=op.f("ck_images_fill_fraction_range")),
        sa.CheckConstraint("min_lon <= max_lon AND min_lat <= max_lat", name=op.f("ck_images_bbox_ordered")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_images_product_id_products")),
    )


def _rebuild_sqlite_images(with_size_bytes: bool) -> None:
    """Recreate ``images`` with or without ``size_bytes``, keeping every row (SQLite only).

    ``legacy_alter_table`` keeps SQLite from rewriting ``image_files``' foreign key to follow the
    renamed old table (env.py has foreign keys off while migrating and checks them at the end).
    """
    op.execute("PRAGMA legacy_alter_table=ON")
    op.rename_table("images", _OLD_IMAGES)
    _create_sqlite_images(with_size_bytes)
    if with_size_bytes:
        op.execute(
            f"INSERT INTO images ({_IMAGE_COLUMNS}, size_bytes) SELECT {_IMAGE_COLUMNS},"
            " coalesce((SELECT sum(f.size_bytes) FROM image_files AS f WHERE f.image_id = o.id), 0)"
            f" FROM {_OLD_IMAGES} AS o"
        )
    else:
        op.execute(f"INSERT INTO images ({_IMAGE_COLUMNS}) SELECT {_IMAGE_COLUMNS} FROM {_OLD_IMAGES}")
    op.drop_table(_OLD_IMAGES)  # and its indexes and triggers
    op.execute("PRAGMA legacy_alter_table=OFF")
    product_indexes = _NEW_INDEXES if with_size_bytes else (_OLD_PRODUCT_INDEX,)
    for name, columns in (*product_indexes, *_KEPT_INDEXES):
        op.create_index(op.f(name), "images", columns)


def _wanted_postgis() -> bool:
    """Whether the caller allows PostGIS: ``upgrade_schema(postgis=...)`` or ``-x postgis=off``."""
    allowed = context.config.attributes.get("postgis", True)
    switch = context.get_x_argument(as_dictionary=True).get("postgis")
    if switch is not None:
        allowed = switch.lower() not in ("0", "off", "false", "no")
    return bool(allowed)


def _postgis_schema(bind: sa.Connection) -> str | None:
    """The schema of the PostGIS extension, creating the extension when possible; None without it."""
    installed = bind.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'postgis'"
        )
    ).scalar()
    if installed is not None:
        return str(installed)
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")).scalar()
    if available is None:
        log.info("catalog migration 0004: PostGIS is not available on this server; footprints use bounding boxes")
        return None
    has_public = bind.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = 'public'")).scalar()
    target = "public" if has_public else str(bind.execute(sa.text("SELECT current_schema()")).scalar())
    try:
        with bind.begin_nested():
            bind.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS postgis SCHEMA {_quote(bind, target)}"))
    except DBAPIError as exc:
        log.warning(
            "catalog migration 0004: cannot create the PostGIS extension (%s); footprints use bounding boxes", exc.orig
        )
        return None
    return target


def _quote(bind: sa.Connection, name: str) -> str:
    return bind.dialect.identifier_preparer.quote(name)


def _add_postgis_footprint(bind: sa.Connection, schema: str) -> None:
    """Add ``images.footprint``, its fill trigger, its values and its GiST index (PostGIS in ``schema``)."""
    ps = _quote(bind, schema)
    op.execute(f"ALTER TABLE images ADD COLUMN footprint {ps}.geometry(Geometry, 4326)")
    # PostGIS functions are schema-qualified: the catalog may run with a search_path without them.
    op.execute(
        f"""CREATE FUNCTION {_FOOTPRINT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.footprint := {ps}.st_setsrid({ps}.st_force2d({ps}.st_geomfromgeojson(NEW.geometry::text)), 4326);
  RETURN NEW;
END
$$"""
    )
    op.execute(
        f"CREATE TRIGGER {_FOOTPRINT_TRIGGERS[0]} BEFORE INSERT ON images"
        f" FOR EACH ROW EXECUTE FUNCTION {_FOOTPRINT_FUNCTION}()"
    )
    op.execute(
        f"CREATE TRIGGER {_FOOTPRINT_TRIGGERS[1]} BEFORE UPDATE OF geometry ON images"
        " FOR EACH ROW WHEN (OLD.geometry IS DISTINCT FROM NEW.geometry)"
        f" EXECUTE FUNCTION {_FOOTPRINT_FUNCTION}()"
    )
    op.execute(
        f"UPDATE images SET footprint = {ps}.st_setsrid({ps}.st_force2d({ps}.st_geomfromgeojson(geometry::text)), 4326)"
    )
    op.execute("CREATE INDEX ix_images_footprint ON images USING gist (footprint)")


def _drop_postgis_footprint() -> None:
    for trigger in _FOOTPRINT_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON images")
    op.execute(f"DROP FUNCTION IF EXISTS {_FOOTPRINT_FUNCTION}()")
    op.execute("DROP INDEX IF EXISTS ix_images_footprint")
    op.execute("ALTER TABLE images DROP COLUMN IF EXISTS footprint")


def upgrade() -> None:
    """Add ``images.size_bytes`` and its indexes; the R*Tree on SQLite; the PostGIS footprint where possible."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite_images(with_size_bytes=True)
        for statement in _SQLITE_RTREE_DDL:
            op.execute(statement)
        op.execute("INSERT INTO images_bbox_rtree_ids (image_id) SELECT id FROM images ORDER BY rowid")
        op.execute(
            "INSERT INTO images_bbox_rtree (id, min_lon, max_lon, min_lat, max_lat)"
            " SELECT ids.id, images.min_lon, images.max_lon, images.min_lat, images.max_lat"
            " FROM images JOIN images_bbox_rtree_ids AS ids ON ids.image_id = images.id"
        )
        return
    op.add_column("images", sa.Column("size_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
    op.execute(
        "UPDATE images SET size_bytes = files.total"
        " FROM (SELECT image_id, sum(size_bytes) AS total FROM image_files GROUP BY image_id) AS files"
        " WHERE images.id = files.image_id AND files.total IS NOT NULL"
    )
    op.drop_index(op.f(_OLD_PRODUCT_INDEX[0]), table_name="images")
    for name, columns in _NEW_INDEXES:
        op.create_index(op.f(name), "images", columns)
    # Offline (``alembic upgrade --sql``) nothing can be asked of the server: no PostGIS.
    schema = _postgis_schema(bind) if _wanted_postgis() and not context.is_offline_mode() else None
    if schema is not None:
        _add_postgis_footprint(bind, schema)


def downgrade() -> None:
    """Remove the R*Tree (SQLite) or the PostGIS footprint (PostgreSQL), the byte totals and their indexes."""
    if op.get_bind().dialect.name == "sqlite":
        for trigger in _SQLITE_RTREE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS images_bbox_rtree")
        op.execute("DROP TABLE IF EXISTS images_bbox_rtree_ids")
        _rebuild_sqlite_images(with_size_bytes=False)
        return
    _drop_postgis_footprint()
    for name, _columns in _NEW_INDEXES:
        op.drop_index(op.f(name), table_name="images")
    op.create_index(op.f(_OLD_PRODUCT_INDEX[0]), "images", _OLD_PRODUCT_INDEX[1])
    op.drop_column("images", "size_bytes")
