"""A small Celery cluster on this machine, for the scale-out tests and ``benchmarks/scale_out.py``.

The parts are the real ones a deployment runs:

* :class:`RedisServer`: Debian's ``redis-server`` on 127.0.0.1 and a free port, with its
  append-only file on (``appendfsync always``), so a broker stopped and started again keeps
  its queues, as a production broker with persistence does;
* :class:`Worker`: ``dagster-celery worker start -A cube_assets.celery_app`` (one task at a
  time) in a **mount namespace of its own** (``unshare --mount``), where the data roots of the
  other workers do not exist (see :class:`Worker`); its data root, ``HOME``, ``TMPDIR`` and
  numba cache are in its own folder, so no worker can read another's files and everything they
  share goes through S3 and PostgreSQL. Separate users were the first choice, but the venv's
  interpreter lives under ``/root`` (mode 0700) here, so a process of another user cannot
  start Python;
* :class:`Deployment`: ``dagster-daemon run`` on the repository's ``workspace.yaml`` and a
  Dagster instance on PostgreSQL (queued runs, run retries), which launches the runs of a
  ``dagster job backfill``; each run sends its steps to the workers through the broker.

Processes are started in sessions of their own, so a worker is killed (``kill -9``) with
everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import yaml

from cube_assets_tests.conftest import REPO_ROOT
from cube_assets_tests.fixtures_postgres import PostgresServer, free_tcp_port

BIN = Path(sys.executable).parent
T = TypeVar("T")


def cluster_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it on CI (``CI=true``), where every part of the cluster must be tested."""
    message = f"Celery cluster unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_for(description: str, condition: Callable[[], T | None], timeout_s: float, interval_s: float = 1.0) -> T:
    """Poll ``condition`` until it returns a true value; return that value.

    Raises:
        AssertionError: naming ``description`` when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {description}")
        time.sleep(interval_s)


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
    """Send ``sig`` to the process's session, wait up to ``timeout_s``, then SIGKILL what is left of the session."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever is left of the session (a code server the daemon started, a worker's child)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


# --------------------------------------------------------------------------------------------- broker


@dataclass
class RedisServer:
    """``redis-server`` on loopback with an append-only file in ``folder``."""

    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def backend_url(self) -> str:
        """The result backend URL (database 1 of the same server)."""
        return f"redis://127.0.0.1:{self.port}/1"

    def start(self) -> None:
        """Start the server (on a free port the first time, on the same port after :meth:`stop`).

        Raises:
            pytest.skip.Exception / pytest.fail.Exception: when ``redis-server`` is missing or does not answer.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            cluster_unavailable("redis-server not found (Debian: apt-get install redis-server; `make system-packages`)")
        self.folder.mkdir(parents=True, exist_ok=True)
        first = self.port == 0
        for _attempt in range(3 if first else 1):
            if first:
                self.port = free_tcp_port()
            log = (self.folder / "redis.log").open("ab")
            self.process = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.folder),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            if self._wait_until_serving():
                return
            _stop(self.process, signal.SIGKILL)
        cluster_unavailable(f"redis-server did not start: {(self.folder / 'redis.log').read_text()[-2000:]}")

    def _wait_until_serving(self, timeout_s: float = 30) -> bool:
        import redis

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2).ping():
                    return True
            except redis.RedisError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop the server as a service manager does (SIGTERM: the append-only file is flushed)."""
        if self.process is not None:
            _stop(self.process)
            self.process = None


# --------------------------------------------------------------------------------------------- workers


def _require_mount_namespaces() -> None:
    """Skip (fail on CI) unless this process may create mount namespaces (root, or CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None:
        cluster_unavailable("unshare (util-linux) not found")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        cluster_unavailable(f"cannot create a mount namespace for a worker: {probe.stderr.strip()}")


#: Run in the worker's new mount namespace: its own root appears at its mount point, then every
#: worker's root is covered by an empty tmpfs; then the worker command replaces the shell.
_ISOLATE = 'mount --bind "$1" "$2" && mount -t tmpfs -o size=1m,mode=0700 cube-workers "$3" && shift 3 && exec "$@"'


@dataclass
class Worker:
    """One Celery worker: its own mount namespace, where only its own data root exists; one task at a time.

    The roots of all workers are kept in ``roots/worker-{N}``; in worker N's namespace that
    folder is an empty tmpfs and its own root is bind-mounted at ``workers/worker-{N}`` (an
    empty folder outside it). The other workers' roots are therefore not merely unreadable but
    absent, as for containers (the same kernel mechanism). The test process, outside every
    namespace, sees them all.
    """

    index: int
    base: Path
    environment: dict[str, str]
    includes: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        """The node name the worker reports in Dagster's event log (``worker{N}@host``)."""
        return f"worker{self.index}"

    @property
    def storage(self) -> Path:
        """Where this worker's folder really is (seen from outside its namespace)."""
        return self.base / "roots" / f"worker-{self.index}"

    @property
    def folder(self) -> Path:
        """The worker's folder as the worker sees it (its mount point; empty outside its namespace)."""
        return self.base / "workers" / f"worker-{self.index}"

    @property
    def data_root(self) -> Path:
        """The worker's ``CUBE_ASSETS_DATA_ROOT``, as the worker sees it."""
        return self.folder / "data"

    def start(self) -> None:
        """Start ``dagster-celery worker start`` in a mount namespace of its own (see the class docstring)."""
        _require_mount_namespaces()
        for sub in ("", "data", "home", "tmp", "numba", "dagster_home"):
            (self.storage / sub).mkdir(parents=True, exist_ok=True)
        self.storage.chmod(0o700)
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": f"{BIN}{os.pathsep}/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(REPO_ROOT),
            "HOME": str(self.folder / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.folder / "tmp"),
            "NUMBA_CACHE_DIR": str(self.folder / "numba"),
            "DAGSTER_HOME": str(self.folder / "dagster_home"),
            "CUBE_ASSETS_DATA_ROOT": str(self.data_root),
            **self.environment,
        }
        command = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _ISOLATE,
            "isolate",
            str(self.storage),
            str(self.folder),
            str(self.base / "roots"),
            str(BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "cube_assets.celery_app",
            "-n",
            self.name,
            "-l",
            "INFO",
            *[arg for module in self.includes for arg in ("-i", module)],
            "--",
            "--concurrency=1",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
        (self.base / "logs").mkdir(exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    @property
    def log_path(self) -> Path:
        """The worker's log file."""
        return self.base / "logs" / f"{self.name}.log"

    def log_text(self) -> str:
        """The worker's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_until_ready(self, timeout_s: float = 180) -> None:
        """Wait for Celery's ``ready.`` line in the worker's log.

        Raises:
            AssertionError: when the worker exits or is not ready within ``timeout_s``.
        """

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log_text()[-3000:]
            return f"{self.name}@" in self.log_text() and " ready." in self.log_text()

        wait_for(f"{self.name} to be ready", ready, timeout_s, 0.5)

    def listing_inside(self, folder: Path) -> list[str]:
        """Return the names in ``folder`` as this worker sees it (``nsenter`` into its mount namespace)."""
        assert self.process is not None and self.process.poll() is None
        seen = subprocess.run(
            ["nsenter", f"--target={self.process.pid}", "--mount", "--", "ls", "-A", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return sorted(seen.stdout.split())

    def kill(self) -> None:
        """``kill -9`` the worker and every process it started (its session)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the worker (warm shutdown), killing it if it does not stop in time."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout_s=60)


# ------------------------------------------------------------------------------------------ deployment


def instance_yaml(postgresql_server: PostgresServer, database: str, max_concurrent_runs: int, max_retries: int) -> str:
    """Return the ``dagster.yaml`` of the test deployment: ``deploy/dagster.yaml``'s choices, with literal values.

    Storage on PostgreSQL with literal connection values (a task carries the instance's
    configuration to the worker, which has no ``DAGSTER_PG_*`` variables), no compute logs (the
    workers may not write into the daemon's home), queued runs and run retries.
    """
    config = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": postgresql_server.host,
                    "port": postgresql_server.port,
                    "db_name": database,
                    "username": postgresql_server.username,
                    "password": postgresql_server.password or "unused-with-trust-authentication",
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"},
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {
            "runs": {
                "max_concurrent_runs": max_concurrent_runs,
                "tag_concurrency_limits": [
                    {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
                ],
            },
            "pools": {"default_limit": 4},
        },
        "run_retries": {"enabled": True, "max_retries": max_retries},
        "telemetry": {"enabled": False},
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Deployment:
    """The daemon and the instance it launches runs with (see the module docstring)."""

    folder: Path
    environment: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        """The daemon's ``DAGSTER_HOME``."""
        return self.folder / "dagster_home"

    def env(self) -> dict[str, str]:
        """The environment of the daemon, its code server, its runs and the ``dagster`` commands."""
        return {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO_ROOT),
            "DAGSTER_HOME": str(self.home),
            "CUBE_ASSETS_DATA_ROOT": str(self.folder / "data"),
            **self.environment,
        }

    def write_instance(self, instance_config: str) -> None:
        """Write ``dagster.yaml`` into the daemon's home."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(instance_config)

    def start_daemon(self) -> None:
        """Start ``dagster-daemon run -w workspace.yaml``."""
        log = (self.folder / "daemon.log").open("ab")
        self.processes["daemon"] = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def daemon_log(self) -> str:
        """The last lines of the daemon's log."""
        return (self.folder / "daemon.log").read_text(errors="replace")[-4000:]

    def backfill(self, job_name: str) -> str:
        """Submit every partition of ``job_name`` with ``dagster job backfill``; return the backfill's id.

        Raises:
            AssertionError: with the command's output when it fails.
        """
        result = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", "workspace.yaml", "-j", job_name, "--noprompt"],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        for line in result.stdout.splitlines():
            if "Launched backfill job `" in line:
                return line.split("`")[1]
        raise AssertionError(result.stdout[-2000:])

    def stop(self) -> None:
        """Stop the daemon (and the code server it started)."""
        for process in self.processes.values():
            _stop(process, signal.SIGTERM, timeout_s=60)


def latest_run_per_partition(instance: Any, backfill_id: str) -> dict[str, Any]:
    """Return, for each partition of the backfill, its most recent run (retries included)."""
    from dagster import RunsFilter

    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
    latest: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp):
        latest[run.tags["dagster/partition"]] = run
    return latest


def celery_hosts(events: Iterable[Any]) -> list[tuple[str, str]]:
    """Return (step key, worker node name) of every "Executing steps ... in celery worker" event."""
    hosts = []
    for record in events:
        event = record.dagster_event
        if event is None or not event.is_engine_event or "in celery worker" not in (event.message or ""):
            continue
        metadata: Mapping[str, Any] = event.engine_event_data.metadata
        host = metadata["Celery worker"]
        hosts.append((event.step_key or "", str(getattr(host, "value", host))))
    return hosts


# ------------------------------------------------------------------------------------------ cluster


@dataclass
class Cluster:
    """Everything :func:`celery_cluster` started, and where the backfill's outputs go."""

    base: Path
    config: Path
    bucket: str
    catalog_url: str
    redis: RedisServer
    workers: list[Worker]
    deployment: Deployment
    instance: Any


@contextmanager
def celery_cluster(
    s3_server: Any,
    postgresql_server: PostgresServer,
    worker_count: int,
    *,
    visibility_timeout_s: int,
    max_run_retries: int,
    max_concurrent_runs: int = 6,
    period_count: int = 8,
    configure_worker: Callable[[Worker], None] | None = None,
) -> Iterator[Cluster]:
    """Start the broker, ``worker_count`` workers and the daemon on a fresh bucket, catalog schema and Dagster database.

    The cube has 3 tiles × ``period_count`` periods. ``configure_worker`` may change a worker
    (its environment, its includes) before it starts.
    Everything is stopped and removed on exit.

    Yields:
        The :class:`Cluster`, its workers ready and its daemon started.
    """
    from dagster import DagsterInstance

    from cube_assets.executors import BACKEND_VARIABLE, BROKER_VARIABLE, VISIBILITY_TIMEOUT_VARIABLE
    from cube_assets_tests.scale_out.cube import write_scale_cube_file

    # Not pytest's tmp_path: a worker's namespace covers the folder of every worker's root.
    base = Path(tempfile.mkdtemp(prefix="cube-scale-out-"))
    base.chmod(0o755)
    config = write_scale_cube_file(base, period_count)
    bucket = s3_server.create_bucket("scale-out")
    schema = f"scale_out_{bucket.rsplit('-', 1)[-1]}"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    dagster_database = postgresql_server.create_database("dagster")
    redis = RedisServer(base / "redis")
    workers: list[Worker] = []
    deployment: Deployment | None = None
    instance = None
    try:
        redis.start()
        shared = {
            **s3_server.environment(bucket, prefix="cubes"),
            "CUBE_ASSETS_CATALOG_URL": postgresql_server.schema_url(schema),
            "CUBE_ASSETS_CONFIG": str(config),
            "CUBE_ASSETS_EXECUTOR": "celery",
            BROKER_VARIABLE: redis.url,
            BACKEND_VARIABLE: redis.backend_url,
            VISIBILITY_TIMEOUT_VARIABLE: str(visibility_timeout_s),
        }
        for index in range(worker_count):
            worker = Worker(index, base, dict(shared))
            if configure_worker is not None:
                configure_worker(worker)
            workers.append(worker)
            worker.start()
        deployment = Deployment(base / "daemon", shared)
        deployment.write_instance(
            instance_yaml(postgresql_server, dagster_database, max_concurrent_runs, max_run_retries)
        )
        instance = DagsterInstance.from_config(str(deployment.home))
        instance.get_runs(limit=1)  # dagster-postgres creates its tables once, here
        deployment.start_daemon()
        for worker in workers:
            worker.wait_until_ready()
        yield Cluster(base, config, bucket, postgresql_server.schema_url(schema), redis, workers, deployment, instance)
    finally:
        if instance is not None:
            instance.dispose()
        if deployment is not None:
            deployment.stop()
        for worker in workers:
            worker.stop()
        redis.stop()
        postgresql_server.admin(f'DROP SCHEMA "{schema}" CASCADE')
        postgresql_server.drop_database(dagster_database)
        shutil.rmtree(base, ignore_errors=True)


def backfill_settled(
    instance: Any, backfill_id: str, partition_count: int, max_run_retries: int
) -> dict[str, Any] | None:
    """The latest run of each partition once all ``partition_count`` have finished and none will be retried any more."""
    from dagster import DagsterRunStatus

    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    latest = latest_run_per_partition(instance, backfill_id)
    if len(latest) < partition_count or any(run.status not in finished for run in latest.values()):
        return None
    pending_retry = [
        run
        for run in latest.values()
        if run.status == DagsterRunStatus.FAILURE and int(run.tags.get("dagster/retry_number", 0)) < max_run_retries
    ]
    return None if pending_retry else latest
