"""``tile_merge``: one merge per acquisition date of the period, on the tile's grid."""

from collections import defaultdict
from datetime import date
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, Output, asset

from cube_assets.assets.common import cube_partition, stage_asset_arguments, thumbnail_markdown
from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import Merge, SceneCog, SceneCogManifest, TileMergeManifest
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.steps.merge import merge_date, reused_merges
from cube_assets.steps.previews import rgb_thumbnail


def build_tile_merge(cube: CubeConfig, reused: CubeConfig | None = None) -> AssetsDefinition:
    """Return the ``tile_merge`` asset of ``cube``.

    With ``reused`` (the cube its ``reuse_data_cube`` names) the asset merges nothing: it takes
    that cube's stored merges of the tile and period (``steps.merge.reused_merges``).
    """

    @asset(
        **stage_asset_arguments(
            cube,
            "tile_merge",
            "Every scene of each date warped onto the tile (one merge per date), with quality statistics.",
            upstream=("scene_cog",),
        )
    )
    def tile_merge(
        context: AssetExecutionContext, scene_cog: SceneCogManifest, store: RasterStoreResource
    ) -> Output[TileMergeManifest]:
        part = cube_partition(context, cube)
        raster_store = store.get_store()
        if reused is not None:
            merges = list(reused_merges(cube, reused, part.tile, part.period, raster_store))
            context.log.info(f"reused {len(merges)} merge(s) of cube {reused.name} on tile {part.tile.name}")
            return _output(part.tile.name, part.period.key, merges, _thumbnail(cube, merges, raster_store), reused.name)
        # One merge per date and source (a date may have both sensors); sources in the cube's order.
        by_date: dict[tuple[date, int], list[SceneCog]] = defaultdict(list)
        positions = {name: i for i, name in enumerate(cube.source_names)}
        for scene in scene_cog.scenes:
            by_date[(scene.datetime.date(), positions.get(scene.source or "", 0))].append(scene)
        merges = []
        for day, position in sorted(by_date):
            source = cube.source_names[position] if cube.sources else None
            # Within a date, the least cloudy scene has priority where scenes overlap.
            ordered = sorted(by_date[(day, position)], key=lambda s: (s.cloud_cover or 0.0, s.scene_id))
            with raster_store.gdal_environment():
                merges.append(merge_date(cube, part.tile, day, ordered, raster_store, source=source))
            of = f" of source {source}" if source else ""
            context.log.info(f"merged {len(ordered)} scene(s){of} of {day} onto tile {part.tile.name}")
        return _output(part.tile.name, part.period.key, merges, _thumbnail(cube, merges, raster_store))

    return tile_merge


def _thumbnail(cube: CubeConfig, merges: list[Merge], raster_store: Any) -> MetadataValue:
    """The Markdown of small embedded thumbnails of the first four merges, shown by the Dagster UI."""
    return thumbnail_markdown(
        {
            m.date.isoformat() + (f" {m.source}" if m.source else ""): rgb_thumbnail(cube, m.bands, raster_store)
            for m in merges[:4]
        }
    )


def _output(
    tile: str, period: str, merges: list[Merge], thumbnail: MetadataValue, reused_from: str | None = None
) -> Output[TileMergeManifest]:
    """The ``tile_merge`` output: the manifest, and per-date efficacy, cloud ratio, paths and thumbnails as metadata."""
    days = [m.date.isoformat() + (f" {m.source}" if m.source else "") for m in merges]  # a date per source
    metadata: dict[str, Any] = {
        "merge_count": len(merges),
        "dates": days,
        "efficacy_by_date": MetadataValue.json({d: m.efficacy for d, m in zip(days, merges, strict=True)}),
        "cloud_ratio_by_date": MetadataValue.json({d: m.cloud_ratio for d, m in zip(days, merges, strict=True)}),
        "valid_pixels": sum(m.valid_pixels for m in merges),
        "clear_pixels": sum(m.clear_pixels for m in merges),
        "paths": MetadataValue.json({d: m.bands for d, m in zip(days, merges, strict=True)}),
        "thumbnail": thumbnail,
    }
    if reused_from is not None:
        metadata["reused_from"] = reused_from
    return Output(TileMergeManifest(tile=tile, period=period, merges=tuple(merges)), metadata=metadata)
