"""The whole graph with every step in its own process and the S3 backend.

Each step runs in a child process of Dagster's multiprocess executor, which rebuilds the
definitions from the environment (``CUBE_ENV=prod``, ``CUBE_ASSETS_EXECUTOR=multiprocess``) as a
deployment would: rasters, quicklooks and manifests go through a real S3 API (moto's server on
loopback), the catalog through a real PostgreSQL server; steps share no memory and hand each
other only manifests in S3.

Why not dagster-dask on a local Dask cluster, as planned: with the dask/distributed 2026.8
installed here, dagster-dask 0.29's executor fails on its first ``client.submit`` (dask's
argument parser iterates the ``DagsterRun`` it is given, a Dagster ``@record`` that forbids
iteration), before any step runs. The multiprocess executor gives the same isolation on one
machine.

Raw scenes are the one thing still on a local disk (the raw store under the data root), which the
step processes here share because they run on one machine; the test checks that nothing else is
written there (README, "Deployment").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import rasterio
from dagster import DagsterEventType, JobDefinition, execute_job, instance_for_test, reconstructable

from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.partitions import partition_key
from cube_assets.raster.cog import is_valid_cog
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file
from cube_assets_tests.fixtures_postgres import PostgresServer
from cube_assets_tests.fixtures_s3 import S3Server

pytestmark = pytest.mark.slow

PARTITION = partition_key("000000", "2024-01-01")


def small_cube_job() -> JobDefinition:
    """The cube's job, built from the environment: what each step process reconstructs."""
    defs = build_definitions(
        os.environ["CUBE_ASSETS_CONFIG"], os.environ["CUBE_ASSETS_DATA_ROOT"], env="prod",
        executor=os.environ["CUBE_ASSETS_EXECUTOR"],
    )
    return defs.resolve_job_def(cube_job_name("small"))


@pytest.fixture(scope="module")
def result(tmp_path_factory, s3_server: S3Server, postgresql_server: PostgresServer):
    root = tmp_path_factory.mktemp("dask_s3")
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    bucket = s3_server.create_bucket("dask")
    schema = "dask_s3_catalog"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    environment = {
        **s3_server.environment(bucket, prefix="cubes"),
        "CUBE_ASSETS_CATALOG_URL": postgresql_server.schema_url(schema),
        "CUBE_ASSETS_CONFIG": str(config), "CUBE_ASSETS_DATA_ROOT": str(root / "data"),
        "CUBE_ASSETS_EXECUTOR": "multiprocess",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)  # the step processes inherit it
        (root / "home").mkdir()
        with instance_for_test(temp_dir=str(root / "home")) as instance:
            tags = small_cube_job().get_tags_for_partition_key(str(PARTITION), selected_asset_keys=None)
            with execute_job(
                reconstructable(small_cube_job), instance, tags=tags,
                run_config={"execution": {"config": {
                    "max_concurrent": 2,
                    # Step processes fork from a server that imported the project once (still no shared memory).
                    "start_method": {"forkserver": {"preload_modules": ["cube_assets.definitions"]}},
                }}},
            ) as run:
                events = run.all_events
                success = run.success
        yield {
            "success": success, "events": events, "root": root / "data", "store": s3_server.store(bucket, prefix="cubes"),
            "catalog_url": postgresql_server.schema_url(schema), "s3": s3_server, "bucket": bucket,
        }


def test_every_step_succeeds_in_its_own_process(result):
    assert result["success"], [e.message for e in result["events"] if e.event_type == DagsterEventType.STEP_FAILURE]
    starts = [e for e in result["events"] if e.event_type == DagsterEventType.STEP_START]
    assert {e.step_key.split("__", 1)[1] for e in starts} >= {
        "raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item",
    }
    step_pids = {e.pid for e in starts}
    assert os.getpid() not in step_pids  # no step ran in the test's process
    assert len(step_pids) == len(starts)  # each in a process of its own


def test_rasters_and_manifests_are_in_s3_and_read_over_vsis3(result):
    store = result["store"]
    keys = result["s3"].object_keys(result["bucket"])
    assert "cubes/small/_manifests/period_blend/000000/2024-01-01.json" in keys
    composites = [k for k in keys if k.startswith("cubes/small/000000/2024-01-01/") and k.endswith("_LCF_B04.tif")]
    assert len(composites) == 1
    with store.gdal_environment():
        path = store.gdal_path(store.uri(composites[0].removeprefix("cubes/")))
        assert is_valid_cog(path)
        with rasterio.open(path) as dataset:
            assert dataset.read(1).shape == (256, 256)


def test_only_raw_scenes_and_staging_stay_on_the_local_disk(result):
    local = {p.relative_to(result["root"]).parts[0] for p in result["root"].rglob("*") if p.is_file()}
    assert local <= {"raw", "archive", ".staging"}, local  # archive: the simulator's own product folder


def test_the_catalog_on_postgresql_lists_the_partitions_images(result):
    engine = create_catalog_engine(result["catalog_url"])
    try:
        with session_factory(engine)() as session:
            images = search_images(session, tile="000000")
            assert sorted(i.product_id for i in images) == ["small-AVG", "small-LCF", "small-MED", "small-merge", "small-merge"]
    finally:
        engine.dispose()
