"""Many processes writing the embedded SQLite catalog at once, on a machine whose cores are busy.

The multiprocess executor writes the catalog from parallel steps, so this is the default path:
every writer must wait for the lock, none may fail with "database is locked".
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import func, select

from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema
from cube_assets.catalog.models import Image, ImageFile, Product
from cube_assets.catalog.repository import (
    ImageFileRecord,
    ImageRecord,
    ProductRecord,
    search_images,
    upsert_image,
    upsert_product,
)
from cube_assets_tests.processes import CONTEXT, run_in_processes

WRITERS = 8
UPSERTS_PER_WRITER = 200
#: Writer k upserts images k*STRIDE .. k*STRIDE+UPSERTS_PER_WRITER-1, so neighbours share half their images.
STRIDE = UPSERTS_PER_WRITER // 2
PRODUCT = "cube:S2-16D"
UTC = dt.UTC


def _product() -> ProductRecord:
    return ProductRecord(id=PRODUCT, name="Sentinel-2 16-day cube", start_datetime=dt.datetime(2024, 1, 1, tzinfo=UTC))


def _image(n: int, writer: int) -> ImageRecord:
    image_id = f"S2-16D:{n:04d}:2024-01-01"
    return ImageRecord(
        id=image_id,
        product_id=PRODUCT,
        name=image_id,
        acquired=dt.datetime(2024, 1, 1, tzinfo=UTC),
        geometry=shapely.geometry.mapping(shapely.geometry.box(-45, -10, -44, -9)),
        crs="EPSG:32723",
        tile=f"{n:04d}",
        period_start=dt.date(2024, 1, 1),
        # Which writer wrote last differs from run to run; the files below do not.
        properties={"written_by": writer},
        files=(
            ImageFileRecord("B04", f"/cube/{n:04d}/B04.tif", n),
            ImageFileRecord("B08", f"/cube/{n:04d}/B08.tif", n),
        ),
    )


def _writer(writer: int, url: str) -> None:
    """Open a fresh engine, then upsert this writer's images one transaction each, reading before writing."""
    upgrade_schema(url)
    engine = create_catalog_engine(url)
    sessions = session_factory(engine)
    for n in range(writer * STRIDE, writer * STRIDE + UPSERTS_PER_WRITER):
        with sessions.begin() as session:
            # A read before the write: the case where a deferred transaction's snapshot goes stale.
            search_images(session, tile=f"{n:04d}")
            upsert_product(session, _product())
            upsert_image(session, _image(n, writer))
    engine.dispose()


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Keep every core busy with a CPU burner process while the test runs."""
    stop = CONTEXT.Event()
    burners = [CONTEXT.Process(target=_burn, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for burner in burners:
        burner.start()
    try:
        yield
    finally:
        stop.set()
        for burner in burners:
            burner.join(timeout=10)
            if burner.is_alive():
                burner.kill()


def test_eight_processes_upserting_a_new_sqlite_catalog_under_load_never_fail(tmp_path: Path, busy_cores: None) -> None:
    database = tmp_path / "catalog.sqlite"
    url = f"sqlite:///{database}"
    # The file does not exist yet: the writers also race to create it and switch it to WAL.
    assert not database.exists()

    outcomes = run_in_processes(_writer, WRITERS, url)

    assert outcomes == {k: None for k in range(WRITERS)}, "\n".join(filter(None, outcomes.values()))
    expected = [f"S2-16D:{n:04d}:2024-01-01" for n in range((WRITERS - 1) * STRIDE + UPSERTS_PER_WRITER)]
    engine = create_catalog_engine(url)
    try:
        with session_factory(engine)() as session:
            assert session.scalars(select(Image.id).order_by(Image.id)).all() == expected
            assert session.scalar(select(func.count()).select_from(ImageFile)) == 2 * len(expected)
    finally:
        engine.dispose()
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writing_session_waits_for_a_held_write_lock_instead_of_failing(tmp_path: Path) -> None:
    database = tmp_path / "catalog.sqlite"
    url = f"sqlite:///{database}"
    upgrade_schema(url)
    engine = create_catalog_engine(url)
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    released_at: list[float] = []

    def release_after_a_while() -> None:
        time.sleep(0.5)
        released_at.append(time.monotonic())
        holder.execute("COMMIT")

    try:
        holder.execute("BEGIN IMMEDIATE")
        thread = threading.Thread(target=release_after_a_while)
        thread.start()
        with session_factory(engine).begin() as session:
            upsert_product(session, _product())
        written_at = time.monotonic()
        thread.join()
        # The writer queued behind the lock and wrote once it was released.
        assert released_at and written_at >= released_at[0]
        with session_factory(engine)() as session:
            assert session.scalars(select(Product.id)).all() == [PRODUCT]
    finally:
        holder.close()
        engine.dispose()
