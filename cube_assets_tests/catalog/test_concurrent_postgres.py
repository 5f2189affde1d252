"""Eight processes publish overlapping catalog items through the catalog IO manager at once, on PostgreSQL.

Each process writes the same products, a shuffled subset of shared scene images (as a scene
over several tiles is catalogued by every tile's partition) and images of its own. Every writer
tags its version of an image (the image's ``properties`` and its files' hrefs), so the test can
tell whether each image ended up as one writer's complete version or as a mix of several.
The processes start from an empty schema, so they also race to migrate it.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
from collections import Counter
from typing import Any

import pytest
from dagster import AssetKey, build_output_context
from sqlalchemy import func, select

from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.models import Image, ImageFile, Product
from cube_assets.catalog.repository import BandRecord, ImageFileRecord, ImageRecord, ProductRecord
from cube_assets.io_managers.catalog import CatalogIOManager
from cube_assets.steps.catalog_records import CatalogBatch

WRITERS = 8
SHARED_SCENES = [f"S2A_SCENE_{n:02d}" for n in range(12)]
SCENES_PER_WRITER = 8
OWN_IMAGES = 3
FOOTPRINT = {"type": "Polygon", "coordinates": [[[-48, -16], [-47.5, -16], [-47.5, -15.5], [-48, -15.5], [-48, -16]]]}


def _shared_scenes_of(writer: int) -> list[str]:
    """The shared scenes ``writer`` publishes, in the (shuffled) order it publishes them."""
    return random.Random(writer).sample(SHARED_SCENES, SCENES_PER_WRITER)


def _bands_of(writer: int, image_id: str) -> list[str]:
    """Writers disagree on how many files an image has (3 to 5), so a mix of versions would show."""
    return ["B02", "B03", "B04", "B08", "SCL"][: 3 + (writer + len(image_id)) % 3]


def _image(writer: int, image_id: str, product_id: str) -> ImageRecord:
    return ImageRecord(
        id=image_id,
        product_id=product_id,
        name=image_id,
        acquired=dt.datetime(2024, 1, 4, 13, 12, tzinfo=dt.UTC),
        geometry=FOOTPRINT,
        crs="EPSG:32723",
        tile=None if product_id == "sentinel-2-l2a" else f"{writer:06d}",
        properties={"writer": writer},
        files=[
            ImageFileRecord(band=b, href=f"s3://cubes/{image_id}/{b}.tif#writer={writer}", size_bytes=1000 + writer)
            for b in _bands_of(writer, image_id)
        ],
    )


def _batch(writer: int) -> CatalogBatch:
    products = (
        ProductRecord(id="small-LCF", name="small LCF", tags=("cube", "LCF")),
        ProductRecord(id="small-merge", name="small merges", tags=("cube", "merge")),
        ProductRecord(id="sentinel-2-l2a", name="sentinel-2-l2a", tags=("source",)),
    )
    bands = {
        "small-LCF": tuple(
            BandRecord(name=b, type="spectral", data_type="Int16", resolution=10, band_index=i)
            for i, b in enumerate(["B02", "B03", "B04", "B08"])
        )
    }
    own = [_image(writer, f"small_{writer:06d}_2024010{n}", "small-merge") for n in range(OWN_IMAGES)]
    shared = [_image(writer, scene, "sentinel-2-l2a") for scene in _shared_scenes_of(writer)]
    return CatalogBatch(products=products, bands=bands, images=tuple(own + shared))


def _publish(url: str, writer: int, start: Any) -> None:
    """One writer process: wait for the others, then publish its batch through the IO manager."""
    batch = _batch(writer)
    start.wait(timeout=60)
    context = build_output_context(asset_key=AssetKey(["small", "catalog_item"]))
    CatalogIOManager(url=url).handle_output(context, batch)


def _run_writers(url: str, writers: list[int]) -> list[int | None]:
    # fork: the children start in well under a second (spawn would re-import dagster in each).
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(len(writers))
    processes = [ctx.Process(target=_publish, args=(url, writer, start)) for writer in writers]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    for process in processes:
        if process.is_alive():
            process.kill()
    return [process.exitcode for process in processes]


def _stored(url: str) -> tuple[dict[str, Image], list[ImageFile], int]:
    engine = create_catalog_engine(url)
    try:
        with session_factory(engine)() as session:
            images = {image.id: image for image in session.scalars(select(Image))}
            files = list(session.scalars(select(ImageFile)))
            products = session.scalar(select(func.count()).select_from(Product))
    finally:
        engine.dispose()
    return images, files, products


@pytest.fixture
def empty_postgresql_catalog(postgresql_schema_url: str) -> str:
    """A fresh PostgreSQL schema, not yet migrated: the writers migrate it themselves."""
    return postgresql_schema_url


def test_eight_writers_at_once_leave_every_item_exactly_once_and_whole(empty_postgresql_catalog: str) -> None:
    url = empty_postgresql_catalog

    exit_codes = _run_writers(url, list(range(WRITERS)))

    assert exit_codes == [0] * WRITERS, "every writer commits (no deadlock, no duplicate-key error)"
    images, files, products = _stored(url)
    expected_shared = {scene for writer in range(WRITERS) for scene in _shared_scenes_of(writer)}
    expected_own = {f"small_{w:06d}_2024010{n}" for w in range(WRITERS) for n in range(OWN_IMAGES)}
    assert set(images) == expected_shared | expected_own
    assert products == 3
    files_by_image: dict[str, list[ImageFile]] = {}
    for file in files:
        files_by_image.setdefault(file.image_id, []).append(file)
    assert Counter((f.image_id, f.band) for f in files).most_common(1)[0][1] == 1
    for image_id, image in images.items():
        writer = image.properties["writer"]
        # One writer's complete version: its row, its files, all of them and nothing else.
        assert image_id in expected_own or image_id in _shared_scenes_of(writer)
        stored_files = sorted((f.band, f.href) for f in files_by_image[image_id])
        assert stored_files == sorted(
            (b, f"s3://cubes/{image_id}/{b}.tif#writer={writer}") for b in _bands_of(writer, image_id)
        )


def test_republishing_a_partition_updates_its_rows_without_duplicating_them(empty_postgresql_catalog: str) -> None:
    url = empty_postgresql_catalog
    assert _run_writers(url, [0, 1]) == [0, 0]
    before, files_before, _ = _stored(url)

    assert _run_writers(url, [1]) == [0]
    assert _run_writers(url, [1]) == [0]

    after, files_after, products = _stored(url)
    assert set(after) == set(before)
    assert len(files_after) == sum(len(_bands_of(after[i].properties["writer"], i)) for i in after)
    assert all(after[scene].properties["writer"] == 1 for scene in _shared_scenes_of(1))
    assert products == 3
