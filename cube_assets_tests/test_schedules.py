"""The blend schedule's rule, evaluated with ``build_schedule_context`` on a real (temporary) instance.

Materializations are reported to the instance as events (no raster work): the rule only
reads which partitions were materialized, and in what order. The schedule running under a
real daemon, launching and completing a blend run, is tested in ``test_backfill_cli.py``
(it shares that module's daemon).
"""

from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterRunStatus,
    build_schedule_context,
    instance_for_test,
)
from dagster._core.test_utils import create_run_for_test

from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import InvalidCubeConfig
from cube_assets.schedules import (
    BLEND_STAGES,
    AutomationSettings,
    blend_schedule_name,
    build_blend_schedule,
    ended_period_keys,
    ready_blend_partitions,
)
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

# Two tiles and two 16-day periods: 2024-01-01 (ends 2024-01-17) and 2024-01-17 (ends 2024-02-02).
CUBE = {**SMALL_CUBE, "tiles": ["000000", "001000"], "end_date": "2024-01-31"}
FIRST, SECOND = "2024-01-01|000000", "2024-01-17|000000"
AFTER_FIRST = datetime(2024, 1, 23, tzinfo=UTC)  # first period ended 6 days ago, second still running
DELAY = timedelta(days=5)


@pytest.fixture
def config(tmp_path):
    return write_cube_file(tmp_path, CUBE, [SMALL_SIMULATOR])


@pytest.fixture
def cube(config):
    return load_project_config(config).cube("small")


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def _materialized(instance, stage: str, partition: str) -> None:
    instance.report_runless_asset_event(AssetMaterialization(AssetKey(["small", stage]), partition=partition))


def _tick(config, instance, when: datetime):
    """Evaluate the schedule of the project's ``Definitions`` (which checks the requested partition keys)."""
    defs = build_definitions(config, config.parent / "data", automation=AutomationSettings(late_scene_delay=DELAY))
    schedule = defs.resolve_schedule_def(blend_schedule_name("small"))
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context)


def test_a_merged_period_is_blended_once_it_ended_plus_the_delay(config, instance):
    for key in (FIRST, SECOND):
        _materialized(instance, "raw_scene", key)
        _materialized(instance, "tile_merge", key)
    too_early = _tick(config, instance, datetime(2024, 1, 21, 23, tzinfo=UTC))  # ended 4 days 23 h ago
    assert too_early.run_requests == [] and "no (tile, period)" in too_early.skip_message
    (request,) = _tick(config, instance, AFTER_FIRST).run_requests
    assert request.partition_key == FIRST
    assert request.asset_selection == [AssetKey(["small", stage]) for stage in BLEND_STAGES]
    assert request.tags["cube_assets/trigger"] == "blend_schedule"


def test_the_delay_for_late_scenes_is_configurable(cube):
    assert ended_period_keys(cube, datetime(2024, 1, 17, tzinfo=UTC), timedelta(0)) == ["2024-01-01"]
    assert ended_period_keys(cube, datetime(2024, 1, 17, tzinfo=UTC), timedelta(hours=1)) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        ended_period_keys(cube, datetime(2024, 1, 17), timedelta(0))


def test_a_partition_without_merges_or_with_unmerged_scenes_waits(cube, instance):
    _materialized(instance, "raw_scene", FIRST)  # scenes fetched, not merged yet
    assert ready_blend_partitions(instance, cube, AFTER_FIRST, DELAY) == {}
    _materialized(instance, "tile_merge", FIRST)
    _materialized(instance, "raw_scene", FIRST)  # a late scene fetched after that merge
    assert ready_blend_partitions(instance, cube, AFTER_FIRST, DELAY) == {}
    _materialized(instance, "tile_merge", FIRST)
    assert list(ready_blend_partitions(instance, cube, AFTER_FIRST, DELAY)) == [FIRST]


def test_a_catalogued_partition_is_blended_again_only_after_a_new_merge(config, instance):
    _materialized(instance, "tile_merge", FIRST)
    first_request = _tick(config, instance, AFTER_FIRST).run_requests[0]
    for stage in BLEND_STAGES:
        _materialized(instance, stage, FIRST)
    assert _tick(config, instance, AFTER_FIRST).run_requests == []
    _materialized(instance, "tile_merge", FIRST)  # the new-scene sensor re-merged the period
    (again,) = _tick(config, instance, AFTER_FIRST).run_requests
    assert again.partition_key == FIRST
    assert again.run_key != first_request.run_key  # the run key names the merge it blends


def test_a_partition_with_a_run_in_progress_waits(cube, instance):
    _materialized(instance, "tile_merge", FIRST)
    run = create_run_for_test(
        instance, job_name="small_job", status=DagsterRunStatus.STARTED, tags={"dagster/partition": FIRST}
    )
    assert ready_blend_partitions(instance, cube, AFTER_FIRST, DELAY) == {}
    instance.report_run_failed(run)
    assert list(ready_blend_partitions(instance, cube, AFTER_FIRST, DELAY)) == [FIRST]


def test_schedule_name_cron_and_default_status(cube):
    schedule = build_blend_schedule(cube, cron_schedule="0 6 * * *")
    assert schedule.name == blend_schedule_name("small") == "small_blend_schedule"
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status.value == "STOPPED"


def test_automation_settings_come_from_the_environment():
    settings = AutomationSettings.from_environment(
        {
            "CUBE_ASSETS_BLEND_CRON": "*/5 * * * *",
            "CUBE_ASSETS_LATE_SCENE_DELAY_HOURS": "36",
            "CUBE_ASSETS_SENSOR_INTERVAL_S": "600",
        }
    )
    assert settings == AutomationSettings(600, "*/5 * * * *", timedelta(hours=36))
    assert AutomationSettings.from_environment({}) == AutomationSettings()
    with pytest.raises(InvalidCubeConfig, match="CUBE_ASSETS_LATE_SCENE_DELAY_HOURS='soon'"):
        AutomationSettings.from_environment({"CUBE_ASSETS_LATE_SCENE_DELAY_HOURS": "soon"})
    with pytest.raises(InvalidCubeConfig, match="CUBE_ASSETS_BLEND_CRON='hourly'"):
        AutomationSettings.from_environment({"CUBE_ASSETS_BLEND_CRON": "hourly"})
