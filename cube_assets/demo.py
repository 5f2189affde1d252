"""The README's first command: materialize every partition of every cube on a real Dagster instance."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from dagster import DagsterInstance

from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory
from cube_assets.catalog.models import Image
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.partitions import cube_partitions
from cube_assets.storage.layout import manifest_key
from cube_assets.storage.raster_store import LocalRasterStore

#: Where the map viewer answers once the service runs with its defaults.
VIEWER_ADDRESS = "http://127.0.0.1:8000/viewer"

# Every event is still in the instance's event log (see it with `make dev`); the terminal shows warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(
    config_file: str | Path, data_root: str | Path, instance: DagsterInstance, echo: Callable[[str], None] = print
) -> dict[str, int]:
    """Run each cube's job for every partition on ``instance``, then print where the outputs are.

    Returns:
        Counts: ``runs``, ``merges``, ``composites``, ``catalog_images``.

    Raises:
        RuntimeError: naming the cube and partition of a run that failed.
    """
    data_root = Path(data_root).resolve()
    project = load_project_config(config_file)
    defs = build_definitions(config_file, data_root)
    store = LocalRasterStore(data_root)
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
                        f"{Path(merge['bands'][cube.band_names[0]]).parent}/"
                    )
                counts["merges"] += len(merges)
                for function, composite in blend["composites"].items():
                    echo(
                        f"  {function} composite: "
                        f"{Path(composite['bands'][cube.band_names[0]]).parent}/{composite['item']}_*.tif"
                    )
                    echo(f"  {function} quicklook: {composite['quicklook']}")
                    counts["composites"] += 1
    engine = create_catalog_engine(default_catalog_url(data_root))
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
    echo(f"\ncatalog {default_catalog_url(data_root)}: {len(rows)} images")
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
