"""Scale-out on Celery workers: the backfill of 3 tiles × N periods with one worker and with two.

Run::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/scale_out.py [--periods 8]

As root (each worker gets a mount namespace of its own), with Debian's ``redis-server`` and
PostgreSQL installed. The parts are those of ``cube_assets_tests/scale_out/``: ``redis-server``,
moto's S3 server, PostgreSQL, ``dagster-celery`` workers (one task at a time each) and
``dagster-daemon``, which launches the runs of ``dagster job backfill`` of the simulated cube of
``cube_assets_tests/scale_out/cube.py`` (3 tiles × ``--periods`` periods, 64 px tiles).

Cases:

* ``backfill, 1 worker`` and ``backfill, 2 workers``: the wall time from submitting the backfill
  to the last of its runs succeeding, on a fresh cluster each. ``speedup_2_workers`` is the
  first over the second (target ≥ 1.6 on a 2-core machine: each worker takes one step at a time,
  so two workers keep both cores busy while the runs' own processes mostly wait).
* ``one partition, multiprocess`` and ``one partition, celery``: one partition re-run after the
  backfill (the same work for both), its steps one at a time: Dagster's multiprocess executor
  (``max_concurrent: 1``, a process per step) against the Celery path (a task per step, one
  worker). A step's overhead is the run's wall time less the time its steps spent in their own
  code (the ``STEP_SUCCESS`` durations), divided by the number of steps.

Prints the table (the machine's load average in the header line: on a shared machine every
figure here grows with it), then ``celery_step_overhead_s``, ``multiprocess_step_overhead_s``
and the key line ``speedup_2_workers: X``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_summary, print_table

TIMEOUT_S = 7200
MAX_RUN_RETRIES = 1

#: Runs one partition of the job with the executor of CUBE_ASSETS_EXECUTOR, on the instance of DAGSTER_HOME,
#: and prints the run's id.
_ONE_PARTITION = """
import sys
from dagster import DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

job = ReconstructableRepository.for_module("cube_assets.definitions", "defs").get_reconstructable_job(sys.argv[1])
execution = {"config": {"max_concurrent": 1}} if sys.argv[3] == "multiprocess" else {}
with DagsterInstance.get() as instance:
    tags = job.get_definition().get_tags_for_partition_key(sys.argv[2], selected_asset_keys=None)
    with execute_job(job, instance, tags=tags, run_config={"execution": execution} if execution else {}) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        print(result.run_id)
"""


def _backfill(running: Any, partition_count: int) -> float:
    from cube_assets_tests.scale_out.cluster import backfill_settled, wait_for
    from cube_assets_tests.scale_out.cube import JOB

    started = time.monotonic()
    backfill_id = running.deployment.backfill(JOB)
    latest = wait_for(
        "the backfill",
        lambda: backfill_settled(running.instance, backfill_id, partition_count, MAX_RUN_RETRIES),
        TIMEOUT_S,
        1,
    )
    elapsed = time.monotonic() - started
    failed = [key for key, run in latest.items() if run.status.value != "SUCCESS"]
    assert not failed, f"partitions failed: {failed}\n{running.deployment.daemon_log()}"
    return elapsed


def _one_partition(running: Any, key: str, executor: str) -> tuple[float, float, int]:
    """Run partition ``key`` with ``executor``; return (run wall s, seconds in step code, steps)."""
    from dagster import DagsterEventType

    from cube_assets_tests.scale_out.cube import JOB

    env = {**running.deployment.env(), "CUBE_ASSETS_EXECUTOR": executor}
    done = subprocess.run(
        [sys.executable, "-c", _ONE_PARTITION, JOB, key, executor],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1]
    records = running.instance.all_logs(run_id)
    start = next(r.timestamp for r in records if r.dagster_event_type == DagsterEventType.RUN_START)
    end = next(r.timestamp for r in records if r.dagster_event_type == DagsterEventType.RUN_SUCCESS)
    successes = [r for r in records if r.dagster_event_type == DagsterEventType.STEP_SUCCESS]
    in_steps = sum(r.dagster_event.event_specific_data.duration_ms for r in successes) / 1000
    return end - start, in_steps, len(successes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--periods", type=int, default=8, help="periods of the cube (3 tiles each)")
    args = parser.parse_args()

    from cube_assets_tests.fixtures_postgres import _start_local_server
    from cube_assets_tests.fixtures_s3 import s3_server
    from cube_assets_tests.scale_out.cluster import celery_cluster
    from cube_assets_tests.scale_out.cube import partition_keys

    keys = partition_keys(args.periods)
    print(f"# {machine_summary()}")
    print(f"# backfill: {len(keys)} partitions (3 tiles x {args.periods} periods), 12 steps each")
    rows: list[list[Any]] = []
    seconds: dict[int, float] = {}
    overhead: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(contextlib.contextmanager(_start_local_server)())
        s3 = stack.enter_context(contextlib.contextmanager(s3_server.__wrapped__)())
        for workers in (1, 2):
            with celery_cluster(
                s3,
                postgres,
                workers,
                visibility_timeout_s=3600,
                max_run_retries=MAX_RUN_RETRIES,
                period_count=args.periods,
            ) as running:
                seconds[workers] = _backfill(running, len(keys))
                rows.append([f"backfill, {workers} worker{'s' if workers > 1 else ''}", f"{seconds[workers]:.1f}", ""])
                if workers == 1:
                    for executor in ("multiprocess", "celery"):
                        wall, in_steps, steps = _one_partition(running, keys[0], executor)
                        overhead[executor] = (wall - in_steps) / steps
                        rows.append(
                            [f"one partition, {executor}", f"{wall:.1f}", f"{overhead[executor]:.2f} ({steps} steps)"]
                        )
    print_table(rows, ("case", "seconds", "overhead_per_step_s"))
    print(f"# load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"multiprocess_step_overhead_s: {overhead['multiprocess']:.2f}")
    print(f"celery_step_overhead_s: {overhead['celery']:.2f}")
    print(f"celery_overhead_vs_multiprocess_s: {overhead['celery'] - overhead['multiprocess']:.2f}")
    print(f"speedup_2_workers: {seconds[1] / seconds[2]:.2f}")


if __name__ == "__main__":
    main()
