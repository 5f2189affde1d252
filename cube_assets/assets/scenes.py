"""Scene stages: raw scene → surface reflectance → scene COG, for every acquisition of a tile and period."""


from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, Output, asset

from cube_assets.assets.common import cube_partition, quicklook_markdown, stage_asset_arguments
from cube_assets.cube_config import CubeConfig
from cube_assets.resources.providers import ProvidersResource
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.steps.scenes import publish_scene, reflectance_for_scene


def build_raw_scene(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``raw_scene`` asset of ``cube``: every scene over the tile in the period, fetched."""

    @asset(**stage_asset_arguments(
        cube, "raw_scene", f"Raw {cube.collection} scenes over the tile in the period, found and fetched through the providers.",
    ))
    def raw_scene(context: AssetExecutionContext, providers: ProvidersResource) -> Output[dict[str, Any]]:
        part = cube_partition(context, cube)
        scenes = providers.fetch_scenes(cube, part.tile, part.period)
        served = {s["scene_id"]: s["provider"] for s in scenes}
        return Output(
            {"tile": part.tile.name, "period": part.period.key, "scenes": scenes},
            metadata={
                "scene_count": len(scenes),
                "scenes": MetadataValue.json(served),
                "acquisition_dates": sorted({s["datetime"][:10] for s in scenes}),
            },
        )

    return raw_scene


def build_surface_reflectance(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``surface_reflectance`` asset: each scene's bands as reflectance × 10000 (int16)."""

    @asset(**stage_asset_arguments(
        cube, "surface_reflectance", "Surface reflectance × 10000 of every scene, with the product's own offset and quantification.",
        upstream=("raw_scene",),
    ))
    def surface_reflectance(context: AssetExecutionContext, raw_scene: dict[str, Any], store: RasterStoreResource) -> Output[dict[str, Any]]:
        raster_store = store.get_store()
        scenes = [reflectance_for_scene(cube, scene, raster_store) for scene in raw_scene["scenes"]]
        return Output(
            {**_partition(raw_scene), "scenes": scenes},
            metadata={"scene_count": len(scenes), "files": sum(len(s["bands"]) + 1 for s in scenes)},
        )

    return surface_reflectance


def build_scene_cog(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``scene_cog`` asset: COGs, quicklook, footprint and band indexes of every scene."""

    @asset(**stage_asset_arguments(
        cube, "scene_cog", "Cloud-Optimized GeoTIFFs of every scene, with quicklook, footprint and band indexes.",
        upstream=("surface_reflectance",),
    ))
    def scene_cog(context: AssetExecutionContext, surface_reflectance: dict[str, Any], store: RasterStoreResource) -> Output[dict[str, Any]]:
        raster_store = store.get_store()
        scenes = [publish_scene(cube, scene, raster_store) for scene in surface_reflectance["scenes"]]
        first_quicklook = next((s["quicklook_key"] for s in scenes if s.get("quicklook_key")), None)
        return Output(
            {**_partition(surface_reflectance), "scenes": scenes},
            metadata={
                "scene_count": len(scenes),
                "cog_paths": MetadataValue.json({s["scene_id"]: s["bands"] for s in scenes}),
                "quicklook": quicklook_markdown(
                    raster_store.read_bytes(first_quicklook) if first_quicklook else None, first_quicklook
                ),
            },
        )

    return scene_cog


def _partition(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"tile": manifest["tile"], "period": manifest["period"]}
