"""``catalog_item``: the partition's composites, merges and scenes, registered in the catalog."""


from typing import Any

from dagster import AssetExecutionContext, AssetIn, AssetsDefinition, Output, asset

from cube_assets.assets.common import CATALOG_IO_MANAGER, cube_partition
from cube_assets.cube_config import CubeConfig
from cube_assets.partitions import cube_partitions
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.steps.catalog_records import CatalogBatch, catalog_batch


def build_catalog_item(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``catalog_item`` asset of ``cube``."""

    @asset(
        name="catalog_item", key_prefix=[cube.name], group_name=cube.name, partitions_def=cube_partitions(cube),
        io_manager_key=CATALOG_IO_MANAGER,
        ins={"period_blend": AssetIn(key=[cube.name, "period_blend"]), "scene_cog": AssetIn(key=[cube.name, "scene_cog"])},
        kinds={"sqlite"},
        description="Products, bands and images (composites, merges, scenes) of the partition, upserted into the catalog.",
    )
    def catalog_item(
        context: AssetExecutionContext, period_blend: dict[str, Any], scene_cog: dict[str, Any], store: RasterStoreResource,
    ) -> Output[CatalogBatch]:
        part = cube_partition(context, cube)
        batch = catalog_batch(cube, part.tile, part.period, period_blend, scene_cog["scenes"], store.get_store())
        return Output(batch, metadata={"products": [p.id for p in batch.products]})

    return catalog_item
