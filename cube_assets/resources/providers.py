"""The providers resource: builds the configured providers and fetches a partition's scenes."""

from __future__ import annotations

from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from shapely.geometry import mapping

from cube_assets.cube_config import CubeConfig, ProviderConfig, load_project_config
from cube_assets.grids import Tile
from cube_assets.providers.base import Provider
from cube_assets.providers.chain import search_and_fetch
from cube_assets.providers.local import LocalArchiveProvider
from cube_assets.providers.simulator import SimulatorProvider, simulated_scenes
from cube_assets.temporal import Period


class ProvidersResource(ConfigurableResource):
    """Scene providers declared in the cube file; raw products are kept under ``{data_root}/raw``."""

    config_file: str
    data_root: str

    def build_provider(self, config: ProviderConfig) -> Provider:
        """Return the provider ``config`` describes (relative paths are under ``data_root``)."""
        root = Path(self.data_root)
        if config.driver == "simulator":
            archive = root / config.options.get("archive", "archive")
            return SimulatorProvider(archive, simulated_scenes(config.options), name=config.name)
        return LocalArchiveProvider(root / config.options["root"], name=config.name)

    def fetch_scenes(self, cube: CubeConfig, tile: Tile, period: Period) -> list[dict[str, Any]]:
        """Find and fetch every scene of ``cube``'s collection over ``tile`` during ``period``.

        Returns:
            JSON-able scene entries (id, collection, datetime, provider, local path, cloud
            cover, footprint GeoJSON), sorted by datetime.

        Raises:
            ProviderError: when no provider can search, or a scene cannot be delivered.
        """
        project = load_project_config(self.config_file)
        providers = [self.build_provider(project.provider(name)) for name in cube.providers]
        start = datetime.combine(period.start, time(), tzinfo=timezone.utc)
        end = datetime.combine(period.end, time(), tzinfo=timezone.utc)
        raw_dir = Path(self.data_root) / "raw" / cube.collection
        raw_dir.mkdir(parents=True, exist_ok=True)
        fetched = search_and_fetch(providers, cube.collection, tile.geometry_4326, start, end, raw_dir, cube.max_cloud_cover)
        return [
            {
                "scene_id": f.scene.scene_id,
                "collection": f.scene.collection,
                "datetime": f.scene.datetime.isoformat(),
                "provider": f.provider,
                "path": str(f.path),
                "cloud_cover": f.scene.cloud_cover,
                "footprint": mapping(f.scene.footprint),
            }
            for f in fetched
        ]
