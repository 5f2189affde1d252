"""The command line and the daemon, for real: a two-year backfill, one partition, and the blend schedule.

One module-scoped deployment on a temporary ``DAGSTER_HOME`` (the repository's embedded
``dagster.yaml``: SQLite storage, queued runs, at most 2 at a time) and the repository's
``workspace.yaml``, with a small cube file from ``CUBE_ASSETS_CONFIG`` whose provider is a local
archive of simulated Sentinel-2 products:

* ``bf``: two 128 px tiles, two and a half years in 6-month periods (10 partitions);
* ``sched``: one of those tiles, one 16-day period.

In order: ``dagster asset materialize`` builds ``sched`` up to the merge for its one
partition; ``dagster-daemon run`` and ``dagster-webserver`` start as subprocesses;
``dagster schedule start`` starts the blend schedule of ``sched`` (ticking every minute here,
``CUBE_ASSETS_BLEND_CRON``); ``dagster job backfill`` submits the 10 partitions of ``bf``. The
tests then wait for the daemon to run everything and query the webserver's GraphQL API (what
the UI's backfills page shows). Runs execute their steps in process
(``CUBE_ASSETS_EXECUTOR=in_process``) to keep the test short on two cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from cube_assets.formats.simulator import SimulatedScene, write_simulated_product
from cube_assets.partitions import partition_key
from cube_assets_tests.conftest import REPO_ROOT, SMALL_CUBE

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
GRID = {**SMALL_CUBE["grid"], "tile_size": [128, 128]}
BACKFILL_CUBE = {
    **SMALL_CUBE,
    "name": "bf",
    "providers": ["archive"],
    "grid": GRID,
    "tiles": ["000000", "001000"],
    "composites": ["LCF", "MED"],
    "start_date": "2023-01-01",
    "end_date": "2025-06-30",
    "temporal": {"step": "6M"},
}
SCHEDULE_CUBE = {
    **BACKFILL_CUBE,
    "name": "sched",
    "tiles": ["000000"],
    "start_date": "2024-01-01",
    "end_date": "2024-01-16",
    "temporal": {"step": "16D"},
}
PERIODS = ["2023-01-01", "2023-07-01", "2024-01-01", "2024-07-01", "2025-01-01"]
# One acquisition in each 6-month period of bf (on the 10th of its first month), and a second one in sched's period.
ACQUISITIONS = [f"{period[:8]}10T13:12:29+00:00" for period in PERIODS] + ["2024-01-04T13:12:29+00:00"]
BACKFILL_KEYS = [f"{period}|{tile}" for period in PERIODS for tile in ("000000", "001000")]
SCHEDULE_KEY = "2024-01-01|000000"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
WAIT_S = 420


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _wait_for(description: str, condition, timeout: float = WAIT_S, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {description}")


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    archive = data / "archive"
    for index, when in enumerate(ACQUISITIONS):
        write_simulated_product(
            archive,
            SimulatedScene(
                tile_id="T23LKC",
                epsg=32723,
                ulx=200000,
                uly=8250000,
                size_px=300,
                sensing_time=datetime.fromisoformat(when),
                seed=index,
                cloud_fraction=0.3,
                swath_edge=False,
            ),
        )
    config = root / "cubes.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": [{"name": "archive", "driver": "local", "options": {"root": "archive"}}],
                "cubes": [BACKFILL_CUBE, SCHEDULE_CUBE],
            },
            sort_keys=False,
        )
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CUBE_ASSETS_CONFIG": str(config),
        "CUBE_ASSETS_DATA_ROOT": str(data),
        "CUBE_ENV": "local",
        "CUBE_ASSETS_EXECUTOR": "in_process",
        "CUBE_ASSETS_BLEND_CRON": "* * * * *",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("CUBE_ASSETS_CATALOG_URL", None)
    # Create the SQLite storages once, here: processes starting together would each create (and
    # stamp) them at the same time.
    instance = DagsterInstance.from_config(str(home))
    instance.all_instigator_state()
    instance.get_runs(limit=1)

    # One partition from the command line, before any daemon runs.
    materialize = _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "cube_assets.definitions",
            "--select",
            "*sched/tile_merge",
            "--partition",
            SCHEDULE_KEY,
        ],
        env,
    )

    port = _free_port()
    logs = {name: open(root / f"{name}.log", "w") for name in ("daemon", "webserver")}
    processes = {
        "daemon": subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=env,
            stdout=logs["daemon"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        "webserver": subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=logs["webserver"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    }
    try:
        schedule = _run(
            [str(BIN / "dagster"), "schedule", "start", "sched_blend_schedule", "-w", "workspace.yaml"], env
        )
        backfill = _run(
            [
                str(BIN / "dagster"),
                "job",
                "backfill",
                "-w",
                "workspace.yaml",
                "-j",
                "bf_job",
                "--from",
                BACKFILL_KEYS[0],
                "--to",
                BACKFILL_KEYS[-1],
                "--noprompt",
            ],
            env,
        )
        yield {
            "instance": instance,
            "env": env,
            "port": port,
            "data": data,
            "root": root,
            "materialize": materialize,
            "schedule": schedule,
            "backfill": backfill,
        }
    finally:
        instance.dispose()
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in logs.values():
            log.close()


def _backfill_id(deployment) -> str:
    result = deployment["backfill"]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    launched = re.search(r"Launched backfill job `(\w+)`", result.stdout)
    assert launched, result.stdout[-2000:]
    return launched.group(1)


def _daemon_log(deployment) -> str:
    return (deployment["root"] / "daemon.log").read_text()[-3000:]


def test_one_partition_materializes_from_the_cli(deployment):
    result = deployment["materialize"]
    assert result.returncode == 0, result.stderr[-3000:]
    instance = deployment["instance"]
    merged = instance.get_materialized_partitions(AssetKey(["sched", "tile_merge"]))
    assert merged == {SCHEDULE_KEY}
    manifest = json.loads((deployment["data"] / "sched/_manifests/tile_merge/000000/2024-01-01.json").read_text())
    assert [m["date"] for m in manifest["merges"]] == ["2024-01-04", "2024-01-10"]


def _finished_backfill_runs(deployment, backfill_id: str):
    instance = deployment["instance"]

    def finished_runs():
        runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
        return runs if len(runs) == len(BACKFILL_KEYS) and all(r.status in FINISHED for r in runs) else None

    return _wait_for(f"the {len(BACKFILL_KEYS)} runs of backfill {backfill_id}", finished_runs)


def test_two_years_backfilled_from_the_cli_all_succeed(deployment):
    backfill_id = _backfill_id(deployment)
    instance = deployment["instance"]
    runs = _finished_backfill_runs(deployment, backfill_id)
    assert sorted(r.tags["dagster/partition"] for r in runs) == BACKFILL_KEYS
    assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}, _daemon_log(deployment)
    for stage in ("tile_merge", "period_blend", "catalog_item"):
        assert instance.get_materialized_partitions(AssetKey(["bf", stage])) == set(BACKFILL_KEYS)
    # Each period's blend holds that period's one acquisition.
    blend = json.loads((deployment["data"] / "bf/_manifests/period_blend/001000/2024-07-01.json").read_text())
    assert blend["dates"] == ["2024-07-10"]


def test_the_backfill_is_listed_on_the_ui_backfills_page(deployment):
    backfill_id = _backfill_id(deployment)
    _finished_backfill_runs(deployment, backfill_id)
    port = deployment["port"]
    _wait_for("the webserver", lambda: _ping(port), timeout=120)
    answer = _graphql(
        port,
        """
        { partitionBackfillsOrError(limit: 20) { __typename
            ... on PartitionBackfills { results { id status numPartitions partitionSetName
                partitionStatuses { results { partitionName runStatus } } } } } }
    """,
    )
    backfills = {b["id"]: b for b in answer["data"]["partitionBackfillsOrError"]["results"]}
    shown = backfills[backfill_id]
    assert shown["numPartitions"] == len(BACKFILL_KEYS)
    assert shown["partitionSetName"] == "bf_job_partition_set"
    statuses = {p["partitionName"]: p["runStatus"] for p in shown["partitionStatuses"]["results"]}
    assert statuses == {key: "SUCCESS" for key in BACKFILL_KEYS}


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_blend_schedule_blends_the_merged_period_under_the_daemon(deployment):
    """The schedule's tick (every minute here) finds sched's merged, long-ended period and blends it."""
    started = deployment["schedule"]
    assert started.returncode == 0, started.stderr[-3000:]
    instance = deployment["instance"]

    def blend_run():
        runs = instance.get_runs(filters=RunsFilter(tags={"dagster/schedule_name": "sched_blend_schedule"}))
        return runs[0] if runs and runs[0].status in FINISHED else None

    run = _wait_for("a finished run of sched_blend_schedule", blend_run)
    assert run.status == DagsterRunStatus.SUCCESS, _daemon_log(deployment)
    assert run.tags["dagster/partition"] == str(partition_key("000000", "2024-01-01"))
    assert set(run.asset_selection) == {AssetKey(["sched", "period_blend"]), AssetKey(["sched", "catalog_item"])}
    assert instance.get_materialized_partitions(AssetKey(["sched", "catalog_item"])) == {SCHEDULE_KEY}
    blend = json.loads((deployment["data"] / "sched/_manifests/period_blend/000000/2024-01-01.json").read_text())
    assert blend["dates"] == ["2024-01-04", "2024-01-10"]
    # One tick, one run: later ticks find the period catalogued.
    assert len(instance.get_runs(filters=RunsFilter(tags={"dagster/schedule_name": "sched_blend_schedule"}))) == 1


def test_make_backfill_wrapper_turns_dates_into_the_same_dagster_command(tmp_path):
    config = tmp_path / "cubes.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": [{"name": "archive", "driver": "local", "options": {"root": "archive"}}],
                "cubes": [BACKFILL_CUBE],
            }
        )
    )
    result = subprocess.run(
        [
            str(BIN / "cube-assets"),
            "backfill",
            "--cube",
            "bf",
            "--from",
            "2023-03-15",
            "--to",
            "2025-01-01",
            "--config",
            str(config),
            "--dry-run",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary, command = result.stdout.strip().splitlines()[-2:]
    assert summary == "bf: 10 partitions, 2023-01-01|000000 … 2025-01-01|001000"
    assert command.endswith(
        "dagster job backfill -w workspace.yaml -j bf_job"
        " --from '2023-01-01|000000' --to '2025-01-01|001000' --noprompt"
    )
