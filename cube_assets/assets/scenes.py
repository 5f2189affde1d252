"""Scene stages: raw scene → surface reflectance → scene COG, for every acquisition of a tile and period."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, Backoff, Jitter, MetadataValue, Output, RetryPolicy, asset

from cube_assets.assets.common import cube_partition, index_pixels_json, quicklook_markdown, stage_asset_arguments
from cube_assets.cube_config import CubeConfig
from cube_assets.formats.sen2cor import SEN2COR_POOL, Sen2CorOutput
from cube_assets.manifests import (
    RawScene,
    RawSceneManifest,
    ReflectanceManifest,
    ReflectanceScene,
    SceneCog,
    SceneCogManifest,
)
from cube_assets.providers.base import SENTINEL2_L1C
from cube_assets.resources.providers import ProvidersResource
from cube_assets.resources.sen2cor import Sen2CorResource
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.steps.indexes import total_nodata_pixels
from cube_assets.steps.previews import local_preview, share_preview
from cube_assets.steps.scenes import publish_scene, reflectance_for_cube_scene
from cube_assets.thread_map import map_in_threads

# Provider downloads fail transiently (timeouts, throttling): retry the partition 4 times,
# after about 30 s, 90 s, 210 s and 450 s (exponential backoff, ± 30 s of jitter so that
# partitions that failed together do not retry together).
DOWNLOAD_RETRY_POLICY = RetryPolicy(max_retries=4, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
# The concurrency pool of every download step; its limit is set on the instance
# (`dagster instance concurrency set downloads N`, or the instance's `concurrency.pools.default_limit`).
DOWNLOADS_POOL = "downloads"


def build_raw_scene(cube: CubeConfig, retry_policy: RetryPolicy = DOWNLOAD_RETRY_POLICY) -> AssetsDefinition:
    """Return the ``raw_scene`` asset of ``cube``: every scene over the tile in the period, fetched.

    The step retries with ``retry_policy`` and runs in the ``downloads`` concurrency pool.
    """

    @asset(
        **stage_asset_arguments(
            cube,
            "raw_scene",
            f"Raw {', '.join(s.collection for s in cube.sources) if cube.sources else cube.collection} scenes over "
            "the tile in the period, found and fetched through the providers.",
        ),
        retry_policy=retry_policy,
        pool=DOWNLOADS_POOL,
    )
    def raw_scene(
        context: AssetExecutionContext, providers: ProvidersResource, store: RasterStoreResource
    ) -> Output[RawSceneManifest]:
        part = cube_partition(context, cube)
        # The store keeps the raw scenes too when the providers resource says so (prod). A cube
        # that reuses another cube's merges fetches nothing: its tile_merge takes those merges.
        scenes: list[RawScene] = []
        for source, view in [] if cube.reuse_data_cube else cube.source_views():
            found = providers.fetch_scenes(view, part.tile, part.period, store=store.get_store())
            scenes += [RawScene.model_validate({**s, "source": source}) for s in found]
        scenes = _first_of_each_scene(scenes)
        served = {s.scene_id: s.provider for s in scenes}
        return Output(
            RawSceneManifest(tile=part.tile.name, period=part.period.key, scenes=tuple(scenes)),
            metadata={
                "scene_count": len(scenes),
                "scenes": MetadataValue.json(served),
                # Providers that failed before the one that served a scene (messages hold no credentials).
                "provider_failures": MetadataValue.json(
                    {s.scene_id: list(s.provider_failures) for s in scenes if s.provider_failures}
                ),
                "acquisition_dates": sorted({s.datetime.date().isoformat() for s in scenes}),
            },
        )

    return raw_scene


def _first_of_each_scene(scenes: list[RawScene]) -> list[RawScene]:
    """The scenes in datetime order, a scene id found by several sources kept for the first of them only."""
    unique: dict[str, RawScene] = {}
    for scene in scenes:
        unique.setdefault(scene.scene_id, scene)
    return sorted(unique.values(), key=lambda s: (s.datetime, s.scene_id))


def build_surface_reflectance(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``surface_reflectance`` asset: each scene's bands as reflectance × 10000 (the cube's dtype).

    For a Level-1C cube (collection ``sentinel-2-l1c``) the asset also takes the ``sen2cor``
    resource, which turns each scene into Level-2A first, and runs in the ``sen2cor``
    concurrency pool (its limit is set on the instance, like every pool's).
    """

    def reflectance(
        raw_scene: RawSceneManifest,
        store: RasterStoreResource,
        providers: ProvidersResource,
        to_l2a: Callable[[Path], Sen2CorOutput] | None,
    ) -> Output[ReflectanceManifest]:
        raster_store = store.get_store()

        def one(scene: RawScene) -> ReflectanceScene:
            # This process's copy of the raw scene (pulled from S3 in prod), and the product's
            # preview handed on through the store, for scene_cog wherever it runs.
            local = RawScene.model_validate(providers.local_scene(scene.model_dump(mode="json"), raster_store))
            entry = reflectance_for_cube_scene(cube, local, raster_store, to_l2a=to_l2a)
            return share_preview(cube.name, entry, raster_store)

        # Sen2Cor runs one container per scene, each needing several GiB: one at a time.
        scenes = map_in_threads(
            one,
            raw_scene.scenes,
            environment=raster_store.gdal_environment,
            threads=1 if to_l2a is not None else None,
        )
        metadata: dict[str, Any] = {"scene_count": len(scenes), "files": sum(len(s.bands) + 1 for s in scenes)}
        if to_l2a is not None:
            metadata["sen2cor"] = MetadataValue.json(
                {s.scene_id: s.sen2cor.model_dump(mode="json") if s.sen2cor else None for s in scenes}
            )
        return Output(
            ReflectanceManifest(tile=raw_scene.tile, period=raw_scene.period, scenes=tuple(scenes)), metadata=metadata
        )

    if cube.collection != SENTINEL2_L1C:

        @asset(
            **stage_asset_arguments(
                cube,
                "surface_reflectance",
                "Surface reflectance × 10000 of every scene, with the product's own offset and quantification.",
                upstream=("raw_scene",),
            )
        )
        def surface_reflectance(
            context: AssetExecutionContext,
            raw_scene: RawSceneManifest,
            store: RasterStoreResource,
            providers: ProvidersResource,
        ) -> Output[ReflectanceManifest]:
            return reflectance(raw_scene, store, providers, None)

        return surface_reflectance

    @asset(
        **stage_asset_arguments(
            cube,
            "surface_reflectance",
            "Level-1C scenes through Sen2Cor, then surface reflectance × 10000 with the product's own offset.",
            upstream=("raw_scene",),
        ),
        pool=SEN2COR_POOL,
    )
    def surface_reflectance_l1c(
        context: AssetExecutionContext,
        raw_scene: RawSceneManifest,
        store: RasterStoreResource,
        sen2cor: Sen2CorResource,
        providers: ProvidersResource,
    ) -> Output[ReflectanceManifest]:
        return reflectance(raw_scene, store, providers, sen2cor.to_l2a)

    return surface_reflectance_l1c


def build_scene_cog(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``scene_cog`` asset: COGs, quicklook, footprint and band indexes of every scene."""

    @asset(
        **stage_asset_arguments(
            cube,
            "scene_cog",
            "Cloud-Optimized GeoTIFFs of every scene, with quicklook, footprint and band indexes.",
            upstream=("surface_reflectance",),
        )
    )
    def scene_cog(
        context: AssetExecutionContext,
        surface_reflectance: ReflectanceManifest,
        store: RasterStoreResource,
    ) -> Output[SceneCogManifest]:
        raster_store = store.get_store()

        def one(scene: ReflectanceScene) -> SceneCog:
            with local_preview(scene, raster_store) as readable:  # the preview as a local file, if shared
                return publish_scene(cube, readable, raster_store).model_copy(update={"pvi": scene.pvi})

        scenes = map_in_threads(one, surface_reflectance.scenes, environment=raster_store.gdal_environment)
        first_quicklook = next((s.quicklook_key for s in scenes if s.quicklook_key), None)
        return Output(
            SceneCogManifest(tile=surface_reflectance.tile, period=surface_reflectance.period, scenes=tuple(scenes)),
            metadata={
                "scene_count": len(scenes),
                "cog_paths": MetadataValue.json({s.scene_id: s.bands for s in scenes}),
                "index_nodata_pixels": total_nodata_pixels(s.index_pixels for s in scenes),
                "index_pixels": MetadataValue.json({s.scene_id: index_pixels_json(s.index_pixels) for s in scenes}),
                "quicklook": quicklook_markdown(
                    raster_store.read_bytes(first_quicklook) if first_quicklook else None, first_quicklook
                ),
            },
        )

    return scene_cog
