"""A real PostgreSQL server for the tests, started once per session (registered in ``conftest.py``).

The server is created with ``initdb`` + ``pg_ctl`` in a temporary folder and listens on
``127.0.0.1`` on a free TCP port (and on a Unix socket in that folder), with ``trust``
authentication: any user name and password that exists is accepted. As root, whose clusters
PostgreSQL refuses to run, the server runs as the ``postgres`` user. Set
``CUBE_ASSETS_TEST_POSTGRESQL_URL`` (e.g. a CI service container,
``postgresql://user:pass@localhost:5432/postgres``) to use an existing server instead.

Tests isolate themselves with a fresh schema (:meth:`PostgresServer.schema_url`, ~1 ms) or a
fresh database (:meth:`PostgresServer.create_database`, for tools such as Dagster's storage
that always work in the ``public`` schema).

If PostgreSQL cannot be used, its tests are skipped locally but fail when ``CI=true``. The same
holds for PostGIS (:meth:`PostgresServer.require_postgis`): the catalog migrations create the
extension where the server has its files (Debian package ``postgresql-15-postgis-3``, which
``.ci/run`` installs).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import make_url


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it on CI (``CI=true``) where PostgreSQL must be tested."""
    message = f"PostgreSQL unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def postgis_unavailable(reason: str) -> NoReturn:
    """Skip a test that needs PostGIS, or fail it on CI (``CI=true``), where ``.ci/run`` installs it."""
    message = f"PostGIS unavailable: {reason} (Debian: apt-get install postgresql-15-postgis-3)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server; ``admin_url`` points at the database the tests use by default."""

    admin_url: str

    @property
    def host(self) -> str:
        """The server's host name (``127.0.0.1`` for the server these fixtures start)."""
        return make_url(self.admin_url).host or "localhost"

    @property
    def port(self) -> int:
        """The server's TCP port."""
        return make_url(self.admin_url).port or 5432

    @property
    def username(self) -> str:
        """The user the tests connect as."""
        return make_url(self.admin_url).username or "postgres"

    @property
    def password(self) -> str:
        """That user's password (empty for the local ``trust`` server)."""
        return make_url(self.admin_url).password or ""

    def database_url(self, database: str) -> str:
        """Return :attr:`admin_url` with its database replaced by ``database``."""
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def schema_url(self, schema: str) -> str:
        """Return a URL whose connections work in ``schema`` (``search_path``), like a database of its own."""
        url = make_url(self.admin_url)
        return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def admin(self, sql: str) -> None:
        """Run ``sql`` in autocommit mode on :attr:`admin_url`."""
        import psycopg

        # libpq takes the same URI without SQLAlchemy's "+driver" suffix.
        conninfo = make_url(self.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]  # a plain SQL string, run as is

    def create_database(self, prefix: str = "test") -> str:
        """Create a new, empty database named ``{prefix}_{random}``; return its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever still uses it."""
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def has_postgis(self) -> bool:
        """Whether the server can create the PostGIS extension (its files are installed)."""
        import psycopg

        conninfo = make_url(self.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            row = connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone()
        return row is not None

    def require_postgis(self) -> None:
        """Skip the calling test (fail it on CI) unless the server offers PostGIS."""
        if not self.has_postgis():
            postgis_unavailable("the server's pg_available_extensions has no postgis")


def free_tcp_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _start_local_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        postgres_unavailable("initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            postgres_unavailable("running as root and there is no 'postgres' user to run the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    # A short path in /tmp: the socket path must stay under ~100 bytes, and pytest's tmp_path
    # is private to root (mode 0700) when the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="cube-catalog-pg-"))
    if run_as:
        shutil.chown(root, user="postgres")
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        postgres_unavailable(f"initdb failed: {exc}: {(getattr(exc, 'stderr', b'') or b'').decode(errors='replace')}")
    port, failure = 0, ""
    for _attempt in range(3):  # another process may take the free port before the server binds it
        port = free_tcp_port()
        options = (
            f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c max_connections=200"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
            capture_output=True,
            timeout=120,
        )
        if started.returncode == 0:
            break
        failure = started.stderr.decode(errors="replace") + (
            log.read_text(errors="replace")[-2000:] if log.exists() else ""
        )
    else:
        shutil.rmtree(root, ignore_errors=True)
        postgres_unavailable(f"could not start a server: {failure}")
    try:
        yield PostgresServer(admin_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        postgres_unavailable('psycopg is not installed (pip install "psycopg[binary]>=3.2,<4")')
    external = os.environ.get("CUBE_ASSETS_TEST_POSTGRESQL_URL")
    if external:
        server = PostgresServer(admin_url=external)
        try:
            server.admin("SELECT 1")
        except Exception as exc:  # any failure to connect means "unavailable"
            postgres_unavailable(f"cannot connect to CUBE_ASSETS_TEST_POSTGRESQL_URL: {exc}")
        yield server
        return
    yield from _start_local_server()


@pytest.fixture
def postgresql_schema_url(postgresql_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty schema on the test server (dropped after the test)."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield postgresql_server.schema_url(schema)
    finally:
        postgresql_server.admin(f'DROP SCHEMA "{schema}" CASCADE')
