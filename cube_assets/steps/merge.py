"""Merge: every scene of one date warped onto one tile, with its quality mask and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from cube_assets.cube_config import CubeConfig
from cube_assets.grids import Tile
from cube_assets.manifests import Merge, SceneRasters
from cube_assets.raster.cog import COG_CONTENT_TYPE, cog_from_file
from cube_assets.raster.warp import DATASOURCE, DATASOURCE_NODATA, WARP_BLOCK, merge_scenes_to_files
from cube_assets.storage.layout import merge_item, merge_key
from cube_assets.storage.raster_store import RasterStore

__all__ = ["DATASOURCE", "DATASOURCE_NODATA", "MERGE_WINDOW", "merge_date"]

MERGE_WINDOW = WARP_BLOCK
"""Side, in pixels, of the windows a merge is processed in (a multiple of ``warp.WARP_BLOCK``)."""


def merge_date(
    cube: CubeConfig,
    tile: Tile,
    day: date,
    scenes: Sequence[SceneRasters],
    store: RasterStore,
    *,
    window_size: int = MERGE_WINDOW,
) -> Merge:
    """Warp the scenes of ``day`` onto ``tile``, mosaic them (first valid scene wins) and publish COGs.

    ``scenes`` are the scenes' rasters (``scene_id``, ``bands`` and ``quality`` URIs; a
    ``SceneCog`` entry is one) in priority order. A pixel that is nodata in any spectral band
    becomes nodata in the quality band, so every later stage sees one consistent validity mask.
    A date whose scenes do not reach the tile still gets an (all-nodata) merge so the timeline
    stays regular.

    The tile is merged window by window (``raster.warp.merge_scenes_to_files``, ``window_size``
    pixels a side): each band goes to an uncompressed staging GeoTIFF, then to a COG through
    GDAL's COG driver (overviews: average for spectral bands, nearest for the quality band and
    DATASOURCE), so memory does not grow with the tile. Nothing is published until every COG
    of the merge is written; the pixels and statistics do not depend on ``window_size``.

    Returns:
        The merge's manifest entry (``Merge``): date, item, band and quality URIs, DATASOURCE
        URI, the scene ids in DATASOURCE order, efficacy, cloud ratio and pixel counts.

    Raises:
        InvalidScene: naming the scene file, when a scene file cannot be read; nothing of the
            merge is published then.
        ValueError: if ``window_size`` is not a positive multiple of ``warp.WARP_BLOCK``.
    """
    quality_band = cube.quality.band
    sources = [
        {
            **{band: store.gdal_path(uri) for band, uri in scene.bands.items()},
            quality_band: store.gdal_path(scene.quality),
        }
        for scene in scenes
    ]
    nodata = {band: cube.nodata for band in cube.band_names} | {quality_band: cube.quality.nodata}
    resampling = {band.name: band.resampling for band in cube.bands} | {quality_band: "nearest"}
    overview_resampling = {band: "average" for band in cube.band_names} | {
        quality_band: "nearest",
        DATASOURCE: "nearest",
    }
    keys = {band: merge_key(cube.name, tile.name, day, band) for band in overview_resampling}
    files: dict[str, str] = {}
    with store.staging_dir() as staging:
        local = {band: staging / key.rsplit("/", 1)[-1] for band, key in keys.items()}
        band_of = {path: band for band, path in local.items()}

        def to_cog(tmp_tiff: Path, final_path: Path) -> None:
            # Whole-tile merges: GDAL's COG driver streams the staging file through a bounded cache.
            cog_from_file(
                tmp_tiff,
                final_path,
                compress=cube.compression,
                overview_resampling=overview_resampling[band_of[final_path]],
                driver="gdal",
            )

        statistics = merge_scenes_to_files(
            sources,
            bands=cube.band_names,
            quality_band=quality_band,
            quality_rules=cube.quality.rules,
            dst_crs=tile.crs_wkt,
            dst_transform=tile.transform,
            dst_shape=tile.shape,
            band_nodata=nodata,
            out_paths=local,
            resampling=resampling,
            window_size=window_size,
            finalize=to_cog,
        )
        for band, path in local.items():
            files[band] = store.publish(path, keys[band], content_type=COG_CONTENT_TYPE)
    return Merge(
        date=day,
        item=merge_item(cube.name, tile.name, day),
        bands={band: files[band] for band in cube.band_names},
        quality=files[quality_band],
        datasource=files[DATASOURCE],
        scenes=tuple(scene.scene_id for scene in scenes),
        efficacy=round(statistics.efficacy, 4),
        cloud_ratio=round(statistics.cloud_ratio, 4),
        valid_pixels=statistics.valid_pixels,
        clear_pixels=statistics.clear_pixels,
        total_pixels=statistics.total_pixels,
    )
