"""Catalog fixtures: a fresh catalog database per test, on SQLite and on PostgreSQL.

Every test that uses ``catalog_url`` (or ``engine``/``sessions``, built on it) runs twice: on a
SQLite file in ``tmp_path`` and on PostgreSQL, in a fresh schema (selected through the URL's
``search_path`` option) of a throw-away server.

The PostgreSQL server is started once per test session with ``initdb`` + ``pg_ctl`` into a
temporary folder, listening only on a Unix socket in that folder (no TCP port, so nothing to
collide with). As root, whose clusters PostgreSQL refuses to run, the server runs as the
``postgres`` user. Set ``CUBE_ASSETS_TEST_POSTGRESQL_URL`` (e.g. a CI service container,
``postgresql://user:pass@localhost:5432/postgres``) to use an existing server instead; each test
then gets its own schema in that database.

If PostgreSQL cannot be used, its tests are skipped locally but fail when ``CI=true``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema

BACKENDS = ("sqlite", "postgresql")


def _unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it on CI where PostgreSQL must be tested."""
    message = f"PostgreSQL unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server; ``admin_url`` points at the database the tests use."""

    admin_url: str

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
            connection.execute(sql)  # type: ignore[arg-type]


def _postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _start_local_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        _unavailable("initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    # A short path in /tmp: the socket path must stay under ~100 bytes, and pytest's tmp_path
    # is private to root (mode 0700) when the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="cube-catalog-pg-"))
    if run_as:
        shutil.chown(root, user="postgres")
    data, log, port = root / "data", root / "server.log", 5432
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = (
            f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        details = getattr(exc, "stderr", b"") or b""
        server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"could not start a server: {exc}: {details.decode(errors='replace')}{server_log}")
    try:
        yield PostgresServer(admin_url=f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}")
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable('psycopg is not installed (pip install "psycopg[binary]>=3.2,<4")')
    external = os.environ.get("CUBE_ASSETS_TEST_POSTGRESQL_URL")
    if external:
        server = PostgresServer(admin_url=external)
        try:
            server.admin("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "unavailable"
            _unavailable(f"cannot connect to CUBE_ASSETS_TEST_POSTGRESQL_URL: {exc}")
        yield server
        return
    yield from _start_local_server()


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a new, empty catalog: a SQLite file, or a fresh schema of the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/catalog.sqlite"
        return
    # A fresh schema per test isolates as well as a fresh database, in ~1 ms instead of ~300 ms.
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    schema = f"catalog_test_{uuid.uuid4().hex[:12]}"
    server.admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield server.schema_url(schema)
    finally:
        server.admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(catalog_url: str) -> Iterator[Engine]:
    """An engine on a catalog database migrated to the latest schema."""
    catalog_engine = create_catalog_engine(catalog_url)
    upgrade_schema(catalog_engine)
    try:
        yield catalog_engine
    finally:
        catalog_engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory of the migrated catalog."""
    return session_factory(engine)
