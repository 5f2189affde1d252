"""Blend schedules: one per cube, building each period's blend and catalog item once it is over.

A ``(tile, period)`` partition is *ready* when, at the tick's time:

* the period has ended, plus a delay for late scenes (``late_scene_delay``, 5 days by default:
  scenes are often published days after acquisition, and the new-scene sensor re-merges a
  period when one arrives);
* its ``tile_merge`` partition has been materialized, and not before its latest
  ``raw_scene`` materialization (every fetched scene has been merged: the merges of every
  acquisition date of the period exist);
* its ``catalog_item`` is missing or older than that merge (a re-merged period is blended
  and catalogued again);
* no queued or running run of the cube is working on that partition.

Each tick requests one run per ready partition, materializing ``period_blend`` and
``catalog_item`` (and their checks). The run key names the partition and the merge's
materialization, so a tick never requests the same blend twice, and a failed blend is not
retried by every tick (re-run it from the UI, or re-merge the period).

This is a schedule rather than declarative automation: the rule depends on the tick's time
compared with each partition's period, which Dagster's built-in automation conditions only
express for time-window partitions, and our periods are one dimension of a static
multi-partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._utils.schedules import is_valid_cron_string

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidCubeConfig
from cube_assets.partitions import split_partition_key

BLEND_STAGES = ("period_blend", "catalog_item")
DEFAULT_LATE_SCENE_DELAY = timedelta(days=5)
DEFAULT_BLEND_CRON = "15 * * * *"  # hourly, a quarter past
TRIGGER_TAG = "cube_assets/trigger"
_UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
_PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class AutomationSettings:
    """How often the sensors poll, when the blend schedule ticks, and how long it waits for late scenes."""

    new_scene_poll_interval_s: int = 3600
    blend_cron: str = DEFAULT_BLEND_CRON
    late_scene_delay: timedelta = DEFAULT_LATE_SCENE_DELAY

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> AutomationSettings:
        """Read ``CUBE_ASSETS_SENSOR_INTERVAL_S``, ``CUBE_ASSETS_BLEND_CRON`` and
        ``CUBE_ASSETS_LATE_SCENE_DELAY_HOURS`` from ``environ``; unset ones keep their defaults.

        Raises:
            InvalidCubeConfig: naming the variable when a value is not a valid number or cron string.
        """
        defaults = cls()
        interval = _number(environ, "CUBE_ASSETS_SENSOR_INTERVAL_S", defaults.new_scene_poll_interval_s)
        delay_hours = _number(
            environ, "CUBE_ASSETS_LATE_SCENE_DELAY_HOURS", defaults.late_scene_delay.total_seconds() / 3600
        )
        if interval <= 0 or interval != int(interval):
            raise InvalidCubeConfig(
                f"CUBE_ASSETS_SENSOR_INTERVAL_S={interval!r}: must be a positive whole number of seconds"
            )
        if delay_hours < 0:
            raise InvalidCubeConfig(f"CUBE_ASSETS_LATE_SCENE_DELAY_HOURS={delay_hours!r}: must not be negative")
        cron = environ.get("CUBE_ASSETS_BLEND_CRON") or defaults.blend_cron
        if not is_valid_cron_string(cron):
            raise InvalidCubeConfig(f"CUBE_ASSETS_BLEND_CRON={cron!r}: not a cron schedule such as '15 * * * *'")
        return cls(int(interval), cron, timedelta(hours=delay_hours))


def _number(environ: Mapping[str, str], variable: str, default: float) -> float:
    """The number in ``environ[variable]``, or ``default`` when unset or empty."""
    text = environ.get(variable)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidCubeConfig(f"{variable}={text!r}: not a number") from None


def blend_schedule_name(cube_name: str) -> str:
    """Name of the blend schedule of ``cube_name``."""
    return f"{cube_name}_blend_schedule"


def ended_period_keys(cube: CubeConfig, now: datetime, late_scene_delay: timedelta) -> list[str]:
    """Return the keys of the cube's periods whose end plus ``late_scene_delay`` is at or before ``now``.

    Raises:
        ValueError: when ``now`` has no timezone.
    """
    if now.tzinfo is None:
        raise ValueError(f"blend schedule time {now!r} must be timezone-aware")
    return [
        period.key
        for period in cube.periods
        if datetime.combine(period.end, time(), tzinfo=UTC) + late_scene_delay <= now
    ]


def unfinished_partitions(instance: DagsterInstance, cube: CubeConfig) -> set[str]:
    """Return the partition keys of the cube's queued or running runs.

    A run is the cube's when it selects one of the cube's merge or blend stages, or (without a
    selection) is the cube's job.
    """
    cube_keys = {AssetKey([cube.name, stage]) for stage in ("raw_scene", "tile_merge", *BLEND_STAGES)}
    busy = set()
    for run in instance.get_runs(filters=RunsFilter(statuses=_UNFINISHED)):
        if run.asset_selection is not None:
            if not set(run.asset_selection) & cube_keys:
                continue
        elif run.job_name != f"{cube.name}_job":  # a whole-job run: the cube's own job (definitions.cube_job_name)
            continue
        if _PARTITION_TAG in run.tags:
            busy.add(run.tags[_PARTITION_TAG])
    return busy


def ready_blend_partitions(
    instance: DagsterInstance,
    cube: CubeConfig,
    now: datetime,
    late_scene_delay: timedelta = DEFAULT_LATE_SCENE_DELAY,
) -> dict[str, int]:
    """Return the partitions whose blend is due (rules in the module docstring).

    Returns:
        ``{partition key: storage id of its latest tile_merge materialization}``, in key order.
    """
    ended = set(ended_period_keys(cube, now, late_scene_delay))
    if not ended:
        return {}

    def latest(stage: str) -> Mapping[str, int]:
        return instance.get_latest_storage_id_by_partition(
            AssetKey([cube.name, stage]), DagsterEventType.ASSET_MATERIALIZATION
        )

    merges, raws, catalogued = latest("tile_merge"), latest("raw_scene"), latest("catalog_item")
    busy = unfinished_partitions(instance, cube)
    tiles = {tile.name for tile in cube.tile_list}
    ready = {}
    for key, merge_id in sorted(merges.items()):
        tile, period = split_partition_key(key)
        if (
            period in ended
            and tile in tiles
            and raws.get(key, -1) <= merge_id
            and catalogued.get(key, -1) < merge_id
            and key not in busy
        ):
            ready[key] = merge_id
    return ready


def build_blend_schedule(
    cube: CubeConfig,
    late_scene_delay: timedelta = DEFAULT_LATE_SCENE_DELAY,
    cron_schedule: str = DEFAULT_BLEND_CRON,
) -> ScheduleDefinition:
    """Return the schedule that builds ``period_blend`` and ``catalog_item`` of every ready partition.

    Stopped by default (start it in the UI or with ``dagster schedule start``).
    """
    stage_keys = [AssetKey([cube.name, stage]) for stage in BLEND_STAGES]

    @schedule(
        cron_schedule=cron_schedule,
        name=blend_schedule_name(cube.name),
        target=stage_keys,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Blends and catalogs each (tile, period) of cube {cube.name} whose merges are all built, once "
            f"the period has ended plus {late_scene_delay} for late scenes."
        ),
    )
    def blend_schedule(context: ScheduleEvaluationContext):
        now = context.scheduled_execution_time or datetime.now(UTC)
        ready = ready_blend_partitions(context.instance, cube, now, late_scene_delay)
        if not ready:
            return SkipReason(f"no (tile, period) of {cube.name} is ready to blend at {now.isoformat()}")
        return [
            RunRequest(
                run_key=f"{key}:merge-{merge_id}",
                partition_key=key,
                asset_selection=stage_keys,
                tags={TRIGGER_TAG: "blend_schedule"},
            )
            for key, merge_id in ready.items()
        ]

    return blend_schedule


__all__ = [
    "AutomationSettings",
    "BLEND_STAGES",
    "DEFAULT_BLEND_CRON",
    "DEFAULT_LATE_SCENE_DELAY",
    "blend_schedule_name",
    "build_blend_schedule",
    "ended_period_keys",
    "ready_blend_partitions",
]
