"""The production instance (``deploy/dagster.yaml``) loaded against a real PostgreSQL server.

The server is the one the test fixtures start; each test gets a fresh database, which
dagster-postgres migrates on first use. A run's events are then read back with plain SQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, asset, materialize
from sqlalchemy import create_engine, text

from cube_assets_tests.conftest import REPO_ROOT
from cube_assets_tests.fixtures_postgres import PostgresServer

DEPLOY_INSTANCE = REPO_ROOT / "deploy" / "dagster.yaml"


@pytest.fixture(scope="module")
def production_instance(
    postgresql_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DagsterInstance, str]]:
    """``deploy/dagster.yaml`` in a temporary DAGSTER_HOME, its DAGSTER_PG_* variables pointing at a new database.

    One instance for the module: dagster-postgres takes ~2 s to create its tables in a new database.
    """
    database = postgresql_server.create_database("dagster")
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_PG_HOST", postgresql_server.host)
        patch.setenv("DAGSTER_PG_PORT", str(postgresql_server.port))
        patch.setenv("DAGSTER_PG_DB", database)
        patch.setenv("DAGSTER_PG_USERNAME", postgresql_server.username)
        patch.setenv("DAGSTER_PG_PASSWORD", postgresql_server.password or "unused-with-trust-authentication")
        instance = DagsterInstance.from_config(str(home))
        try:
            yield instance, postgresql_server.database_url(database)
        finally:
            instance.dispose()
            postgresql_server.drop_database(database)


def test_production_instance_keeps_runs_events_and_schedules_in_postgresql(production_instance) -> None:
    instance, _ = production_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert "postgresql+psycopg2://" in instance.run_storage.postgres_url


def test_production_instance_queues_runs_with_concurrency_limits(production_instance) -> None:
    instance, _ = production_instance
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 8
    limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
    assert limits["dagster/partition"] == {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert limits["dagster/backfill"]["limit"] == 6
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
    assert instance.run_monitoring_enabled
    assert instance.run_retries_max_retries == 1


def test_a_runs_events_land_in_the_postgresql_database(production_instance) -> None:
    instance, database_url = production_instance

    @asset(key=["smoke", "value"])
    def value() -> int:
        return 42

    result = materialize([value], instance=instance)

    assert result.success
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            status = connection.execute(
                text("SELECT status FROM runs WHERE run_id = :id"), {"id": result.run_id}
            ).scalar_one()
            event_types = set(
                connection.execute(
                    text("SELECT dagster_event_type FROM event_logs WHERE run_id = :id"),
                    {"id": result.run_id},
                ).scalars()
            )
            asset_keys = set(connection.execute(text("SELECT asset_key FROM asset_keys")).scalars())
    finally:
        engine.dispose()
    assert status == "SUCCESS"
    expected = {
        DagsterEventType.RUN_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.RUN_SUCCESS,
    }
    assert {event_type.value for event_type in expected} <= event_types
    assert AssetKey(["smoke", "value"]).to_string() in asset_keys
    # And the instance reads them back from there.
    assert instance.get_latest_materialization_event(AssetKey(["smoke", "value"])).run_id == result.run_id
