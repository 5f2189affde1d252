"""``period_blend``: the temporal composites of a tile and period."""

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, Output, asset

from cube_assets.assets.common import (
    cube_partition,
    index_pixels_json,
    quicklook_markdown,
    stage_asset_arguments,
    thumbnail_markdown,
)
from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import PeriodBlendManifest, TileMergeManifest
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.steps.blend import blend_period
from cube_assets.steps.indexes import total_nodata_pixels
from cube_assets.steps.previews import rgb_thumbnail


def build_period_blend(cube: CubeConfig) -> AssetsDefinition:
    """Return the ``period_blend`` asset of ``cube``."""

    @asset(
        **stage_asset_arguments(
            cube,
            "period_blend",
            f"Composites ({', '.join(cube.composites)}) of the period's merges, "
            "with provenance and observation counts.",
            upstream=("tile_merge",),
        )
    )
    def period_blend(
        context: AssetExecutionContext,
        tile_merge: TileMergeManifest,
        store: RasterStoreResource,
    ) -> Output[PeriodBlendManifest]:
        part = cube_partition(context, cube)
        raster_store = store.get_store()
        with raster_store.gdal_environment():
            blended = blend_period(cube, part.tile, part.period, tile_merge.merges, raster_store)
        first = next(iter(blended.composites.values()), None)
        quicklook_key = first.quicklook_key if first else None
        return Output(
            blended,
            metadata={
                "observations": blended.observations,
                "functions": list(blended.composites),
                "paths": MetadataValue.json({f: c.bands for f, c in blended.composites.items()}),
                "index_nodata_pixels": total_nodata_pixels(c.index_pixels for c in blended.composites.values()),
                "index_pixels": MetadataValue.json(
                    {f: index_pixels_json(c.index_pixels) for f, c in blended.composites.items()}
                ),
                "thumbnail": thumbnail_markdown(
                    {f: rgb_thumbnail(cube, c.bands, raster_store) for f, c in blended.composites.items()}
                ),
                "quicklook": quicklook_markdown(
                    raster_store.read_bytes(quicklook_key) if quicklook_key else None, quicklook_key
                ),
            },
        )

    return period_blend
