"""``catalog_item``: the partition's composites, merges and scenes, registered in the catalog."""

from dagster import AssetExecutionContext, AssetsDefinition, Output, asset

from cube_assets.assets.common import CATALOG_IO_MANAGER, cube_partition, stage_asset_arguments
from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import PeriodBlendManifest, SceneCogManifest
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.steps.catalog_records import CatalogBatch, catalog_batch


def build_catalog_item(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``catalog_item`` asset of ``cube``."""

    @asset(
        **stage_asset_arguments(
            cube,
            "catalog_item",
            "Products, bands and images (composites, merges, scenes) of the partition, upserted into the catalog.",
            upstream=("period_blend", "scene_cog"),
            io_manager_key=CATALOG_IO_MANAGER,
        )
    )
    def catalog_item(
        context: AssetExecutionContext,
        period_blend: PeriodBlendManifest,
        scene_cog: SceneCogManifest,
        store: RasterStoreResource,
    ) -> Output[CatalogBatch]:
        part = cube_partition(context, cube)
        raster_store = store.get_store()
        with raster_store.gdal_environment():
            batch = catalog_batch(cube, part.tile, part.period, period_blend, scene_cog.scenes, raster_store)
        return Output(batch, metadata={"products": [p.id for p in batch.products]})

    return catalog_item
