"""The whole graph with every step in a process of its own that shares no disk with the others.

The job runs with ``CUBE_ENV=prod`` as a deployment would: rasters, quicklooks, manifests and
raw scenes go through a real S3 API (moto's server on loopback), the catalog and Dagster's own
run and event storage to a real PostgreSQL server. Steps share no memory and no folder.

**No shared filesystem.** Every process that builds the job (:func:`scratch_job`, which
Dagster calls again in each step process) gets a data root of its own, ``scratch/step-{pid}``,
and first deletes the data roots of the processes that have exited. The executor runs one step
at a time (``max_concurrent: 1``: it starts a step only once the previous step's process has
been joined), so every step starts after the data roots of all earlier steps are gone: the raw
scenes ``raw_scene`` fetched, its copy of the simulator's archive, every staging folder. A step
that read anything from another step's disk would fail; the test checks from the processes' own
log that the deletions did happen before each step. Dagster's compute logs are switched off, so
the instance's folder is not written by the steps either.

**Executor.** Dagster's multiprocess executor, which gives each step its own process and scratch
folder, inputs only from S3 and PostgreSQL. Steps on other machines (Celery workers with their
own data roots) are tested in ``cube_assets_tests/scale_out/``.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import DagsterEventType, JobDefinition, execute_job, instance_for_test, reconstructable
from rasterio.windows import Window

from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.partitions import partition_key
from cube_assets.raster.cog import is_valid_cog
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file
from cube_assets_tests.fixtures_postgres import PostgresServer
from cube_assets_tests.fixtures_s3 import S3Server

pytestmark = pytest.mark.slow

PARTITION = partition_key("000000", "2024-01-01")
PREFIX = "cubes"
#: The folder under which each process gets its data root (set by the fixture, inherited by the step processes).
SCRATCH_VARIABLE = "CUBE_ASSETS_TEST_SCRATCH"
STAGES = {"raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scratch_job() -> JobDefinition:
    """The cube's job, with a data root private to this process.

    The data roots of exited processes are deleted first.
    """
    base = Path(os.environ[SCRATCH_VARIABLE])
    mine = base / f"step-{os.getpid()}"
    removed = []
    for other in sorted(base.glob("step-*")):
        pid = int(other.name.removeprefix("step-"))
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(other)
            removed.append(pid)
    mine.mkdir(exist_ok=True)
    with (base.parent / "scratch.log").open("a") as log:  # one short line per append: never interleaved
        log.write(json.dumps({"pid": os.getpid(), "removed": removed}) + "\n")
    defs = build_definitions(os.environ["CUBE_ASSETS_CONFIG"], mine, env="prod", executor="multiprocess")
    return defs.resolve_job_def(cube_job_name("small"))


@pytest.fixture(scope="module")
def result(tmp_path_factory, s3_server: S3Server, postgresql_server: PostgresServer):
    root = tmp_path_factory.mktemp("no_shared_fs")
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    (root / "scratch").mkdir()
    (root / "home").mkdir()
    bucket = s3_server.create_bucket("noshared")
    schema = "no_shared_fs_catalog"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    dagster_database = postgresql_server.create_database("dagster")
    environment = {
        **s3_server.environment(bucket, prefix=PREFIX),
        "CUBE_ASSETS_CATALOG_URL": postgresql_server.schema_url(schema),
        "CUBE_ASSETS_CONFIG": str(config),
        # Read only when the forkserver preloads cube_assets.definitions; nothing may be written there.
        "CUBE_ASSETS_DATA_ROOT": str(root / "unused-data-root"),
        SCRATCH_VARIABLE: str(root / "scratch"),
    }
    instance_config = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": postgresql_server.host,
                    "port": postgresql_server.port,
                    "db_name": dagster_database,
                    "username": postgresql_server.username,
                    "password": postgresql_server.password or "unused-with-trust-authentication",
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"},
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)  # the step processes inherit it
            with instance_for_test(temp_dir=str(root / "home"), overrides=instance_config) as instance:
                tags = scratch_job().get_tags_for_partition_key(str(PARTITION), selected_asset_keys=None)
                with execute_job(
                    reconstructable(scratch_job),
                    instance,
                    tags=tags,
                    run_config={
                        "execution": {
                            "config": {
                                "max_concurrent": 1,
                                # Step processes fork from a server that imported the project once
                                # (still no shared memory).
                                "start_method": {"forkserver": {"preload_modules": ["cube_assets.definitions"]}},
                            }
                        }
                    },
                ) as run:
                    events = run.all_events
                    success = run.success
                    run_storage = type(instance.run_storage).__name__
            log = [json.loads(line) for line in (root / "scratch.log").read_text().splitlines()]
            yield {
                "success": success,
                "events": events,
                "root": root,
                "log": log,
                "run_storage": run_storage,
                "store": s3_server.store(bucket, prefix=PREFIX),
                "s3": s3_server,
                "bucket": bucket,
                "catalog_url": postgresql_server.schema_url(schema),
            }
    finally:
        postgresql_server.admin(f'DROP SCHEMA "{schema}" CASCADE')
        postgresql_server.drop_database(dagster_database)


def _step_starts(result) -> list:
    return [e for e in result["events"] if e.event_type == DagsterEventType.STEP_START]


def test_every_step_succeeds_in_its_own_process(result):
    assert result["success"], [e.message for e in result["events"] if e.event_type == DagsterEventType.STEP_FAILURE]
    assert result["run_storage"] == "PostgresRunStorage"
    starts = _step_starts(result)
    assert {e.step_key.split("__", 1)[1] for e in starts} >= STAGES
    step_pids = {e.pid for e in starts}
    assert os.getpid() not in step_pids  # no step ran in the test's process
    assert len(step_pids) == len(starts)  # each in a process of its own


def test_each_step_started_after_every_earlier_steps_disk_was_deleted(result):
    starts = _step_starts(result)
    assert len(starts) >= 12  # six assets and six checks
    removed_so_far: set[int] = set()
    earlier: list[int] = []
    entries = {entry["pid"]: index for index, entry in enumerate(result["log"])}
    for event in sorted(starts, key=lambda e: entries[e.pid]):
        index = entries[event.pid]
        removed_so_far = {pid for entry in result["log"][: index + 1] for pid in entry["removed"]}
        assert set(earlier) <= removed_so_far, f"{event.step_key} started while an earlier step's data root existed"
        earlier.append(event.pid)
    scratch = result["root"] / "scratch"
    # Left: the test process's own data root (it ran no step and wrote nothing) and the last step's.
    assert sorted(p.name for p in scratch.iterdir()) == sorted({f"step-{os.getpid()}", f"step-{earlier[-1]}"})
    assert list((scratch / f"step-{os.getpid()}").iterdir()) == []
    assert not (result["root"] / "unused-data-root").exists()


def test_raw_scenes_and_previews_are_read_from_s3(result):
    keys = result["s3"].object_keys(result["bucket"])
    records = [k for k in keys if k.startswith(f"{PREFIX}/_raw/sentinel-2-l2a/_scenes/")]
    assert len(records) == 4  # two products on each of two dates
    record = json.loads(result["store"].read_bytes(records[0].removeprefix(f"{PREFIX}/")))
    assert record["root"].endswith(".SAFE")
    assert all(f"{PREFIX}/_raw/sentinel-2-l2a/{path}" in keys for path in record["files"])
    scene_cog = json.loads(result["store"].read_bytes(manifest_key("small", "scene_cog", "000000", "2024-01-01")))
    for scene in scene_cog["scenes"]:
        # The quicklook came from the product's preview, shared through S3 by surface_reflectance.
        assert scene["pvi"].startswith(f"s3://{result['bucket']}/{PREFIX}/small/scenes/{scene['scene_id']}/sr/")
        assert result["store"].exists(scene["quicklook_key"])


def test_composite_pixels_read_over_vsis3_come_from_the_merges_their_provenance_names(result):
    store = result["store"]
    merges = {
        m["date"]: m
        for m in json.loads(store.read_bytes(manifest_key("small", "tile_merge", "000000", "2024-01-01")))["merges"]
    }
    blend = json.loads(store.read_bytes(manifest_key("small", "period_blend", "000000", "2024-01-01")))
    lcf = blend["composites"]["LCF"]["bands"]
    window = Window(32, 32, 192, 192)
    with store.gdal_environment():
        assert is_valid_cog(store.gdal_path(lcf["B04"]))
        with rasterio.open(store.gdal_path(lcf["B04"])) as src:
            assert src.shape == (256, 256)
            composite = src.read(1, window=window)
        with rasterio.open(store.gdal_path(lcf["PROVENANCE"])) as src:
            provenance = src.read(1, window=window)
        assert set(np.unique(provenance)) <= {-1, 4, 9}
        for day, merge in merges.items():
            with rasterio.open(store.gdal_path(merge["bands"]["B04"])) as src:
                values = src.read(1, window=window)
            chosen = provenance == date.fromisoformat(day).timetuple().tm_yday
            assert chosen.sum() > 100
            np.testing.assert_array_equal(composite[chosen], values[chosen])


def test_the_catalog_on_postgresql_lists_the_partitions_images_as_s3_objects(result):
    engine = create_catalog_engine(result["catalog_url"])
    try:
        with session_factory(engine)() as session:
            images = search_images(session, tile="000000")
            files = [f for image in images for f in image.files]
            assert sorted(i.product_id for i in images) == [
                "small-AVG",
                "small-LCF",
                "small-MED",
                "small-merge",
                "small-merge",
            ]
    finally:
        engine.dispose()
    assert len(files) == 3 * 8 + 2 + 2 * 6  # composites (LCF adds SCL, PROVENANCE), merges
    assert all(f.href.startswith(f"s3://{result['bucket']}/{PREFIX}/small/") for f in files)
    assert all(result["store"].size(f.href) == f.size_bytes for f in files)
