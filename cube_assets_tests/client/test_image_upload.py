"""ImageUpload: uploads recorded in the catalog and run in the background thread, on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cube_assets.client import (
    Catalog,
    ConflictError,
    GeoContext,
    Image,
    ImageUpload,
    ImageUploadStatus,
    Product,
    SpectralBand,
)
from cube_assets.client.image_upload import upload_executor
from cube_assets.errors import CatalogError
from cube_assets.storage.raster_store import LocalRasterStore

GRID = GeoContext((500000, 9000000, 500080, 9000080), "EPSG:32723", resolution=10)


@pytest.fixture
def catalog(catalog_url: str, tmp_path: Path) -> Iterator[Catalog]:
    """A catalog with product ``p`` of one UInt16 band, uploading into a local store."""
    with Catalog(catalog_url, upload_store=LocalRasterStore(tmp_path / "store")) as opened:
        product = opened.products(id="p", name="p").save()
        SpectralBand(
            catalog=opened, product=product, name="red", data_type="UInt16", resolution=10, band_index=0
        ).save()
        yield opened


@pytest.fixture
def blocked_worker() -> Iterator[threading.Event]:
    """The upload thread held busy until the event is set (so new uploads stay pending)."""
    release = threading.Event()
    busy = upload_executor().submit(release.wait, 60)
    yield release
    release.set()
    busy.result(timeout=60)


def _image(catalog: Catalog, name: str = "one") -> Image:
    return catalog.images(product_id="p", name=name, acquired="2024-01-01")


def test_an_upload_is_pending_until_the_worker_runs_it(catalog: Catalog, blocked_worker: threading.Event) -> None:
    upload = _image(catalog).upload_ndarray(np.ones((8, 8), dtype=np.uint16), raster_meta=GRID)

    assert upload.status == ImageUploadStatus.PENDING
    with pytest.raises(concurrent.futures.TimeoutError, match="still pending"):
        upload.wait_for_completion(timeout=0.2)
    blocked_worker.set()
    upload.wait_for_completion(timeout=60)
    assert upload.status == ImageUploadStatus.SUCCESS
    assert [event["event_type"] for event in upload.events] == ["queued", "running", "complete"]
    assert upload.image.state == "saved" and upload.image.files["red"].size_bytes > 0


def test_a_pending_upload_can_be_canceled_and_never_runs(catalog: Catalog, blocked_worker: threading.Event) -> None:
    image = _image(catalog)
    upload = image.upload_ndarray(np.ones((8, 8), dtype=np.uint16), raster_meta=GRID)

    upload.cancel()
    blocked_worker.set()
    upload.wait_for_completion(timeout=60)
    upload_executor().submit(lambda: None).result(timeout=60)  # the worker has seen the canceled upload

    assert ImageUpload.get(upload.id, catalog=catalog).status == ImageUploadStatus.CANCELED  # type: ignore[union-attr]  # recorded above
    assert not Image.exists("p:one", catalog=catalog)
    with pytest.raises(ConflictError, match="canceled"):
        upload.cancel()


def test_an_existing_image_is_replaced_only_with_overwrite(catalog: Catalog) -> None:
    first = _image(catalog).upload_ndarray(np.ones((8, 8), dtype=np.uint16), raster_meta=GRID)
    first.wait_for_completion(timeout=60)

    with pytest.raises(CatalogError, match="overwrite=True"):
        _image(catalog).upload_ndarray(np.ones((8, 8), dtype=np.uint16), raster_meta=GRID)
    second = _image(catalog).upload_ndarray(np.full((8, 8), 7, dtype=np.uint16), raster_meta=GRID, overwrite=True)
    second.wait_for_completion(timeout=60)

    assert second.status == ImageUploadStatus.SUCCESS
    assert int(Image.get("p:one", catalog=catalog).ndarray("red").max()) == 7  # type: ignore[union-attr]  # uploaded above
    assert sorted(u.id for u in Image.get("p:one", catalog=catalog).image_uploads()) == sorted([first.id, second.id])  # type: ignore[union-attr]  # uploaded above


def test_a_failed_upload_records_its_error(catalog: Catalog) -> None:
    upload = _image(catalog).upload_ndarray(np.ones((8, 8), dtype=np.uint16))  # no grid at all

    upload.wait_for_completion(timeout=60)

    assert upload.status == ImageUploadStatus.FAILURE
    assert upload.errors[0]["error_type"] and "p:one" in upload.error  # type: ignore[operator]  # failed: has an error
    assert Product.get("p", catalog=catalog) is not None and not Image.exists("p:one", catalog=catalog)


def test_upload_without_a_store_is_refused(catalog_url: str) -> None:
    with Catalog(catalog_url) as bare:
        bare.products(id="q", name="q").save()
        with pytest.raises(CatalogError, match="no raster store"):
            bare.images(product_id="q", name="x", acquired="2024-01-01").upload_ndarray(np.ones((2, 2)))
