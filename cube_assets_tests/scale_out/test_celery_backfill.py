"""A backfill of 24 partitions on three Celery workers, through the daemon, with a worker killed and the broker stopped.

Real parts only (``cluster.py``): Debian's ``redis-server`` on loopback as broker and result
backend, moto's S3 server, PostgreSQL (the catalog, and Dagster's runs and events), three
``dagster-celery`` workers as separate processes, each under a user of its own with a private
data root (mode 0700: the others cannot read it), and ``dagster-daemon`` launching the runs of a
``dagster job backfill`` of 3 tiles × 8 periods (``cube.py``). Every run sends its steps to the
workers (``CUBE_ASSETS_EXECUTOR=celery``).

While the backfill runs, two faults, one after the other:

1. **A worker dies in a merge.** Worker 0 imports ``merge_pause`` (test instrumentation, see
   its docstring): its first merge step publishes the first date's merge and stops; the test
   then ``kill -9``'s the worker with all its processes. The task was never acknowledged
   (``task_acks_late``), so the broker gives it to another worker after the visibility timeout
   (45 s here); the step runs again there and its run goes on.
2. **The broker goes away for 10 s.** ``redis-server`` is stopped (SIGTERM; its append-only
   file keeps the queues) and started again on the same port 10 s later. Runs wait for it
   (publishing and reading results retry for about a minute), or fail and are retried by the
   daemon (``run_retries``).

Meanwhile a forked process runs the same 24 partitions in process on a local data root: the
reference the published rasters must equal byte for byte.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import rasterio
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.definitions import build_definitions
from cube_assets_tests.fixtures_postgres import PostgresServer
from cube_assets_tests.fixtures_s3 import S3Server
from cube_assets_tests.scale_out.cluster import (
    Worker,
    backfill_settled,
    celery_cluster,
    celery_hosts,
    latest_run_per_partition,
    wait_for,
)
from cube_assets_tests.scale_out.cube import JOB, PARTITION_KEYS, PERIODS, TILES
from cube_assets_tests.scale_out.merge_pause import PAUSE_VARIABLE

pytestmark = pytest.mark.slow

PREFIX = "cubes"
WORKERS = 3
VISIBILITY_TIMEOUT_S = 45
BROKER_OUTAGE_S = 10
MAX_RUN_RETRIES = 3
#: Generous: the machine is shared and has two cores.
BACKFILL_TIMEOUT_S = 2400
#: The in-process reference of the same partitions, run beside the backfill, has this long after it.
REFERENCE_TIMEOUT_S = 600
PUBLISHED_SUFFIXES = (".tif", ".png")


def _reference_run(config: str, root: str) -> None:
    """Every partition of the job in process, on a local data root (runs in a spawned process, logging to a file)."""
    Path(root).mkdir()
    with open(Path(root).parent / "reference.log", "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    defs = build_definitions(config, root, env="local", executor="in_process")
    job = defs.resolve_job_def(JOB)
    with DagsterInstance.ephemeral() as instance:
        for key in PARTITION_KEYS:
            job.execute_in_process(partition_key=key, instance=instance)


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or half written
        return None


def _merge_started_in(instance: DagsterInstance, backfill_id: str, pid: int) -> tuple[str, str] | None:
    """(run id, step key) of the merge step that started in process ``pid``, once its event is in the log.

    A worker's process runs many steps one after the other, but the paused worker runs one merge.
    """
    for run in latest_run_per_partition(instance, backfill_id).values():
        for record in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START):
            event = record.dagster_event
            if event is not None and event.pid == pid and (record.step_key or "").endswith("__tile_merge"):
                return run.run_id, record.step_key
    return None


def _step_succeeded(instance: DagsterInstance, run_id: str, step_key: str) -> bool:
    return any(r.step_key == step_key for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS))


def _pause_worker_0_in_its_first_merge(worker: Worker) -> None:
    if worker.index == 0:
        worker.environment[PAUSE_VARIABLE] = str(worker.folder / "paused.json")
        worker.includes = ("cube_assets_tests.scale_out.merge_pause",)


@pytest.fixture(scope="module")
def cluster(s3_server: S3Server, postgresql_server: PostgresServer):
    reference = None
    with celery_cluster(
        s3_server,
        postgresql_server,
        WORKERS,
        visibility_timeout_s=VISIBILITY_TIMEOUT_S,
        max_run_retries=MAX_RUN_RETRIES,
        configure_worker=_pause_worker_0_in_its_first_merge,
    ) as running:
        try:
            instance, workers, base = running.instance, running.workers, running.base
            reference_root = base / "reference"
            # spawned, not forked: this process runs threads (clients of the daemon, S3, PostgreSQL), and a
            # fork can inherit one of their locks held, deadlocking the child.
            spawn = multiprocessing.get_context("spawn")
            reference = spawn.Process(target=_reference_run, args=(str(running.config), str(reference_root)))
            reference.start()
            started = time.monotonic()
            backfill_id = running.deployment.backfill(JOB)

            # Fault 1: worker 0 stops in its first merge; kill -9 it there.
            marker = workers[0].storage / "paused.json"  # the file worker 0 writes, seen from outside its namespace
            paused = wait_for("worker 0 to stop in a merge", lambda: _read_marker(marker), BACKFILL_TIMEOUT_S, 0.5)
            killed_run_id, killed_step = wait_for(
                "the paused merge's STEP_START", lambda: _merge_started_in(instance, backfill_id, paused["pid"]), 120
            )
            workers[0].kill()
            wait_for(
                f"{killed_step} to run again on another worker",
                lambda: _step_succeeded(instance, killed_run_id, killed_step),
                BACKFILL_TIMEOUT_S,
                2,
            )

            # Fault 2: the broker goes away for 10 s.
            running.redis.stop()
            time.sleep(BROKER_OUTAGE_S)  # the outage itself, not a wait for a result
            running.redis.start()

            latest = wait_for(
                "every partition of the backfill to finish",
                lambda: backfill_settled(instance, backfill_id, len(PARTITION_KEYS), MAX_RUN_RETRIES),
                BACKFILL_TIMEOUT_S,
                3,
            )
            elapsed = time.monotonic() - started
            reference.join(timeout=REFERENCE_TIMEOUT_S)
            assert reference.exitcode == 0, (
                f"the in-process reference run ended with {reference.exitcode} (see reference.log)"
            )
            yield {
                "instance": instance,
                "backfill_id": backfill_id,
                "latest": latest,
                "elapsed_s": elapsed,
                "workers": workers,
                "base": base,
                "paused": paused,
                "killed_run_id": killed_run_id,
                "killed_step": killed_step,
                "store": s3_server.store(running.bucket, prefix=PREFIX),
                "s3": s3_server,
                "bucket": running.bucket,
                "reference_root": reference_root,
                "reference_exitcode": reference.exitcode,
                "catalog_url": running.catalog_url,
                "daemon_log": running.deployment.daemon_log,
            }
        finally:
            if reference is not None and reference.is_alive():
                reference.kill()


def _all_runs(cluster) -> list:
    from dagster import RunsFilter

    return cluster["instance"].get_runs(filters=RunsFilter(tags={"dagster/backfill": cluster["backfill_id"]}))


def _hosts(cluster) -> list[tuple[str, str]]:
    instance = cluster["instance"]
    return [host for run in _all_runs(cluster) for host in celery_hosts(instance.all_logs(run.run_id))]


def test_every_partition_of_the_backfill_succeeds(cluster):
    latest = cluster["latest"]
    assert sorted(latest) == sorted(PARTITION_KEYS)
    failed = {key: run.run_id for key, run in latest.items() if run.status != DagsterRunStatus.SUCCESS}
    assert not failed, cluster["daemon_log"]()
    instance = cluster["instance"]
    from dagster import AssetKey

    for stage in ("tile_merge", "period_blend", "catalog_item"):
        assert instance.get_materialized_partitions(AssetKey(["scale", stage])) == set(PARTITION_KEYS)


def test_steps_ran_on_every_worker_and_only_there(cluster):
    hosts = _hosts(cluster)
    by_worker = Counter(host.split("@", 1)[0] for _, host in hosts)
    assert set(by_worker) == {f"worker{index}" for index in range(WORKERS)}, by_worker
    # Every step of every successful run went through a worker: 6 assets and 6 checks per partition.
    assert len({(key, host) for key, host in hosts}) >= 12
    assert sum(by_worker.values()) >= 12 * len(PARTITION_KEYS)


def test_no_worker_sees_another_workers_data_root(cluster):
    workers, base = cluster["workers"], cluster["base"]
    for worker in workers[1:]:  # worker 0 was killed
        assert worker.listing_inside(base / "roots") == []
        for other in workers:
            if other is not worker:
                assert worker.listing_inside(other.folder) == []
        assert "data" in worker.listing_inside(worker.folder)
    # The surviving workers simulated the archive in their own data roots: none could use another's copy.
    # (Worker 0 may have been given a merge before any raw scene step, and it was killed in that merge.)
    for worker in workers[1:]:
        assert (worker.storage / "data" / "archive").is_dir(), worker.name


def test_the_merge_killed_with_its_worker_ran_again_on_another_worker(cluster):
    instance = cluster["instance"]
    run_id, step = cluster["killed_run_id"], cluster["killed_step"]
    assert step.endswith("tile_merge")
    hosts = [host for key, host in celery_hosts(instance.all_logs(run_id)) if key == step]
    assert len(hosts) >= 2 and hosts[0].startswith("worker0@"), hosts
    assert not hosts[-1].startswith("worker0@")
    starts = [r for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START) if r.step_key == step]
    successes = [r for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS) if r.step_key == step]
    assert starts[0].dagster_event.pid == cluster["paused"]["pid"]
    assert len(successes) >= 1 and all(r.dagster_event.pid != cluster["paused"]["pid"] for r in successes)


def test_runs_hit_by_the_broker_outage_resumed_or_were_retried(cluster):
    runs = _all_runs(cluster)
    failed = [run for run in runs if run.status == DagsterRunStatus.FAILURE]
    instance = cluster["instance"]
    for run in failed:
        retries = [r for r in runs if r.tags.get("dagster/parent_run_id") == run.run_id]
        assert retries, f"run {run.run_id} failed and was not retried"
        # It failed clearly: its failure names the broker's connection.
        messages = " ".join(
            str(r.dagster_event.message) + str(r.dagster_event.event_specific_data)
            for r in instance.all_logs(run.run_id)
            if r.dagster_event is not None and r.dagster_event.is_failure
        )
        assert "onnect" in messages or "redis" in messages.lower(), messages[-2000:]
    partitions_of_failed = {run.tags["dagster/partition"] for run in failed}
    assert all(cluster["latest"][key].status == DagsterRunStatus.SUCCESS for key in partitions_of_failed)


def _published(keys: list[str]) -> list[str]:
    """The cube's rasters and quicklooks among ``keys`` (not its manifests, not the raw scenes or the archive)."""
    return sorted(
        k for k in keys if k.startswith("scale/") and k.endswith(PUBLISHED_SUFFIXES) and "/_manifests/" not in k
    )


def test_published_rasters_are_byte_identical_to_an_in_process_run(cluster):
    assert cluster["reference_exitcode"] == 0
    store, root = cluster["store"], cluster["reference_root"]
    s3_keys = _published([k.removeprefix(f"{PREFIX}/") for k in cluster["s3"].object_keys(cluster["bucket"])])
    local_keys = _published([str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()])
    assert s3_keys == local_keys
    merges = [k for k in s3_keys if "_MED_" not in k and "_LCF_" not in k and k.endswith(".tif")]
    assert len(merges) >= len(PARTITION_KEYS) * 5  # at least the four bands and the quality band of each merge
    different = [key for key in s3_keys if store.read_bytes(key) != (root / key).read_bytes()]
    assert different == []


def test_no_partial_object_under_a_final_key(cluster):
    store = cluster["store"]
    keys = [k.removeprefix(f"{PREFIX}/") for k in cluster["s3"].object_keys(cluster["bucket"])]
    assert cluster["s3"].incomplete_uploads(cluster["bucket"]) == []
    tifs = [k for k in keys if k.endswith(".tif") and not k.startswith("_raw/")]
    assert tifs
    with store.gdal_environment():
        for key in tifs:
            with rasterio.open(store.gdal_path(f"s3://{cluster['bucket']}/{PREFIX}/{key}")) as src:
                src.read()  # every block decoded: a truncated file fails here
    manifests = [k for k in keys if "/_manifests/" in k]
    # One per partition for each stage whose output goes through the manifest IO manager (not the catalog's).
    assert len(manifests) == 5 * len(PARTITION_KEYS)
    assert all(json.loads(store.read_bytes(k)) for k in manifests)


def test_the_catalog_holds_each_image_exactly_once(cluster):
    engine = create_catalog_engine(cluster["catalog_url"])
    try:
        with session_factory(engine)() as session:
            images = [image for tile in TILES for image in search_images(session, tile=tile)]
            hrefs = [f.href for image in images for f in image.files]
    finally:
        engine.dispose()
    identities = Counter((image.product_id, image.tile, image.acquired) for image in images)
    assert max(identities.values()) == 1
    products = Counter(image.product_id for image in images)
    assert products["scale-LCF"] == products["scale-MED"] == len(PARTITION_KEYS)
    assert products["scale-merge"] == len(TILES) * len(PERIODS)  # one acquisition per period
    assert len(hrefs) == len(set(hrefs))
    assert all(cluster["store"].size(href) > 0 for href in hrefs[:20])
