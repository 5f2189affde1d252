"""What every scene provider offers: search a collection, then fetch a scene to local disk.

A provider (local archive, STAC API, object store…) answers :meth:`Provider.search` with
:class:`SceneRef` values, lightweight references that are cheap to list and compare, and
turns one into a local product folder with :meth:`Provider.fetch`. The search rules are the
same everywhere and live in :func:`select_scenes`:

* geometries are shapely geometries in EPSG:4326 with (lon, lat) axis order;
* a scene matches when its footprint intersects the geometry;
* the time window is half-open: ``start <= datetime < end``, both timezone-aware;
* with ``max_cloud_cover`` only scenes with a known cloud cover ``<=`` that percentage match;
* results are sorted by datetime, then scene id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shapely.geometry.base import BaseGeometry

from cube_assets.errors import ProviderError

SENTINEL2_L2A = "sentinel-2-l2a"
SENTINEL2_L1C = "sentinel-2-l1c"


@dataclass(frozen=True)
class SceneRef:
    """A reference to one scene a provider can deliver.

    ``datetime`` is the acquisition time in UTC; ``footprint`` the area with data, in
    EPSG:4326 (lon, lat); ``cloud_cover`` a percentage (``None`` when unknown); ``href`` where
    the provider finds the product (a local path or a URL); ``properties`` anything else the
    provider knows (tile, processing baseline, band files…).
    """

    provider: str
    collection: str
    scene_id: str
    datetime: datetime
    footprint: BaseGeometry
    cloud_cover: float | None
    href: str
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.datetime.tzinfo is None:
            raise ProviderError(f"{self.scene_id}: scene datetime {self.datetime} has no timezone")
        object.__setattr__(self, "datetime", self.datetime.astimezone(UTC))
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))


class Provider(ABC):
    """A source of scenes: searchable by collection, area, time and cloud cover; fetchable."""

    name: str

    @abstractmethod
    def search(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[SceneRef]:
        """Scenes of ``collection`` intersecting ``geometry`` with ``start <= datetime < end``.

        Returns:
            Matching scenes sorted by datetime, then scene id (see :func:`select_scenes`).

        Raises:
            ProviderError: if the arguments are invalid or the provider cannot be searched.
        """

    @abstractmethod
    def fetch(self, scene: SceneRef, destination_dir: Path) -> Path:
        """Make ``scene`` available as a local product folder inside ``destination_dir``.

        Returns:
            The local product path.

        Raises:
            ProviderError: if the scene is not this provider's or cannot be delivered.
        """


def check_search_arguments(geometry: BaseGeometry, start: datetime, end: datetime, where: str) -> None:
    """Validate a search window and area.

    Raises:
        ProviderError: if ``start``/``end`` are naive or ``end < start``, or ``geometry`` is
            empty, not a shapely geometry, or has coordinates outside lon/lat ranges (a sign
            it is in a projected CRS).
    """
    for label, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ProviderError(f"{where}: search {label} {value!r} must be a timezone-aware datetime")
    if end < start:
        raise ProviderError(f"{where}: search end {end.isoformat()} is before start {start.isoformat()}")
    if not isinstance(geometry, BaseGeometry) or geometry.is_empty:
        raise ProviderError(f"{where}: search geometry must be a non-empty shapely geometry, got {geometry!r}")
    minx, miny, maxx, maxy = geometry.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise ProviderError(
            f"{where}: search geometry bounds {geometry.bounds} are not lon/lat degrees (EPSG:4326 expected)"
        )


def select_scenes(
    scenes: Iterable[SceneRef],
    *,
    collection: str,
    geometry: BaseGeometry,
    start: datetime,
    end: datetime,
    max_cloud_cover: float | None = None,
) -> list[SceneRef]:
    """Apply the common search rules (module docstring) to candidate scenes.

    Returns:
        The matching scenes sorted by ``(datetime, scene_id)``.
    """
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    selected = [
        scene
        for scene in scenes
        if scene.collection == collection
        and start_utc <= scene.datetime < end_utc
        and (max_cloud_cover is None or (scene.cloud_cover is not None and scene.cloud_cover <= max_cloud_cover))
        and scene.footprint.intersects(geometry)
    ]
    return sorted(selected, key=lambda scene: (scene.datetime, scene.scene_id))
