"""The local rehearsal of production: PostgreSQL with PostGIS and an S3 server on loopback, under one folder.

:func:`start_prod_local` starts, under ``root`` (``.dagster_prod/`` for ``make prod-local``):

* a PostgreSQL cluster (``initdb`` + ``pg_ctl`` of the installed server) in ``root/postgres/``,
  listening on ``127.0.0.1`` only (no Unix socket), with password authentication
  (``scram-sha-256``) for its one superuser ``cube`` and a generated password; the databases
  ``catalog`` (with the PostGIS extension where the server has its files) and ``dagster``;
* moto's S3 server (``python -m moto.server``, from the ``moto[server]`` package) on
  ``127.0.0.1``, logging to ``root/s3.log``, and the bucket ``cubes`` in it; moto keeps
  objects in memory, so a stopped server loses them (this is a rehearsal; use MinIO or a real
  bucket for anything you keep);
* ``root/dagster_home/dagster.yaml``: the production instance (``deploy/dagster.yaml``: runs,
  events and schedules in the ``dagster`` database);
* ``root/env.sh`` (mode 0600): the ``export`` lines that point ``CUBE_ENV=prod`` at all of it.

Ports are free ones chosen at the first start and kept in ``root/state.json`` (mode 0600); a
second start reuses the cluster and its password and starts only what is not running.
:func:`stop_prod_local` stops what :func:`start_prod_local` started, by the process ids it
recorded. Nothing here imports dagster.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cube_assets.atomic import atomic_path, atomic_write_bytes
from cube_assets.errors import CubeAssetsError

PG_USER = "cube"
CATALOG_DATABASE = "catalog"
DAGSTER_DATABASE = "dagster"
BUCKET = "cubes"
PREFIX = "demo"
REGION = "us-east-1"
S3_ACCESS_KEY_ID = "cube-local"
#: The variables whose values :func:`exports_text` masks when it prints them.
SECRET_VARIABLES = ("CUBE_ASSETS_S3_SECRET_ACCESS_KEY", "DAGSTER_PG_PASSWORD", "CUBE_ASSETS_CATALOG_URL")


class ProdLocalError(CubeAssetsError):
    """The rehearsal could not start or stop a server; the message names the folder and the cause."""


@dataclass
class ProdLocalState:
    """What a start recorded in ``root/state.json``: ports, the generated secrets, the S3 server's process id."""

    pg_port: int
    s3_port: int
    pg_password: str
    s3_secret_access_key: str
    s3_pid: int = 0
    postgis: bool = False
    started: list[str] = field(default_factory=list)


def free_tcp_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postgres_binary(name: str) -> str:
    """Return the path of PostgreSQL's program ``name`` (``initdb``, ``pg_ctl``).

    Raises:
        ProdLocalError: when neither ``PATH`` nor ``/usr/lib/postgresql/*/bin`` has it.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise ProdLocalError(
            f"PostgreSQL's {name} not found on PATH or in /usr/lib/postgresql/*/bin: install the server "
            "(Debian: apt-get install postgresql postgresql-15-postgis-3; `make system-packages` does it as root)"
        )
    return str(candidates[-1])


def _run_as() -> list[str]:
    """The prefix that runs PostgreSQL's programs as ``postgres`` when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ProdLocalError("running as root, PostgreSQL needs a 'postgres' user to run as; there is none") from exc
    return ["runuser", "-u", "postgres", "--"]


def _check_reachable(root: Path, run_as: list[str]) -> None:
    if run_as and subprocess.run([*run_as, "test", "-x", str(root)], capture_output=True).returncode != 0:
        raise ProdLocalError(
            f"prod-local folder {root}: the user postgres (PostgreSQL runs as it under root) cannot enter it; "
            "choose a folder every user can traverse (e.g. under /tmp or /srv)"
        )


def state_path(root: Path) -> Path:
    """Return where the state of the rehearsal under ``root`` is kept."""
    return root / "state.json"


def env_path(root: Path) -> Path:
    """Return the env file of the rehearsal under ``root`` (``. root/env.sh`` sets its variables)."""
    return root / "env.sh"


def read_state(root: Path) -> ProdLocalState | None:
    """Return the recorded state under ``root``, or None before the first start.

    Raises:
        ProdLocalError: when ``root/state.json`` exists but is not a state this module wrote.
    """
    path = state_path(root)
    if not path.exists():
        return None
    try:
        return ProdLocalState(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ProdLocalError(f"{path}: not a prod-local state file ({exc}); remove {root} to start afresh") from exc


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only from the first byte."""
    with atomic_path(path) as temporary:
        temporary.touch(mode=0o600)
        temporary.chmod(0o600)
        temporary.write_text(text)


def _write_state(root: Path, state: ProdLocalState) -> None:
    _write_private(state_path(root), json.dumps(asdict(state), indent=2) + "\n")


def environment(root: Path, state: ProdLocalState) -> dict[str, str]:
    """Return the variables that point ``CUBE_ENV=prod`` (and Dagster's instance) at the servers under ``root``."""
    pg = f"{PG_USER}:{state.pg_password}@127.0.0.1:{state.pg_port}"
    return {
        "CUBE_ENV": "prod",
        "CUBE_ASSETS_S3_BUCKET": BUCKET,
        "CUBE_ASSETS_S3_PREFIX": PREFIX,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{state.s3_port}",
        "AWS_REGION": REGION,
        "CUBE_ASSETS_S3_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
        "CUBE_ASSETS_S3_SECRET_ACCESS_KEY": state.s3_secret_access_key,
        "CUBE_ASSETS_CATALOG_URL": f"postgresql://{pg}/{CATALOG_DATABASE}",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(state.pg_port),
        "DAGSTER_PG_DB": DAGSTER_DATABASE,
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": state.pg_password,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "CUBE_ASSETS_DATA_ROOT": str(root / "scratch"),
    }


def exports_text(variables: dict[str, str], mask_secrets: bool = False) -> str:
    """Return one ``export NAME=value`` line per variable, shell-quoted (secrets as ``***`` if ``mask_secrets``)."""
    lines = []
    for name, value in variables.items():
        shown = "***" if mask_secrets and name in SECRET_VARIABLES else shlex.quote(value)
        lines.append(f"export {name}={shown}")
    return "\n".join(lines) + "\n"


def _pg_data(root: Path) -> Path:
    return root / "postgres" / "data"


def _pg_running(pg_ctl: str, data: Path, run_as: list[str]) -> bool:
    return subprocess.run([*run_as, pg_ctl, "-D", str(data), "status"], capture_output=True).returncode == 0


def _init_cluster(root: Path, password: str, run_as: list[str]) -> None:
    folder = root / "postgres"
    folder.mkdir(parents=True, exist_ok=True)
    if run_as:
        shutil.chown(folder, user="postgres")
    password_file = folder / "initdb.pw"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    if run_as:
        shutil.chown(password_file, user="postgres")
    try:
        subprocess.run(
            [
                *run_as,
                postgres_binary("initdb"),
                "-D",
                str(_pg_data(root)),
                "-U",
                PG_USER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except subprocess.CalledProcessError as exc:
        output = exc.stderr.decode(errors="replace")[-2000:]
        raise ProdLocalError(f"initdb in {_pg_data(root)} failed: {output}") from exc
    finally:
        password_file.unlink(missing_ok=True)


def _start_cluster(root: Path, port: int, run_as: list[str]) -> None:
    log = root / "postgres" / "server.log"
    # Loopback TCP only: no Unix socket, whose path would have to stay under ~100 bytes.
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=100"
    started = subprocess.run(
        [*run_as, postgres_binary("pg_ctl"), "-D", str(_pg_data(root)), "-o", options, "-l", str(log), "-w", "-t", "90"]
        + ["start"],
        capture_output=True,
        timeout=150,
    )
    if started.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ProdLocalError(
            f"PostgreSQL in {_pg_data(root)} did not start on 127.0.0.1:{port}: "
            f"{started.stderr.decode(errors='replace')}{tail}"
        )


def _connect(state: ProdLocalState, database: str) -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1",
        port=state.pg_port,
        user=PG_USER,
        password=state.pg_password,
        dbname=database,
        autocommit=True,
        connect_timeout=10,
    )


def _create_databases(state: ProdLocalState) -> bool:
    """Create the catalog and Dagster databases where missing; return whether the catalog has PostGIS."""
    with _connect(state, "postgres") as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for name in (CATALOG_DATABASE, DAGSTER_DATABASE):
            if name not in existing:
                connection.execute(f'CREATE DATABASE "{name}"')
    with _connect(state, CATALOG_DATABASE) as connection:
        available = connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone()
        if available is None:
            return False
        connection.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return True


def _process_alive(pid: int, marker: str) -> bool:
    """Whether process ``pid`` runs and its command line contains ``marker`` (so a reused id is not ours)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    shown = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return marker in shown.stdout


def _s3_marker(state: ProdLocalState) -> str:
    return f"moto.server -H 127.0.0.1 -p {state.s3_port}"


def _s3_client(state: ProdLocalState) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{state.s3_port}",
        region_name=REGION,
        aws_access_key_id=S3_ACCESS_KEY_ID,
        aws_secret_access_key=state.s3_secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _start_s3(root: Path, state: ProdLocalState, timeout_s: float = 60.0) -> int:
    try:
        import moto.server  # noqa: F401 - imported only to learn whether it is installed
    except ImportError as exc:
        raise ProdLocalError(
            f"moto's S3 server is not installed ({exc}): pip install 'moto[server]>=5,<6' into this Python "
            f"({sys.executable}), or install the project with its test extra: pip install -e '.[test]'"
        ) from exc
    log = root / "s3.log"
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(state.s3_port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command; stop_prod_local ends it
        )
    deadline, last_error = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProdLocalError(
                f"moto's S3 server exited with {process.returncode} on port {state.s3_port}: "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            _s3_client(state).list_buckets()
            return process.pid
        except Exception as exc:  # not answering yet
            last_error = str(exc)
            time.sleep(0.2)
    process.kill()
    raise ProdLocalError(
        f"moto's S3 server on port {state.s3_port} did not answer within {timeout_s:.0f} s: {last_error}"
    )


def _ensure_bucket(state: ProdLocalState) -> None:
    client = _s3_client(state)
    if BUCKET not in {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)


def _install_instance(dagster_home: Path, instance_yaml: Path) -> None:
    if not instance_yaml.is_file():
        raise ProdLocalError(f"the production instance file {instance_yaml} does not exist (deploy/dagster.yaml)")
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if not target.exists():
        atomic_write_bytes(target, instance_yaml.read_bytes())


def start_prod_local(root: str | os.PathLike[str], instance_yaml: str | os.PathLike[str]) -> dict[str, str]:
    """Start (or find running) the rehearsal's PostgreSQL and S3 servers under ``root``; write ``root/env.sh``.

    ``instance_yaml`` (``deploy/dagster.yaml``) becomes ``root/dagster_home/dagster.yaml`` unless
    that file already exists.

    Returns:
        The variables written to ``root/env.sh`` (secrets included: show them with
        :func:`exports_text` and ``mask_secrets=True``).

    Raises:
        ProdLocalError: naming the folder, the server and the cause, when a server cannot start
            (PostgreSQL or moto not installed, a port taken, the folder unreachable for ``postgres``).
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    run_as = _run_as()
    _check_reachable(root, run_as)
    state = read_state(root)
    if state is None:
        state = ProdLocalState(
            pg_port=free_tcp_port(),
            s3_port=free_tcp_port(),
            pg_password=secrets.token_urlsafe(18),
            s3_secret_access_key=secrets.token_urlsafe(24),
        )
    state.started = []
    _write_state(root, state)
    pg_ctl = postgres_binary("pg_ctl")
    if not (_pg_data(root) / "PG_VERSION").exists():
        _init_cluster(root, state.pg_password, run_as)
    if not _pg_running(pg_ctl, _pg_data(root), run_as):
        _start_cluster(root, state.pg_port, run_as)
        state.started.append("postgresql")
    state.postgis = _create_databases(state)
    if not _process_alive(state.s3_pid, _s3_marker(state)):
        state.s3_pid = _start_s3(root, state)
        state.started.append("s3")
    _write_state(root, state)
    _ensure_bucket(state)
    variables = environment(root, state)
    _install_instance(Path(variables["DAGSTER_HOME"]), Path(instance_yaml))
    Path(variables["CUBE_ASSETS_DATA_ROOT"]).mkdir(parents=True, exist_ok=True)
    _write_private(env_path(root), exports_text(variables))
    return variables


def stop_prod_local(root: str | os.PathLike[str]) -> list[str]:
    """Stop the servers :func:`start_prod_local` started under ``root`` (by the ids it recorded).

    Returns:
        What was stopped: ``"postgresql"`` and/or ``"s3"`` (empty when nothing was running).

    Raises:
        ProdLocalError: when ``root`` holds no rehearsal, or PostgreSQL refuses to stop.
    """
    root = Path(root).resolve()
    state = read_state(root)
    if state is None:
        raise ProdLocalError(f"prod-local folder {root}: no state.json, so nothing was started there")
    stopped = []
    run_as = _run_as()
    pg_ctl = postgres_binary("pg_ctl")
    if _pg_data(root).exists() and _pg_running(pg_ctl, _pg_data(root), run_as):
        result = subprocess.run(
            [*run_as, pg_ctl, "-D", str(_pg_data(root)), "-m", "fast", "-w", "-t", "60", "stop"], capture_output=True
        )
        if result.returncode != 0:
            output = result.stderr.decode(errors="replace")
            raise ProdLocalError(f"PostgreSQL in {_pg_data(root)} did not stop: {output}")
        stopped.append("postgresql")
    if _process_alive(state.s3_pid, _s3_marker(state)):
        os.kill(state.s3_pid, 15)
        deadline = time.monotonic() + 20
        while _process_alive(state.s3_pid, _s3_marker(state)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process_alive(state.s3_pid, _s3_marker(state)):
            os.kill(state.s3_pid, 9)
        stopped.append("s3")
    state.s3_pid = 0
    _write_state(root, state)
    return stopped
