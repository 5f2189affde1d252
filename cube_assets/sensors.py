"""New-scene sensors: one per cube, polling its providers and requesting runs up to the merge.

Each tick searches every provider of the cube for scenes of its collection (in a cube with
``sources``, every source's providers for that source's collection) over the cube's
tiles acquired since the cursor (the latest acquisition seen), then requests one run per
``(tile, period)`` partition that a new scene falls into, materializing ``raw_scene`` →
``surface_reflectance`` → ``scene_cog`` → ``tile_merge`` for it.

Why partitions rather than new dynamic partitions per date: every stage is partitioned by
tile × period, both static (see ``cube_assets.partitions``), so a new acquisition date never
adds a partition; it falls into one that already exists. The sensor re-runs that partition's
stages up to the merge, which fetches every scene of the period (scenes already in the raw
store are reused) and re-merges each of its dates. The blend and the catalog item wait until
the period is over (``cube_assets.schedules``).

The cursor is JSON: ``{"latest_acquisition": ISO datetime, "scene_ids": [...]}``, the newest
acquisition time seen and the scenes acquired at exactly that time. The next tick searches
from that time on (inclusive) and ignores those scene ids, so two scenes with the same
acquisition time (adjacent tiles of one orbit) are both found even when they are published
on different ticks. A scene published after a *later* acquisition was already seen is not
found by the cursor; the period is merged again when the blend schedule or a backfill runs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from pyproj import Transformer
from shapely.geometry import box

from cube_assets.cube_config import CubeConfig, load_project_config
from cube_assets.errors import ProviderError
from cube_assets.partitions import partition_key
from cube_assets.providers.base import Provider, SceneRef
from cube_assets.resources.providers import ProvidersResource

# The stages a new scene makes stale, in order: up to and including the merge.
STAGES_UP_TO_MERGE = ("raw_scene", "surface_reflectance", "scene_cog", "tile_merge")
DEFAULT_POLL_INTERVAL_S = 3600
TRIGGER_TAG = "cube_assets/trigger"


def new_scenes_sensor_name(cube_name: str) -> str:
    """Name of the new-scene sensor of ``cube_name``."""
    return f"{cube_name}_new_scenes"


@dataclass(frozen=True)
class SceneCursor:
    """What the sensor has seen: the latest acquisition time and the scenes acquired at that time."""

    latest_acquisition: datetime | None = None
    scene_ids: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> SceneCursor:
        """Return the cursor stored as ``text`` (``None`` or empty: nothing seen yet).

        Raises:
            ValueError: when ``text`` is not a cursor this module wrote.
        """
        if not text:
            return cls()
        try:
            document = json.loads(text)
            latest = datetime.fromisoformat(document["latest_acquisition"])
            ids = frozenset(str(i) for i in document["scene_ids"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"sensor cursor {text!r} is not a scene cursor: {exc}") from exc
        if latest.tzinfo is None:
            raise ValueError(f"sensor cursor {text!r}: latest_acquisition has no timezone")
        return cls(latest.astimezone(UTC), ids)

    def to_json(self) -> str:
        """The cursor as the JSON text stored by Dagster."""
        return json.dumps(
            {
                "latest_acquisition": self.latest_acquisition.isoformat() if self.latest_acquisition else None,
                "scene_ids": sorted(self.scene_ids),
            }
        )

    def is_new(self, scene: SceneRef) -> bool:
        """Whether ``scene`` was not seen yet: acquired after the latest acquisition, or at it under another id."""
        if self.latest_acquisition is None or scene.datetime > self.latest_acquisition:
            return True
        return scene.datetime == self.latest_acquisition and scene.scene_id not in self.scene_ids

    def advanced(self, scenes: Iterable[SceneRef]) -> SceneCursor:
        """Return the cursor after seeing ``scenes`` as well."""
        latest, ids = self.latest_acquisition, set(self.scene_ids)
        for scene in scenes:
            if latest is None or scene.datetime > latest:
                latest, ids = scene.datetime, {scene.scene_id}
            elif scene.datetime == latest:
                ids.add(scene.scene_id)
        return SceneCursor(latest, frozenset(ids))


def search_new_scenes(cube: CubeConfig, providers: Sequence[Provider], cursor: SceneCursor) -> list[SceneRef]:
    """Search every provider for scenes of ``cube`` not seen by ``cursor``.

    The search covers the bounding box of the cube's tiles, from the cursor's latest
    acquisition (or the cube's first period) to the end of its last period, with the cube's
    ``max_cloud_cover``; a scene offered by several providers is returned once.

    Returns:
        The new scenes, sorted by acquisition time then scene id.

    Raises:
        ProviderError: when every provider's search fails (one failing provider among others
            that answer is tolerated, as ``raw_scene`` does).
    """
    start = cursor.latest_acquisition or datetime.combine(cube.periods[0].start, time(), tzinfo=UTC)
    end = datetime.combine(cube.periods[-1].end, time(), tzinfo=UTC)
    if start >= end:
        return []
    area = box(*_tiles_bounds_4326(cube))
    found: dict[str, SceneRef] = {}
    errors = []
    for provider in providers:
        try:
            scenes = provider.search(cube.collection, area, start, end, cube.max_cloud_cover)
        except ProviderError as exc:
            errors.append(f"{provider.name}: {exc}")
            continue
        for scene in scenes:
            if cursor.is_new(scene):
                found.setdefault(scene.scene_id, scene)
    if errors and len(errors) == len(providers):
        raise ProviderError(f"cube {cube.name}: every provider failed to search: {'; '.join(errors)}")
    return sorted(found.values(), key=lambda s: (s.datetime, s.scene_id))


def partitions_of_scenes(cube: CubeConfig, scenes: Iterable[SceneRef]) -> dict[str, list[SceneRef]]:
    """Group ``scenes`` by the ``(tile, period)`` partitions they fall into.

    A scene belongs to every cube tile its footprint intersects, in the period containing its
    acquisition date (UTC); scenes outside the cube's tiles or periods belong to none.

    Returns:
        ``{partition key "{period}|{tile}": [scenes]}``.
    """
    tile_names = {tile.name for tile in cube.tile_list}
    grid = cube.grid_definition
    periods = {period.key for period in cube.periods}
    grouped: dict[str, list[SceneRef]] = {}
    for scene in scenes:
        if scene.datetime.date() < cube.start_date:
            continue
        period = cube.temporal.period_of(scene.datetime, anchor=cube.start_date)
        if period.key not in periods:
            continue
        for tile in grid.tiles_intersecting(scene.footprint, "EPSG:4326"):
            if tile.name in tile_names:
                grouped.setdefault(str(partition_key(tile.name, period.key)), []).append(scene)
    return grouped


def _tiles_bounds_4326(cube: CubeConfig) -> tuple[float, float, float, float]:
    """The lon/lat bounds of the extent of the cube's tiles (edges densified, so curved edges are covered)."""
    bounds = [tile.bounds for tile in cube.tile_list]
    minx, miny = min(b[0] for b in bounds), min(b[1] for b in bounds)
    maxx, maxy = max(b[2] for b in bounds), max(b[3] for b in bounds)
    to_4326 = Transformer.from_crs(cube.grid_definition.crs, "EPSG:4326", always_xy=True)
    return to_4326.transform_bounds(minx, miny, maxx, maxy, densify_pts=64)


def _run_key(partition: str, scenes: Sequence[SceneRef]) -> str:
    digest = hashlib.sha256("\n".join(sorted(s.scene_id for s in scenes)).encode()).hexdigest()[:16]
    return f"{partition}:{digest}"


def build_new_scenes_sensor(
    cube: CubeConfig, minimum_interval_seconds: int = DEFAULT_POLL_INTERVAL_S
) -> SensorDefinition:
    """Return the sensor that requests runs up to ``tile_merge`` for partitions with new scenes.

    The sensor is stopped by default (start it in the UI or with ``dagster sensor start``);
    it uses the ``providers`` resource to build the cube's providers.
    """
    stage_keys = [AssetKey([cube.name, stage]) for stage in STAGES_UP_TO_MERGE]

    @sensor(
        name=new_scenes_sensor_name(cube.name),
        minimum_interval_seconds=minimum_interval_seconds,
        target=stage_keys,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"Polls the providers of cube {cube.name} for new scenes over its tiles and requests the "
            "(tile, period) partitions they fall into, up to tile_merge."
        ),
    )
    def new_scenes(context: SensorEvaluationContext, providers: ProvidersResource) -> SensorResult | SkipReason:
        cursor = SceneCursor.parse(context.cursor)
        project = load_project_config(providers.config_file)
        found_by_id: dict[str, SceneRef] = {}
        for _, view in cube.source_views():  # each source's collection (the cube's own without sources)
            # The source's own providers, or the provider registry's for its collection.
            built = [providers.build_provider(config) for config in providers.cube_provider_configs(project, view)]
            for scene in search_new_scenes(view, built, cursor):
                found_by_id.setdefault(scene.scene_id, scene)
        scenes = sorted(found_by_id.values(), key=lambda s: (s.datetime, s.scene_id))
        if not scenes:
            return SkipReason(f"no scene acquired since {cursor.latest_acquisition or 'the cube start'}")
        by_partition = partitions_of_scenes(cube, scenes)
        requests = [
            RunRequest(
                run_key=_run_key(key, found),
                partition_key=key,
                asset_selection=stage_keys,
                tags={TRIGGER_TAG: "new_scenes", "cube_assets/new_scene_count": str(len(found))},
            )
            for key, found in sorted(by_partition.items())
        ]
        context.log.info(f"{len(scenes)} new scene(s), {len(requests)} partition(s) to merge")
        return SensorResult(run_requests=requests, cursor=cursor.advanced(scenes).to_json())

    return new_scenes
