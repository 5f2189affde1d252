"""Alembic environment of the catalog schema.

Two ways in:

* programmatic (the normal one): :func:`cube_assets.catalog.database.upgrade_schema` builds an
  Alembic ``Config`` in code and passes an open connection in ``config.attributes["connection"]``;
* command line: ``alembic -c cube_assets/catalog/migrations/alembic.ini -x url=... upgrade head``;
  the engine is then made with :func:`cube_assets.catalog.database.create_catalog_engine`, so it
  gets the same SQLite pragmas and PostgreSQL driver as the package.

All pending revisions run in one transaction that first takes a lock, so several processes that
call ``upgrade_schema`` at once apply each revision exactly once: ``BEGIN IMMEDIATE`` on SQLite
(the database write lock), a transaction-scoped advisory lock on PostgreSQL. On SQLite, foreign
keys are switched off while migrating (batch mode copies and drops tables, and dropping a parent
table would otherwise cascade-delete child rows) and checked with ``PRAGMA foreign_key_check``
before commit.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from cube_assets.catalog.database import VERSION_TABLE, create_catalog_engine
from cube_assets.catalog.models import Base, is_modelled
from cube_assets.errors import CatalogError
from cube_assets.providers import registry_models  # noqa: F401 - registers the registry tables on Base.metadata

#: Key of the PostgreSQL advisory lock held while migrating (arbitrary, fixed, 63-bit).
MIGRATION_LOCK_KEY = 0x6375_6265_6361_74  # "cubecat"

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    """Run the pending migrations on ``connection`` in one locked transaction.

    Raises:
        CatalogError: if, on SQLite, the migrated data violates a foreign key.
    """
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        # Must run outside a transaction to take effect.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            version_table=VERSION_TABLE,
            # SQLite DDL is transactional too; one transaction makes the lock below cover everything.
            transactional_ddl=True,
            compare_type=True,
            # The R*Tree (SQLite) and the PostGIS footprint (0004) exist outside the models.
            include_name=is_modelled,
        )
        with context.begin_transaction():
            if is_sqlite:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
            if is_sqlite:
                violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if violations:
                    raise CatalogError(f"catalog migration broke foreign keys: {violations[:10]}")
    finally:
        if is_sqlite:
            connection.rollback()  # no-op after a commit; needed to leave any failed transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def run_migrations_offline() -> None:
    """Emit the migration SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(
        url=_cli_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        version_table=VERSION_TABLE,
        include_name=is_modelled,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection passed in by ``upgrade_schema``, or on ``-x url=``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_catalog_engine(_cli_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _cli_url() -> str:
    """Return the database URL given on the command line (``-x url=...``) or in ``alembic.ini``.

    Raises:
        CatalogError: if neither gives one.
    """
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise CatalogError("no catalog URL: pass -x url=... or set sqlalchemy.url in alembic.ini")
    return url


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
