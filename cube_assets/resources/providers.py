"""The providers resource: builds the configured providers and fetches a partition's scenes.

Where a cube's providers come from:

* the cube names them (``providers: [a, b]``): the providers declared in the cube file, tried
  in that order;
* the cube names none: the provider registry in the catalog database (``catalog_url``; see
  ``cube-assets providers load`` and ``set-priority``), its enabled providers of the cube's
  collection in priority order.

Credentials of ``stac`` providers are references to environment variables; this resource, the
Dagster-facing edge, resolves them from the process environment when it builds the providers
for a run. Raw scenes go to the raw store under ``{data_root}/raw`` (``providers/raw_store.py``);
with ``offline`` no provider is asked and only scenes already stored (with all their bands) are
used. With ``raw_scenes_in_store`` (``CUBE_ENV=prod``) that folder is only this process's copy:
scenes are pushed to the S3 store the caller passes once fetched, and
:meth:`ProvidersResource.local_scene` pulls them into the raw folder of whichever process reads
them next (``providers/raw_s3.py``).
"""

from __future__ import annotations

import os
from contextlib import suppress
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from shapely.geometry import mapping

from cube_assets.cube_config import CubeConfig, ProjectConfig, ProviderConfig, load_project_config
from cube_assets.errors import ProviderError
from cube_assets.grids import Tile
from cube_assets.providers.base import SENTINEL2_L1C, Provider
from cube_assets.providers.chain import load_stored, search_and_fetch
from cube_assets.providers.local import LocalArchiveProvider
from cube_assets.providers.raw_s3 import MirroredRawStore, RawMirrorError, RawSceneMirror
from cube_assets.providers.raw_store import RawStore
from cube_assets.providers.simulated import SimulatorProvider, simulated_scenes
from cube_assets.storage.raster_store import RasterStore
from cube_assets.temporal import Period


def raw_bands(cube: CubeConfig) -> list[str]:
    """The source bands a raw scene of ``cube`` must hold.

    The cube's spectral bands, plus its quality band except for Sentinel-2 Level-1C, whose
    quality band (SCL) is produced by Sen2Cor in the ``surface_reflectance`` stage, plus the
    Landsat saturation band (``quality.radsat``) when the cube names one.

    Returns:
        Band names as the source product names them.
    """
    bands = [band.source_band for band in cube.bands]
    if cube.collection != SENTINEL2_L1C:
        bands.append(cube.quality.band)
    if cube.quality.radsat:
        bands.append(cube.quality.radsat)
    return bands


class ProvidersResource(ConfigurableResource):
    """Scene providers of the cube file or the registry; raw scenes are kept under ``{data_root}/raw``."""

    config_file: str
    data_root: str
    catalog_url: str | None = None  # the provider registry; default: the SQLite catalog under data_root
    offline: bool = False  # use only scenes already in the raw store
    # Keep raw scenes in the (S3) raster store as well, so that steps on other machines read them.
    raw_scenes_in_store: bool = False

    def _mirror(self, store: RasterStore | None) -> RawSceneMirror:
        if store is None:
            raise RawMirrorError("ProvidersResource: raw_scenes_in_store is set but no raster store was given")
        return RawSceneMirror(store, Path(self.data_root) / "raw")  # type: ignore[arg-type]  # the store given to a raw mirror is a RasterStore with its folder layout

    def raw_store(self, store: RasterStore | None = None) -> RawStore:
        """The raw store under ``{data_root}/raw``; with ``raw_scenes_in_store``, mirrored in ``store``.

        Raises:
            RawMirrorError: with ``raw_scenes_in_store``, when ``store`` is missing or not an S3 store.
        """
        root = Path(self.data_root) / "raw"
        if not self.raw_scenes_in_store:
            return RawStore(root, offline=self.offline)
        return MirroredRawStore(root, self._mirror(store), offline=self.offline)

    def local_scene(self, scene: dict[str, Any], store: RasterStore | None = None) -> dict[str, Any]:
        """Return a ``raw_scene`` entry whose ``path`` and ``raw_bands`` are this process's copy of the scene.

        Without ``raw_scenes_in_store`` the entry is returned as it is (steps share the data
        root). With it, the scene is pulled from ``store`` (S3) into this process's raw folder
        (only files missing or different) and the paths are rewritten to point there.

        Raises:
            RawMirrorError: when S3 has no record of the scene (naming it), ``store`` is missing
                or not an S3 store, or a pull fails.
        """
        if not self.raw_scenes_in_store:
            return scene
        mirror = self._mirror(store)
        local = mirror.pull(scene["collection"], scene["scene_id"])
        if local is None:
            record = mirror.store.uri(mirror.record_key(scene["collection"], scene["scene_id"]))
            raise RawMirrorError(
                f"{scene['scene_id']}: not in the raw scenes in S3 ({record} is missing); "
                "materialize its raw_scene partition again"
            )
        fetched_at = Path(scene["path"])

        def moved(path: str) -> str:
            try:
                return str(local / Path(path).relative_to(fetched_at))
            except ValueError:
                return path

        return {
            **scene,
            "path": str(local),
            "raw_bands": {band: moved(path) for band, path in (scene.get("raw_bands") or {}).items()},
        }

    def build_provider(self, config: ProviderConfig) -> Provider:
        """Return the provider ``config`` describes (relative paths are under ``data_root``).

        Raises:
            ProviderError: if a ``stac`` provider's options are invalid or a credentials
                environment variable is not set.
        """
        root = Path(self.data_root)
        if config.driver == "simulator":
            archive = root / config.options.get("archive", "archive")
            return SimulatorProvider(archive, simulated_scenes(config.options), name=config.name)
        if config.driver == "stac":
            from cube_assets.providers.stac import build_stac_provider

            return build_stac_provider(config.name, config.options, os.environ)
        return LocalArchiveProvider(root / config.options["root"], name=config.name)

    def registry_provider_configs(self, collection: str) -> list[ProviderConfig]:
        """The registry's enabled providers of ``collection``, in priority order, as provider configs.

        Raises:
            ProviderError: if the registry has no enabled provider for ``collection``.
        """
        from cube_assets.catalog.database import (
            create_catalog_engine,
            default_catalog_url,
            session_factory,
            upgrade_schema,
        )
        from cube_assets.providers.registry import collection_providers

        url = self.catalog_url or default_catalog_url(Path(self.data_root))
        engine = create_catalog_engine(url)
        try:
            upgrade_schema(engine)
            with session_factory(engine)() as session:
                ranked = collection_providers(session, collection)
        finally:
            engine.dispose()
        if not ranked:
            raise ProviderError(
                f"collection {collection}: the cube names no providers and the provider registry has no enabled "
                f"provider for it (cube-assets providers load / set-priority {collection} PROVIDER 0)"
            )
        return [
            ProviderConfig(
                name=entry.provider.name,
                driver=entry.provider.driver,  # type: ignore[arg-type]  # the driver name was validated by the registry's model
                description=entry.provider.description,
                options=entry.provider.driver_options(),
            )
            for entry in ranked
        ]

    def cube_provider_configs(self, project: ProjectConfig, cube: CubeConfig) -> list[ProviderConfig]:
        """The provider configs of ``cube`` in the order they are tried (see the module docstring)."""
        if cube.providers:
            return [project.provider(name) for name in cube.providers]
        return self.registry_provider_configs(cube.collection)

    def fetch_scenes(
        self, cube: CubeConfig, tile: Tile, period: Period, store: RasterStore | None = None
    ) -> list[dict[str, Any]]:
        """Find and fetch every scene of ``cube``'s collection over ``tile`` during ``period``.

        With ``raw_scenes_in_store``, scenes are also pushed to ``store`` (see :meth:`raw_store`).

        Returns:
            JSON-able scene entries (id, collection, datetime, provider, local path, cloud
            cover, footprint GeoJSON; ``raw_bands`` the file of each band, ``fetched_bands``
            those this run downloaded, ``provider_failures`` the providers that failed before
            ``provider`` served it), sorted by datetime.

        Raises:
            ProviderError: when no provider can search, a scene cannot be delivered, or
                (offline) a stored scene lacks a band (``SceneNotStored``).
        """
        project = load_project_config(self.config_file)
        start = datetime.combine(period.start, time(), tzinfo=UTC)
        end = datetime.combine(period.end, time(), tzinfo=UTC)
        raw_store = self.raw_store(store)
        bands = raw_bands(cube)
        if self.offline:
            fetched = load_stored(
                raw_store, cube.collection, tile.geometry_4326, start, end, bands, cube.max_cloud_cover
            )
        else:
            providers = [self.build_provider(config) for config in self.cube_provider_configs(project, cube)]
            raw_dir = raw_store.collection_dir(cube.collection)
            raw_dir.mkdir(parents=True, exist_ok=True)
            try:
                fetched = search_and_fetch(
                    providers,
                    cube.collection,
                    tile.geometry_4326,
                    start,
                    end,
                    raw_dir,
                    cube.max_cloud_cover,
                    store=raw_store,
                    bands=bands,
                )
            finally:
                for provider in providers:
                    with suppress(Exception):
                        getattr(provider, "close", lambda: None)()
        return [
            {
                "scene_id": f.scene.scene_id,
                "collection": f.scene.collection,
                "datetime": f.scene.datetime.isoformat(),
                "provider": f.provider,
                "path": str(f.path),
                "cloud_cover": f.scene.cloud_cover,
                "footprint": mapping(f.scene.footprint),
                "raw_bands": {band: str(path) for band, path in f.bands.items()},
                "fetched_bands": list(f.fetched),
                "provider_failures": list(f.failures),
            }
            for f in fetched
        ]
