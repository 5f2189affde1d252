"""The catalog IO manager: ``catalog_item`` partitions are upserted into the catalog database."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema
from cube_assets.catalog.repository import search_images, upsert_bands, upsert_image, upsert_product
from cube_assets.partitions import split_partition_key
from cube_assets.redaction import redact_url
from cube_assets.steps.catalog_records import CatalogBatch

#: PostgreSQL SQLSTATEs after which the whole transaction can simply run again.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock_detected, serialization_failure
_ATTEMPTS = 5


class CatalogIOManager(ConfigurableIOManager):
    """Writes a partition's ``CatalogBatch`` in one transaction of idempotent upserts.

    ``url`` is a SQLAlchemy URL: ``sqlite:///…`` (the embedded default) or ``postgresql://…``.
    The schema is migrated to the latest revision before the first write.

    Concurrent writers (partitions sharing scenes and products) are safe: rows are written in
    key order (products, then images, each with its files), so transactions lock shared rows in
    the same order and wait for each other instead of deadlocking; a transaction PostgreSQL still
    aborts as a deadlock or serialization failure is retried whole.
    """

    url: str

    def handle_output(self, context: OutputContext, obj: CatalogBatch) -> None:
        """Upsert the batch's products, bands and images; record counts and ids as metadata."""
        engine = create_catalog_engine(self.url)
        try:
            upgrade_schema(engine)
            changed = _write_batch(engine, obj)
        finally:
            engine.dispose()
        context.add_output_metadata(
            {
                "catalog": redact_url(self.url),
                "image_count": len(obj.images),
                "images_changed": changed,
                "image_ids": [image.id for image in obj.images],
            }
        )

    def load_input(self, context: InputContext) -> list[dict[str, Any]]:
        """Return the partition's images (id, product, acquired, files) as stored in the catalog."""
        tile, period = split_partition_key(context.partition_key)
        engine = create_catalog_engine(self.url)
        try:
            with session_factory(engine)() as session:
                images = search_images(session, tile=tile, period_start=date.fromisoformat(period))
                return [
                    {
                        "id": i.id,
                        "product_id": i.product_id,
                        "acquired": i.acquired.isoformat(),
                        "files": {f.band: f.href for f in i.files},
                    }
                    for i in images
                ]
        finally:
            engine.dispose()


def _write_batch(engine: Engine, batch: CatalogBatch) -> int:
    """Upsert ``batch`` in one transaction, in key order; retry it whole after a deadlock. Return images changed."""
    attempt = 1
    while True:
        try:
            changed = 0
            with session_factory(engine).begin() as session:
                for product in sorted(batch.products, key=lambda p: p.id):
                    upsert_product(session, product)
                    upsert_bands(session, product.id, batch.bands.get(product.id, ()))
                for image in sorted(batch.images, key=lambda i: i.id):
                    changed += bool(upsert_image(session, image))
            return changed
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _RETRYABLE_SQLSTATES or attempt >= _ATTEMPTS:
                raise
            time.sleep(0.05 * 2**attempt)
            attempt += 1
