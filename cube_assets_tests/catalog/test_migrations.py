"""Engine setup and Alembic migrations of the catalog: upgrade, downgrade, and no drift from the models."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, CheckConstraint, DateTime, insert, inspect, make_url, text
from sqlalchemy.sql import column, table

from cube_assets.catalog.database import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    create_catalog_engine,
    default_catalog_url,
    downgrade_schema,
    postgis_footprint_schema,
    upgrade_schema,
)
from cube_assets.catalog.models import Base, is_modelled
from cube_assets.catalog.summary import Summary
from cube_assets.client import Catalog, Image
from cube_assets.errors import CatalogError
from cube_assets.providers import registry_models  # noqa: F401 - the registry tables are on Base.metadata too
from cube_assets_tests.catalog.conftest import FootprintBackend
from cube_assets_tests.fixtures_postgres import PostgresServer

CATALOG_TABLES = {"products", "bands", "images", "image_files", "image_uploads", "providers", "provider_priorities"}
#: SQLite only (0004): the R*Tree, the shadow tables SQLite keeps for it, and its id table.
SQLITE_RTREE_TABLES = {f"images_bbox_rtree{suffix}" for suffix in ("", "_node", "_rowid", "_parent", "_ids")}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _head_tables(url: str) -> set[str]:
    """The tables a catalog at head has on the backend of ``url``."""
    tables = CATALOG_TABLES | {VERSION_TABLE}
    return tables | SQLITE_RTREE_TABLES if url.startswith("sqlite") else tables


def _revision(url: str) -> list[str]:
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def postgis_footprint_schema_of(url: str) -> str | None:
    engine = create_catalog_engine(url)
    try:
        return postgis_footprint_schema(engine)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_catalog_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# URLs and engines
# ---------------------------------------------------------------------------------------------


def test_default_catalog_url_points_at_catalog_sqlite_under_root(tmp_path: Path) -> None:
    assert default_catalog_url(tmp_path / "cube") == f"sqlite:///{tmp_path}/cube/catalog.sqlite"


def test_sqlite_engine_enables_foreign_keys_and_wal(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path}/sub/dir/catalog.sqlite")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
    assert (tmp_path / "sub/dir/catalog.sqlite").is_file()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:p@db.example:5432/catalog", "postgresql+psycopg"),
        ("postgres://u:p@db.example/catalog", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/catalog", "postgresql+psycopg"),
    ],
)
def test_postgresql_urls_use_psycopg3(url: str, driver: str) -> None:
    pytest.importorskip("psycopg")
    engine = create_catalog_engine(url)  # no connection is made
    try:
        assert engine.url.drivername == driver
        assert engine.url.host == "db.example"
        assert engine.url.database == "catalog"
    finally:
        engine.dispose()


def test_unsupported_database_url_is_refused() -> None:
    with pytest.raises(CatalogError, match="mysql"):
        create_catalog_engine("mysql://u@db.example/catalog")


def test_migrations_are_found_from_the_package_folder() -> None:
    import cube_assets.catalog

    assert Path(cube_assets.catalog.__file__).resolve().parent / "migrations" == MIGRATIONS_DIR
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()


# ---------------------------------------------------------------------------------------------
# Migrations (both backends)
# ---------------------------------------------------------------------------------------------


def test_upgrade_from_empty_creates_catalog_tables_at_head(catalog_url: str) -> None:
    assert _tables(catalog_url) == set()

    upgrade_schema(catalog_url)

    assert _tables(catalog_url) == _head_tables(catalog_url)
    assert _revision(catalog_url) == [HEAD]
    assert HEAD == "0005"


def test_upgrade_twice_is_a_no_op(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    upgrade_schema(catalog_url)

    assert _revision(catalog_url) == [HEAD]
    assert _tables(catalog_url) == _head_tables(catalog_url)


def test_downgrade_to_base_removes_catalog_tables(catalog_url: str) -> None:
    upgrade_schema(catalog_url)

    downgrade_schema(catalog_url)

    assert _tables(catalog_url) & (CATALOG_TABLES | SQLITE_RTREE_TABLES) == set()
    assert _revision(catalog_url) == []


def test_upgrade_after_downgrade_recreates_tables(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    downgrade_schema(catalog_url, "base")
    upgrade_schema(catalog_url)

    assert _tables(catalog_url) == _head_tables(catalog_url)


@pytest.mark.filterwarnings("ignore:Did not recognize type .*geometry")  # PostGIS footprint, skipped by is_modelled
def test_migrated_schema_matches_models(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": VERSION_TABLE,
                    "compare_type": True,
                    "compare_server_default": True,
                    # The R*Tree (SQLite) and the PostGIS footprint exist outside the models.
                    "include_name": is_modelled,
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_migrated_check_constraints_match_models(catalog_url: str) -> None:
    # compare_metadata ignores CHECK constraints; compare their names here.
    upgrade_schema(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        inspector = inspect(engine)
        migrated = {
            table: {check["name"] for check in inspector.get_check_constraints(table)} for table in CATALOG_TABLES
        }
    finally:
        engine.dispose()
    modelled = {
        table: {c.name for c in Base.metadata.tables[table].constraints if isinstance(c, CheckConstraint)}
        for table in CATALOG_TABLES
    }

    assert migrated == modelled
    assert "ck_images_cloud_fraction_range" in migrated["images"]


def test_migrated_images_indexes_serve_product_time_bbox_and_tile_filters(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("images")}
    finally:
        engine.dispose()

    expected = {
        "ix_images_product_id_acquired_size_bytes": ["product_id", "acquired", "size_bytes"],
        "ix_images_acquired_size_bytes": ["acquired", "size_bytes"],
        "ix_images_min_lon": ["min_lon"],
        "ix_images_min_lat": ["min_lat"],
        "ix_images_max_lon": ["max_lon"],
        "ix_images_max_lat": ["max_lat"],
        "ix_images_tile": ["tile"],
        "ix_images_provider_provider_id": ["provider", "provider_id"],
    }
    if catalog_url.startswith("postgresql"):
        # 0003: GiST over the bbox and time-span expressions (reflected without column names).
        expected["ix_images_bbox_time_span"] = [None, None]
        if postgis_footprint_schema_of(catalog_url) is not None:
            expected["ix_images_footprint"] = ["footprint"]  # 0004, where PostGIS is available
    assert indexes == expected


def test_migrated_sqlite_ddl_is_identical_to_models_ddl(tmp_path: Path) -> None:
    # The strictest drift check available: byte-for-byte CREATE statements, CHECKs included.
    migrated_url = f"sqlite:///{tmp_path}/migrated.sqlite"
    upgrade_schema(migrated_url)
    modelled = create_catalog_engine(f"sqlite:///{tmp_path}/modelled.sqlite")
    Base.metadata.create_all(modelled)
    modelled.dispose()

    def ddl(path: Path) -> dict[str, str]:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            rows = connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != ?", (VERSION_TABLE,)
            ).fetchall()
        return dict(rows)

    migrated = ddl(tmp_path / "migrated.sqlite")
    assert migrated == ddl(tmp_path / "modelled.sqlite")
    assert set(migrated) >= CATALOG_TABLES


# ---------------------------------------------------------------------------------------------
# 0004: byte totals, the SQLite R*Tree, the PostGIS footprint (three backends)
# ---------------------------------------------------------------------------------------------

_PRODUCTS_0003 = table(
    "products", column("id"), column("name"), column("description"), column("tags", JSON), column("properties", JSON)
)
_IMAGES_0003 = table(
    "images", column("id"), column("product_id"), column("name"), column("acquired", DateTime(timezone=True)),
    column("geometry", JSON), column("min_lon"), column("min_lat"), column("max_lon"), column("max_lat"),
    column("crs"), column("properties", JSON), column("tags", JSON),
)  # fmt: skip
_FILES_0003 = table("image_files", column("image_id"), column("band"), column("href"), column("size_bytes"))
_TRIANGLE = {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}
_SQUARE = {"type": "Polygon", "coordinates": [[[2.0, 2.0], [3.0, 2.0], [3.0, 3.0], [2.0, 3.0], [2.0, 2.0]]]}


def _fill_at_0003(url: str) -> None:
    """Two images as a 0003 catalog holds them: a triangle with three files (one of unknown size), a bare square."""
    engine = create_catalog_engine(url)
    acquired = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    try:
        with engine.begin() as connection:
            connection.execute(insert(_PRODUCTS_0003).values(id="p", name="p", description="", tags=[], properties={}))
            for image_id, geometry, (x0, y0, x1, y1) in (
                ("triangle", _TRIANGLE, (0, 0, 1, 1)),
                ("square", _SQUARE, (2, 2, 3, 3)),
            ):
                connection.execute(
                    insert(_IMAGES_0003).values(
                        id=image_id,
                        product_id="p",
                        name=image_id,
                        acquired=acquired,
                        geometry=geometry,
                        min_lon=x0,
                        min_lat=y0,
                        max_lon=x1,
                        max_lat=y1,
                        crs="EPSG:4326",
                        properties={},
                        tags=[],
                    )  # fmt: skip
                )
            connection.execute(
                insert(_FILES_0003),
                [
                    {"image_id": "triangle", "band": "B04", "href": "/b04.tif", "size_bytes": 1000},
                    {"image_id": "triangle", "band": "B08", "href": "/b08.tif", "size_bytes": 234},
                    {"image_id": "triangle", "band": "SCL", "href": "/scl.tif", "size_bytes": None},
                ],
            )
    finally:
        engine.dispose()


def _image_columns_and_indexes(url: str) -> tuple[set[str], set[str]]:
    engine = create_catalog_engine(url)
    try:
        inspector = inspect(engine)
        return {c["name"] for c in inspector.get_columns("images")}, {
            i["name"] for i in inspector.get_indexes("images")
        }
    finally:
        engine.dispose()


def _scalar(url: str, sql: str) -> Any:
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        engine.dispose()


@pytest.mark.filterwarnings("ignore:Did not recognize type .*geometry")
def test_0004_fills_byte_totals_and_spatial_index_of_existing_images(footprint_backend: FootprintBackend) -> None:
    url = footprint_backend.url
    upgrade_schema(url, "0003", postgis=footprint_backend.postgis)
    _fill_at_0003(url)

    upgrade_schema(url, postgis=footprint_backend.postgis)

    assert _scalar(url, "SELECT size_bytes FROM images WHERE id = 'triangle'") == 1234
    assert _scalar(url, "SELECT size_bytes FROM images WHERE id = 'square'") == 0
    if footprint_backend.name == "sqlite":
        assert _scalar(url, "SELECT count(*) FROM images_bbox_rtree JOIN images_bbox_rtree_ids USING (id)") == 2
    schema = postgis_footprint_schema_of(url)
    assert (schema is not None) == footprint_backend.postgis
    if schema is not None:
        assert (
            _scalar(url, f"SELECT {schema}.st_astext(footprint) FROM images WHERE id = 'triangle'")
            == "POLYGON((0 0,1 0,0 1,0 0))"
        )
    with Catalog(url) as catalog:
        beyond_diagonal = Image.search(catalog).intersects(shapely.geometry.box(0.6, 0.6, 2.5, 0.9))
        assert [image.id for image in beyond_diagonal] == []
        assert Image.search(catalog).summary() == Summary(count=2, bytes=1234, products=["p"])


@pytest.mark.filterwarnings("ignore:Did not recognize type .*geometry")
def test_0004_downgrade_restores_0003_and_keeps_the_rows(footprint_backend: FootprintBackend) -> None:
    url = footprint_backend.url
    upgrade_schema(url, "0003", postgis=footprint_backend.postgis)
    columns_0003, indexes_0003 = _image_columns_and_indexes(url)
    _fill_at_0003(url)
    upgrade_schema(url, postgis=footprint_backend.postgis)

    downgrade_schema(url, "0003")

    assert _revision(url) == ["0003"]
    assert _image_columns_and_indexes(url) == (columns_0003, indexes_0003)
    assert "size_bytes" not in columns_0003 and "footprint" not in columns_0003
    assert _tables(url) & SQLITE_RTREE_TABLES == set()
    assert _scalar(url, "SELECT count(*) FROM images") == 2
    assert _scalar(url, "SELECT count(*) FROM image_files") == 3
    if footprint_backend.name == "sqlite":
        # The rebuilt images table is still the parent of image_files' foreign key.
        assert _scalar(url, "SELECT \"table\" FROM pragma_foreign_key_list('image_files')") == "images"
        assert _scalar(url, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'") == 0
    else:
        triggers = "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('images') AND NOT tgisinternal"
        assert _scalar(url, triggers) == 0
        assert _scalar(url, "SELECT to_regprocedure('images_footprint_from_geometry()') IS NULL") is True

    upgrade_schema(url, postgis=footprint_backend.postgis)  # and up again

    assert _scalar(url, "SELECT size_bytes FROM images WHERE id = 'triangle'") == 1234
    assert (postgis_footprint_schema_of(url) is not None) == footprint_backend.postgis


def test_0004_without_the_right_to_create_postgis_keeps_the_portable_path(
    postgresql_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server has PostGIS, but the catalog's user is no superuser (postgis is not a trusted
    # extension) and the database does not have it yet: the migration must not fail.
    postgresql_server.require_postgis()
    database = postgresql_server.create_database("no_postgis_right")
    role = f"catalog_{uuid.uuid4().hex[:8]}"
    postgresql_server.admin(f"CREATE ROLE {role} LOGIN")
    postgresql_server.admin(f'ALTER DATABASE "{database}" OWNER TO {role}')  # may create in its public schema
    url = (
        make_url(postgresql_server.database_url(database))
        .set(username=role, password=None)
        .render_as_string(hide_password=False)
    )
    try:
        with caplog.at_level(logging.WARNING):
            upgrade_schema(url)

        assert _revision(url) == [HEAD]
        assert postgis_footprint_schema_of(url) is None
        assert "cannot create the PostGIS extension" in caplog.text
        with Catalog(url) as catalog:
            catalog.products(id="p", name="p").save()
            catalog.images(id="i", product_id="p", acquired="2024-01-01", crs="EPSG:4326",
                           geometry=shapely.geometry.Polygon([(0, 0), (1, 0), (0, 1)])).save()  # fmt: skip
            assert [i.id for i in Image.search(catalog).intersects(shapely.geometry.Point(0.2, 0.2))] == ["i"]
            assert [i.id for i in Image.search(catalog).intersects(shapely.geometry.Point(0.8, 0.8))] == []
    finally:
        postgresql_server.drop_database(database)
        postgresql_server.admin(f"DROP ROLE {role}")
