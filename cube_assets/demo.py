"""The README's first command: materialize every partition of every cube on a real Dagster instance."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from dagster import DagsterInstance, Definitions

from cube_assets.assets.common import CATALOG_IO_MANAGER
from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.models import Image
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.partitions import cube_partitions
from cube_assets.redaction import redact_url
from cube_assets.storage.layout import manifest_key
from cube_assets.storage.raster_store import LocalRasterStore, RasterStore
from cube_assets.storage.s3_store import S3RasterStore

#: Where the map viewer answers once the service runs with its defaults.
VIEWER_ADDRESS = "http://127.0.0.1:8000/viewer"

# Every event is still in the instance's event log (see it with `make dev`); the terminal shows warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def demo_outputs(defs: Definitions) -> tuple[RasterStore, str]:
    """Return the raster store and the catalog URL the runs of ``defs`` write to, ``EnvVar``s resolved now.

    Raises:
        dagster.DagsterInvalidConfigError: when a variable a resource reads is not set.
    """
    store = defs.resources["store"].process_config_and_initialize().get_store()
    catalog_url = defs.resources[CATALOG_IO_MANAGER].process_config_and_initialize().url
    return store, catalog_url


def store_location(store: RasterStore) -> str:
    """Return where ``store`` keeps its files: ``s3://bucket/prefix`` or the local folder."""
    if isinstance(store, S3RasterStore):
        return f"s3://{store.bucket}/{store.prefix}".rstrip("/")
    if isinstance(store, LocalRasterStore):
        return str(store.root)
    return repr(store)


def run_demo(
    config_file: str | Path,
    data_root: str | Path,
    instance: DagsterInstance,
    echo: Callable[[str], None] = print,
    env: str = "local",
) -> dict[str, int]:
    """Run each cube's job for every partition on ``instance``, then print where the outputs are.

    ``env`` is ``CUBE_ENV``: ``local`` stores under ``data_root`` with a SQLite catalog, ``prod``
    in the S3 bucket and the PostgreSQL catalog of the ``CUBE_ASSETS_*`` variables (as
    :func:`cube_assets.definitions.build_definitions`); the outputs are read back from there.

    Returns:
        Counts: ``runs``, ``merges``, ``composites``, ``catalog_images``.

    Raises:
        RuntimeError: naming the cube and partition of a run that failed.
        InvalidCubeConfig: when ``env`` is unknown or a variable ``prod`` needs is not set.
    """
    data_root = Path(data_root).resolve()
    project = load_project_config(config_file)
    defs = build_definitions(config_file, data_root, env=env)
    store, catalog_url = demo_outputs(defs)
    echo(f"CUBE_ENV={env}: rasters in {store_location(store)}, catalog {redact_url(catalog_url)}")
    counts = {"runs": 0, "merges": 0, "composites": 0, "catalog_images": 0}
    for cube in project.cubes:
        job = defs.resolve_job_def(cube_job_name(cube.name))
        for key in cube_partitions(cube).get_partition_keys():
            started = time.monotonic()
            result = job.execute_in_process(
                instance=instance,
                partition_key=key,
                raise_on_error=False,
                run_config=QUIET_CONSOLE,
            )
            if not result.success:
                raise RuntimeError(
                    f"cube {cube.name}, partition {key}: run {result.run_id} failed; "
                    "see `dagster dev` or the logs above"
                )
            counts["runs"] += 1
            echo(f"{cube.name} [{key}] materialized in {time.monotonic() - started:.1f} s (run {result.run_id[:8]})")
        echo("")
        for tile in cube.tile_list:
            for period in cube.periods:
                merges = json.loads(store.read_bytes(manifest_key(cube.name, "tile_merge", tile.name, period.key)))[
                    "merges"
                ]
                blend = json.loads(store.read_bytes(manifest_key(cube.name, "period_blend", tile.name, period.key)))
                echo(f"tile {tile.name}, period {period.key}:")
                for merge in merges:
                    echo(
                        f"  merge {merge['date']}: efficacy {merge['efficacy']:5.1f} %, "
                        f"cloud {merge['cloud_ratio']:5.1f} %  "
                        f"{merge['bands'][cube.band_names[0]].rsplit('/', 1)[0]}/"
                    )
                counts["merges"] += len(merges)
                for function, composite in blend["composites"].items():
                    echo(
                        f"  {function} composite: "
                        f"{composite['bands'][cube.band_names[0]].rsplit('/', 1)[0]}/{composite['item']}_*.tif"
                    )
                    echo(f"  {function} quicklook: {composite['quicklook']}")
                    counts["composites"] += 1
    engine = create_catalog_engine(catalog_url)
    try:
        with session_factory(engine)() as session:
            rows = (
                session.query(Image.product_id, Image.id, Image.acquired, Image.cloud_fraction)
                .order_by(Image.product_id, Image.acquired, Image.id)
                .all()
            )
    finally:
        engine.dispose()
    counts["catalog_images"] = len(rows)
    echo(f"\ncatalog {redact_url(catalog_url)}: {len(rows)} images")
    for product_id, image_id, acquired, cloud in rows:
        if not product_id.startswith(project.cubes[0].collection):
            cloud_text = "   -  " if cloud is None else f"{cloud:6.3f}"
            echo(f"  {product_id:<22} {image_id:<40} {acquired:%Y-%m-%d}  cloud {cloud_text}")
    echo(f"  (+ {sum(1 for r in rows if r[0].startswith(project.cubes[0].collection))} source scenes)")
    echo(
        "\nsee the cubes on a map: start the service with `make serve` (or `cube-assets serve`), "
        f"then open {VIEWER_ADDRESS}"
    )
    return counts
