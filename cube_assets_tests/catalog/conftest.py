"""Catalog fixtures: a fresh catalog database per test, on SQLite and on PostgreSQL.

Every test that uses ``catalog_url`` (or ``engine``/``sessions``, built on it) runs twice: on a
SQLite file in ``tmp_path`` and on PostgreSQL, in a fresh schema (selected through the URL's
``search_path`` option) of the throw-away server that ``cube_assets_tests/fixtures_postgres.py``
starts once per session (``postgresql_server``; it skips locally but fails when ``CI=true`` if
PostgreSQL cannot be used).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema
from cube_assets_tests.fixtures_postgres import PostgresServer

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a new, empty catalog: a SQLite file, or a fresh schema of the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/catalog.sqlite"
        return
    # A fresh schema per test isolates as well as a fresh database, in ~1 ms instead of ~300 ms.
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    schema = f"catalog_test_{uuid.uuid4().hex[:12]}"
    server.admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield server.schema_url(schema)
    finally:
        server.admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(catalog_url: str) -> Iterator[Engine]:
    """An engine on a catalog database migrated to the latest schema."""
    catalog_engine = create_catalog_engine(catalog_url)
    upgrade_schema(catalog_engine)
    try:
        yield catalog_engine
    finally:
        catalog_engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory of the migrated catalog."""
    return session_factory(engine)
