"""The anchor of ``benchmarks/stac_api.py``: the same Items in pgstac, served by stac-fastapi-pgstac.

:func:`load_pgstac` creates a ``pgstac`` database on the benchmark's PostgreSQL server, migrates it
with ``pypgstac`` and loads, through pypgstac's ``Loader``, the Collections and Items that this
project's API serves for the catalog (built by the same code, ``product_stac`` and
``item_document``, with no links). :func:`pgstac_command` is the command and environment that
serve that database with stac-fastapi-pgstac under uvicorn.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from cube_assets.catalog.expressions import properties as p
from cube_assets.client import Catalog, Image, Product
from cube_assets.client.stac_export import ItemContext, item_document, product_stac

DATABASE = "pgstac"
PAGE = 5_000


def pgstac_missing() -> str | None:
    """Return why the anchor cannot run (pypgstac or stac-fastapi-pgstac not installed), or None."""
    try:
        import pypgstac  # noqa: F401 - imported only to learn whether it is installed
        import stac_fastapi.pgstac  # noqa: F401 - imported only to learn whether it is installed
    except ImportError as exc:
        return f"not installed ({exc})"
    return None


def _conninfo(url: str, database: str) -> str:
    """The libpq URL of ``database`` on the server of the SQLAlchemy ``url`` (a TCP one)."""
    server = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    return f"{server}/{database}"


def _items(catalog: Catalog, product: Product, context: ItemContext) -> Iterator[dict[str, Any]]:
    """Every image of ``product`` as the API's Item dict, read ``PAGE`` images at a time in id order."""
    last = ""
    while True:
        page = list(
            Image.search(catalog=catalog).filter(p.product_id == product.id).filter(p.id > last).sort("id").limit(PAGE)
        )
        for image in page:
            yield item_document(image, context)
        if len(page) < PAGE:
            return
        last = page[-1].id


def load_pgstac(url: str, catalog: Catalog) -> tuple[float, int]:
    """Create, migrate and fill the ``pgstac`` database beside the catalog at ``url``; return seconds and items.

    Raises:
        psycopg.Error: if the database cannot be created or loaded.
    """
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods
    from pypgstac.migrate import Migrate

    started = time.perf_counter()
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {DATABASE}")
    loaded = 0
    with PgstacDB(dsn=_conninfo(url, DATABASE)) as db:
        Migrate(db).run_migration()
        loader = Loader(db)
        products = sorted(Product.search(catalog=catalog), key=lambda product: product.id)
        stacs = {product.id: product_stac(catalog, product) for product in products}
        loader.load_collections(
            iter(stac.collection.to_dict(include_self_link=False, transform_hrefs=False) for stac in stacs.values()),
            Methods.insert,
        )
        for product in products:
            counted = _counted(_items(catalog, product, stacs[product.id].items))
            loader.load_items(counted, Methods.insert)
            loaded += counted.count
    return time.perf_counter() - started, loaded


class _counted(Iterator[dict[str, Any]]):
    """An iterator that counts what passes through it."""

    def __init__(self, items: Iterator[dict[str, Any]]) -> None:
        self._items = items
        self.count = 0

    def __next__(self) -> dict[str, Any]:
        item = next(self._items)
        self.count += 1
        return item


def pgstac_command(url: str, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    """Return the command and environment that serve the ``pgstac`` database on ``port`` with ``workers`` processes."""
    address = url.split("@", 1)[1].split("/", 1)[0]
    host, server_port = address.rsplit(":", 1)
    environment = {
        **os.environ,
        "PGUSER": "postgres",
        "PGPASSWORD": "unused-trust-authentication",
        "PGHOST": host,
        "PGPORT": server_port,
        "PGDATABASE": DATABASE,
        "ENABLE_TRANSACTIONS_EXTENSIONS": "false",
    }
    command = [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    return command, environment
