"""PostgreSQL connections: a search is one autocommit statement, and only an idle connection is pinged.

A real server (``fixtures_postgres``): a connection is killed with ``pg_terminate_backend``, as a
server restart or an idle timeout would, to tell a ping from no ping.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from cube_assets.catalog import database
from cube_assets.catalog.expressions import properties as p
from cube_assets.client import Catalog, Image, Product
from cube_assets_tests.fixtures_postgres import PostgresServer

FOOTPRINT = {"type": "Polygon", "coordinates": [[[-48, -16], [-47.5, -16], [-47.5, -15.5], [-48, -15.5], [-48, -16]]]}


@pytest.fixture
def catalog(postgresql_schema_url: str) -> Catalog:
    catalog = Catalog(postgresql_schema_url)
    Product(id="p", name="p", catalog=catalog).save()
    for day in range(1, 4):
        Image(
            id=f"i{day}",
            product_id="p",
            acquired=dt.datetime(2024, 1, day, tzinfo=dt.UTC),
            geometry=FOOTPRINT,
            crs="EPSG:4326",
            cloud_fraction=day / 10,
            catalog=catalog,
        ).save()
    return catalog


def _kill_pooled_connections(server: PostgresServer, catalog: Catalog) -> None:
    """Terminate every server process of the catalog's user but this one (the pooled connections)."""
    with catalog.engine.connect() as connection:
        user = connection.execute(text("SELECT current_user")).scalar_one()
    server.admin(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}' AND pid <> pg_backend_pid()"
    )


def _ids(catalog: Catalog) -> list[str]:
    return [image.id for image in Image.search(catalog=catalog).filter(p.cloud_fraction < 0.25).limit(10)]


def test_a_search_runs_as_one_autocommit_statement(catalog: Catalog) -> None:
    with catalog.single_statement_session() as session:
        assert session.connection().connection.dbapi_connection.autocommit is True
    with catalog.session() as session:
        assert session.connection().connection.dbapi_connection.autocommit is False

    assert _ids(catalog) == ["i1", "i2"]


def test_a_connection_idle_past_the_limit_is_pinged_and_replaced(
    catalog: Catalog, postgresql_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _ids(catalog) == ["i1", "i2"]
    _kill_pooled_connections(postgresql_server, catalog)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)

    assert _ids(catalog) == ["i1", "i2"]


def test_a_connection_used_moments_ago_is_not_pinged(
    catalog: Catalog, postgresql_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _ids(catalog) == ["i1", "i2"]
    _kill_pooled_connections(postgresql_server, catalog)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)

    with pytest.raises(OperationalError):  # no ping: the dead connection is handed out, and found dead
        _ids(catalog)
    assert _ids(catalog) == ["i1", "i2"]  # the pool dropped it: the next search gets a new one


def test_eight_concurrent_searches_reuse_their_connections_the_next_time(catalog: Catalog) -> None:
    # A STAC API worker answers several searches at once; SQLAlchemy's default pool (5) closed
    # the connections above five when they came back, so every burst opened them again.
    opened: list[object] = []
    event.listen(catalog.engine, "connect", lambda dbapi_connection, record: opened.append(dbapi_connection))
    together = threading.Barrier(8)

    def search() -> list[str]:
        with catalog.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            together.wait(timeout=30)  # all eight connections are checked out at once
        return _ids(catalog)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: search(), range(8))) == [["i1", "i2"]] * 8
        first_burst = len(opened)
        assert list(pool.map(lambda _: search(), range(8))) == [["i1", "i2"]] * 8

    assert first_burst >= 7  # the burst needed them (one may have been pooled by the fixture)
    assert len(opened) == first_burst
