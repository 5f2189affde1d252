"""Engine setup and Alembic migrations of the catalog: upgrade, downgrade, and no drift from the models."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, inspect, text

from cube_assets.catalog.database import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    create_catalog_engine,
    default_catalog_url,
    downgrade_schema,
    upgrade_schema,
)
from cube_assets.catalog.models import Base
from cube_assets.errors import CatalogError
from cube_assets.providers import registry_models  # noqa: F401 - the registry tables are on Base.metadata too

CATALOG_TABLES = {"products", "bands", "images", "image_files", "providers", "provider_priorities"}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _revision(url: str) -> list[str]:
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
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

    assert _tables(catalog_url) == CATALOG_TABLES | {VERSION_TABLE}
    assert _revision(catalog_url) == [HEAD]


def test_upgrade_twice_is_a_no_op(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    upgrade_schema(catalog_url)

    assert _revision(catalog_url) == [HEAD]
    assert _tables(catalog_url) == CATALOG_TABLES | {VERSION_TABLE}


def test_downgrade_to_base_removes_catalog_tables(catalog_url: str) -> None:
    upgrade_schema(catalog_url)

    downgrade_schema(catalog_url)

    assert _tables(catalog_url) & CATALOG_TABLES == set()
    assert _revision(catalog_url) == []


def test_upgrade_after_downgrade_recreates_tables(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    downgrade_schema(catalog_url, "base")
    upgrade_schema(catalog_url)

    assert _tables(catalog_url) == CATALOG_TABLES | {VERSION_TABLE}


def test_migrated_schema_matches_models(catalog_url: str) -> None:
    upgrade_schema(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True},
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
        "ix_images_product_id_acquired": ["product_id", "acquired"],
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
