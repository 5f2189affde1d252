"""Engines, sessions and schema migrations of the catalog database (SQLite file or PostgreSQL).

Typical use::

    engine = create_catalog_engine(default_catalog_url(root))
    upgrade_schema(engine)
    Session = session_factory(engine)
    with Session.begin() as session:      # commits on success, rolls back on error
        upsert_image(session, record)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.errors import CatalogError
from cube_assets.redaction import is_secret_query_key, redact_url

#: Folder of the Alembic environment, found from this file so it works from an installed package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Alembic's version table for the catalog. Not the default ``alembic_version``, so the catalog can
#: share a PostgreSQL database with other Alembic-managed schemas (Dagster's own storage uses that).
VERSION_TABLE = "catalog_alembic_version"

#: Alembic keeps the running migration context in module globals, so two threads must not run it at
#: once; processes are serialized by the database lock taken in ``migrations/env.py``.
_ALEMBIC_LOCK = threading.Lock()

#: Seconds a SQLite connection waits for another writer's lock before failing with "database is locked".
PING_AFTER_IDLE_S = 10.0
"""A PostgreSQL connection idle in the pool this long is tested before it is handed out."""
POSTGRESQL_POOL_SIZE = 10
"""PostgreSQL connections an engine keeps open once it has needed them (as many more are opened
and closed for a burst). With SQLAlchemy's 5, a STAC API worker answering 8 searches at once
closed the connections above five as they came back and opened them again for the next ones
(each a new PostgreSQL backend); stac-fastapi-pgstac's pool also holds up to 10."""
SQLITE_BUSY_TIMEOUT_S = 60.0

#: How many busy timeouts a locked ``BEGIN IMMEDIATE`` (or the switch to WAL) waits through.
SQLITE_LOCK_ATTEMPTS = 5

#: Execution option that marks the engine of writing sessions (``BEGIN IMMEDIATE`` on SQLite).
_WRITE_OPTION = "catalog_writes"


def default_catalog_url(root: Path) -> str:
    """Return the URL of the SQLite catalog file under ``root``: ``sqlite:///{root}/catalog.sqlite``.

    ``root`` is made absolute (without resolving symlinks) so every process that receives the URL
    opens the same file whatever its working directory.

    Returns:
        The SQLAlchemy URL string.

    Raises:
        Nothing.
    """
    return f"sqlite:///{Path(root).absolute()}/catalog.sqlite"


def _json_dumps(value: Any) -> str:
    # Sorted keys make equal documents equal strings, so SQLite (which stores JSON as text) sees
    # an unchanged dict as unchanged in the upserts' "IS NOT" comparisons, as JSONB does on PostgreSQL.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def create_catalog_engine(url: str | URL) -> Engine:
    """Return an engine for the catalog at ``url`` (``sqlite:///...`` or ``postgresql://...``).

    SQLite: the folder and the file are created if missing, and the file is put in WAL mode
    once (readers never block the writer). Every connection sets its busy timeout first
    (:data:`SQLITE_BUSY_TIMEOUT_S`), then ``foreign_keys=ON`` (off by default in SQLite) and
    ``synchronous=NORMAL``. Writing sessions (:func:`session_factory`'s ``begin()``) start with
    ``BEGIN IMMEDIATE``, retried while locked, so any number of processes writing one catalog
    wait for each other and never fail with "database is locked".

    PostgreSQL: ``postgresql://`` and ``postgres://`` are rewritten to ``postgresql+psycopg://``.
    SQLAlchemy 2.1 already maps a bare ``postgresql://`` to psycopg 3, but 2.0 maps it to psycopg2;
    naming the driver keeps behaviour (and the one driver we install and test) the same whatever
    SQLAlchemy version is present. An explicit other driver (``postgresql+psycopg2://``) is kept.
    Every connection runs ``SET jit = off`` (see :func:`_configure_postgresql_connection`); the
    pool keeps up to :data:`POSTGRESQL_POOL_SIZE` connections (and as many more for a burst).
    Secret query parameters (``?password=…``, see :func:`~cube_assets.redaction.is_secret_query_key`)
    are moved out of the engine's URL into the driver's connect arguments, so the URL the engine
    holds (and ``repr(engine)`` shows) carries no secret; the user-info password stays in the URL,
    where SQLAlchemy renders it as ``***``.

    JSON is serialized with sorted keys and without NaN, on both backends.

    Returns:
        A new ``Engine``; the caller disposes of it.

    Raises:
        CatalogError: naming the redacted URL (only its scheme when it cannot be parsed), if it
            cannot be parsed, has an unencoded ``@`` in its user info, names a database other
            than SQLite or PostgreSQL, or is a SQLite URL with a secret query parameter.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not chained, and only the scheme shown: the text may hold a password, and the parser's
        # message may quote a piece of it.
        raise CatalogError(
            f"catalog URL starting {_scheme_of(url)!r} cannot be parsed: expected sqlite:///PATH or "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (percent-encode '@', ':' and '/' in the password)"
        ) from None
    if parsed.host and "@" in parsed.host:
        # SQLAlchemy ends the password at its first "@": the rest would become the host name, and
        # the driver's "cannot resolve host" message would then quote part of the password.
        raise CatalogError(
            f"catalog URL {redact_url(url)[:200]!r}: the user name or password holds an unencoded '@'; write it as %40"
        )
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        parsed, secret_arguments = _split_secret_query(parsed)
        engine = create_engine(
            parsed,
            json_serializer=_json_dumps,
            connect_args=secret_arguments,
            pool_size=POSTGRESQL_POOL_SIZE,
            max_overflow=POSTGRESQL_POOL_SIZE,
        )
        event.listen(engine, "connect", _configure_postgresql_connection)
        event.listen(engine, "checkin", _note_idle)
        event.listen(engine, "checkout", _ping_after_idle)
        return engine
    if backend == "sqlite":
        if _split_secret_query(parsed)[1]:
            raise CatalogError(f"catalog URL {redact_url(parsed)[:200]!r}: SQLite takes no password, key or token")
        return _create_sqlite_engine(parsed)
    raise CatalogError(f"catalog URL {redact_url(parsed)[:200]!r}: only sqlite and postgresql are supported")


def _note_idle(dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_after_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Test a pooled connection that sat idle for :data:`PING_AFTER_IDLE_S` before handing it out.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip per search, about 8 % of
    a STAC API request. A connection used moments ago is handed out as it is; one that may have
    outlived a server restart or a firewall's idle timeout is tested, and replaced when dead.

    Raises:
        sqlalchemy.exc.DisconnectionError: when the ping fails (the pool then opens a new connection).
    """
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except psycopg.Error as exc:
        raise DisconnectionError(f"catalog connection idle for {time.monotonic() - since:.0f} s is gone") from exc


def _scheme_of(url: str | URL) -> str:
    """The text of ``url`` up to its first ``:`` when that looks like a URL scheme, else ``""``."""
    scheme, colon, _rest = str(url).partition(":")
    return f"{scheme}:" if colon and scheme.replace("+", "").isalnum() and len(scheme) <= 30 else ""


def _split_secret_query(url: URL) -> tuple[URL, dict[str, str]]:
    """``url`` without its secret query parameters, and those parameters (the last value of each)."""
    secret_keys = [key for key in url.query if is_secret_query_key(key)]
    if not secret_keys:
        return url, {}
    arguments = {}
    for key in secret_keys:
        value = url.query[key]
        arguments[key] = value[-1] if isinstance(value, tuple) else value
    return url.difference_update_query(secret_keys), arguments


def _configure_postgresql_connection(dbapi_connection: Any, connection_record: Any) -> None:
    """Switch off PostgreSQL's JIT compilation for the catalog's connections.

    JIT starts when a plan's estimated cost is high, and the planner assumes 100 to 1000 rows for
    every JSON set-returning function: the footprint test over GeoJSON
    (:mod:`cube_assets.catalog.footprints`) is estimated at millions, then spends seconds
    compiling to run in milliseconds. Catalog queries are short or index-only; none gains from JIT.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET jit = off")
    finally:
        cursor.close()
    dbapi_connection.commit()  # a plain SET inside a transaction would be undone by the pool's rollback


def _create_sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    on_disk = bool(database) and database != ":memory:" and not database.startswith("file:")
    if on_disk:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        _ensure_sqlite_wal(Path(database))
    engine = create_engine(url, json_serializer=_json_dumps, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    """Set the per-connection pragmas; the busy timeout comes first so every later statement waits for locks.

    ``journal_mode`` is not set here: WAL is a property of the file, set once by
    :func:`_ensure_sqlite_wal`, and asking for it on every connection takes a lock that can fail
    with "database is locked" without waiting.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _ensure_sqlite_wal(database: Path) -> None:
    """Put the SQLite file ``database`` in WAL mode once, creating it if missing.

    Processes that open a new catalog at the same moment are serialized by an exclusive
    ``flock`` on a lock file beside it, so exactly one of them switches the journal mode; the
    others find the file already in WAL mode. A lock that is still busy after the busy timeout is
    retried (:data:`SQLITE_LOCK_ATTEMPTS`).

    Raises:
        CatalogError: if the file cannot be put in WAL mode (named, with SQLite's reason).
    """
    if _sqlite_header_says_wal(database):
        return
    lock_path = database.with_name(database.name + ".lock")
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            _retry_when_locked(lambda: _set_wal(database), f"SQLite catalog {database}: setting journal_mode=WAL")
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _sqlite_header_says_wal(database: Path) -> bool:
    """Whether ``database`` is a SQLite file already in WAL mode, read from its header without a lock.

    Bytes 18 and 19 of the header (the file format's write and read versions) are 2 in WAL mode.
    """
    try:
        with open(database, "rb") as file:
            header = file.read(20)
    except FileNotFoundError:
        return False
    return len(header) == 20 and header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"


def _set_wal(database: Path) -> None:
    connection = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CatalogError(f"SQLite catalog {database}: journal_mode stayed {mode!r}, WAL is required")
    finally:
        connection.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    """Start a writing unit of work (see :func:`session_factory`) with ``BEGIN IMMEDIATE``.

    A deferred transaction that reads, then writes, fails at once with "database is locked" when
    another process committed in between (SQLite cannot wait for a snapshot that is already
    stale); taking the write lock up front makes the writer wait, with the busy timeout, instead.
    Reading connections keep the driver's deferred behaviour.
    """
    if not connection.get_execution_options().get(_WRITE_OPTION):
        return
    _retry_when_locked(
        lambda: connection.exec_driver_sql("BEGIN IMMEDIATE"),
        f"catalog {connection.engine.url.database}: BEGIN IMMEDIATE",
    )


def _retry_when_locked(action: Callable[[], object], what: str) -> None:
    """Run ``action``; when SQLite still reports a lock after its busy timeout, wait and try again.

    Raises:
        CatalogError: naming ``what`` after :data:`SQLITE_LOCK_ATTEMPTS` locked attempts.
        sqlite3.Error, sqlalchemy.exc.OperationalError: any other database error, unchanged.
    """
    for attempt in range(1, SQLITE_LOCK_ATTEMPTS + 1):
        try:
            action()
            return
        except (sqlite3.OperationalError, OperationalError) as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == SQLITE_LOCK_ATTEMPTS:
                raise CatalogError(
                    f"{what}: the database stayed locked through {SQLITE_LOCK_ATTEMPTS} waits of "
                    f"{SQLITE_BUSY_TIMEOUT_S:.0f} s"
                ) from exc
            time.sleep(min(0.05 * 2**attempt, 2.0))


class CatalogSessions(sessionmaker[Session]):
    """A ``sessionmaker`` whose :meth:`begin` starts a writing unit of work.

    ``factory()`` gives a session for reading; ``factory.begin()`` a session in a transaction that
    commits on success. On SQLite that transaction starts with ``BEGIN IMMEDIATE``, so concurrent
    writers (parallel Dagster steps, several processes) queue for the lock instead of failing.
    ``factory.single_statement()`` gives a session for one read statement: on PostgreSQL in
    autocommit, so the statement is its own transaction, without a ``BEGIN`` and a ``ROLLBACK``
    round trip around it.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(bind=engine, expire_on_commit=False)
        self._writer = sessionmaker(bind=engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False)
        self._single: sessionmaker[Session] = (
            sessionmaker(bind=engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
            if engine.dialect.name == "postgresql"
            else self
        )

    def single_statement(self) -> Session:
        """Return a new session for one read statement (autocommit on PostgreSQL)."""
        return self._single()

    def begin(self) -> contextlib.AbstractContextManager[Session]:
        """Return a context manager: a new session in a writing transaction, committed on success."""
        return self._writer.begin()


def session_factory(engine: Engine) -> CatalogSessions:
    """Return a session factory bound to ``engine`` (see :class:`CatalogSessions`).

    Sessions do not expire objects on commit, so images returned by a search stay readable after
    the session is closed (relationships not yet loaded then raise ``DetachedInstanceError``).

    Returns:
        The factory; use ``with factory.begin() as session:`` for a unit of work that writes.

    Raises:
        Nothing.
    """
    return CatalogSessions(engine)


def alembic_config() -> Config:
    """Return an Alembic ``Config`` for the catalog migrations, built in code (no ``alembic.ini``).

    Returns:
        The ``Config``, with ``script_location`` set to :data:`MIGRATIONS_DIR`.

    Raises:
        Nothing.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def _run_alembic(engine_or_url: Engine | str, action: str, revision: str, *, postgis: bool = True) -> None:
    engine = create_catalog_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with _ALEMBIC_LOCK, engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            config.attributes["postgis"] = postgis
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def upgrade_schema(engine_or_url: Engine | str, revision: str = "head", *, postgis: bool = True) -> None:
    """Bring the catalog schema up to ``revision`` (default: the latest) with the Alembic migrations.

    Safe to call at every start-up and from several threads or processes at once: already-applied
    revisions are skipped, and concurrent callers are serialized by a lock (a process-wide lock,
    then ``BEGIN IMMEDIATE`` on SQLite or an advisory lock on PostgreSQL; see ``migrations/env.py``).

    ``postgis`` matters on PostgreSQL, when migration 0004 runs: True (the default) gives the
    images a PostGIS footprint column if the extension is installed or can be created; False keeps
    the portable bounding-box path even where PostGIS exists. Searches give the same answers either
    way (see :mod:`cube_assets.catalog.footprints`); the choice is made once, by 0004.

    Returns:
        None.

    Raises:
        CatalogError: if the URL is not a supported catalog URL.
        alembic.util.CommandError: if ``revision`` is unknown.
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be reached or a migration fails.
    """
    _run_alembic(engine_or_url, "upgrade", revision, postgis=postgis)


def downgrade_schema(engine_or_url: Engine | str, revision: str = "base") -> None:
    """Take the catalog schema down to ``revision``; ``"base"`` drops every catalog table and its data.

    Returns:
        None.

    Raises:
        CatalogError: if the URL is not a supported catalog URL.
        alembic.util.CommandError: if ``revision`` is unknown.
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be reached or a migration fails.
    """
    _run_alembic(engine_or_url, "downgrade", revision)


def postgis_footprint_schema(engine: Engine) -> str | None:
    """Return the schema of PostGIS if this catalog's images have the footprint column of migration 0004.

    The column ``images.footprint`` (``geometry(Geometry, 4326)``) exists only on PostgreSQL
    databases where 0004 found PostGIS; searches then use ``ST_Intersects`` on it, qualified with
    this schema (the catalog's ``search_path`` need not include it).

    Returns:
        The schema name (e.g. ``"public"``), or None on SQLite, without PostGIS, or before 0004.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be reached.
    """
    if engine.dialect.name != "postgresql":
        return None
    query = text(
        "SELECT n.nspname FROM pg_attribute AS a"
        " JOIN pg_type AS t ON t.oid = a.atttypid JOIN pg_namespace AS n ON n.oid = t.typnamespace"
        " WHERE a.attrelid = to_regclass('images') AND a.attname = 'footprint' AND NOT a.attisdropped"
        " AND t.typname = 'geometry'"
    )
    with engine.connect() as connection:
        schema = connection.execute(query).scalar()
    return None if schema is None else str(schema)
