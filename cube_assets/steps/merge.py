"""Merge: every scene of one date warped onto one tile, with its quality mask and statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np

from cube_assets.cube_config import CubeConfig
from cube_assets.grids import Tile
from cube_assets.raster.cog import COG_CONTENT_TYPE, write_cog
from cube_assets.raster.masks import classify_quality, cloud_ratio, efficacy, propagate_spectral_nodata, rules_from_config
from cube_assets.raster.warp import merge_scenes_to_tile
from cube_assets.storage.layout import merge_item, merge_key
from cube_assets.storage.raster_store import RasterStore

DATASOURCE = "DATASOURCE"
DATASOURCE_NODATA = 255


def merge_date(
    cube: CubeConfig,
    tile: Tile,
    day: date,
    scenes: Sequence[Mapping[str, Any]],
    store: RasterStore,
) -> dict[str, Any]:
    """Warp the scenes of ``day`` onto ``tile``, mosaic them (first valid scene wins) and publish COGs.

    ``scenes`` are scene-COG manifest entries (``scene_id``, ``bands`` and ``quality`` URIs) in
    priority order. A pixel that is nodata in any spectral band becomes nodata in the quality
    band, so every later stage sees one consistent validity mask. A date whose scenes do not
    reach the tile still gets an (all-nodata) merge so the timeline stays regular.

    Returns:
        The merge's manifest entry: date, item, band and quality URIs, DATASOURCE URI, the
        scene ids in DATASOURCE order, efficacy, cloud ratio and pixel counts.

    Raises:
        InvalidRaster: from the warp when a scene file cannot be read.
    """
    quality_band = cube.quality.band
    rules = rules_from_config(cube.quality.rules)
    sources = [
        {**{band: store.gdal_path(uri) for band, uri in scene["bands"].items()}, quality_band: store.gdal_path(scene["quality"])}
        for scene in scenes
    ]
    nodata = {band: cube.nodata for band in cube.band_names} | {quality_band: cube.quality.nodata}
    resampling = {band.name: band.resampling for band in cube.bands} | {quality_band: "nearest"}
    merged = merge_scenes_to_tile(
        sources, bands=cube.band_names, quality_band=quality_band, dst_crs=tile.crs_wkt,
        dst_transform=tile.transform, dst_shape=tile.shape, band_nodata=nodata, resampling=resampling,
        block_size=1024,
    )
    merged[quality_band] = propagate_spectral_nodata(
        merged[quality_band], [merged[b] for b in cube.band_names], cube.nodata, cube.quality.nodata
    )
    classes = classify_quality(merged[quality_band], rules)
    files: dict[str, str] = {}
    with store.staging_dir() as staging:
        for band, array, band_nodata, resampling_name in _outputs(cube, merged):
            key = merge_key(cube.name, tile.name, day, band)
            local = write_cog(
                array, staging / key.rsplit("/", 1)[-1], crs=tile.crs_wkt, transform=tile.transform,
                nodata=band_nodata, overview_resampling=resampling_name,
            )
            files[band] = store.publish(local, key, content_type=COG_CONTENT_TYPE)
    valid = int(np.count_nonzero(classes != 0))
    return {
        "date": day.isoformat(),
        "item": merge_item(cube.name, tile.name, day),
        "bands": {band: files[band] for band in cube.band_names},
        "quality": files[quality_band],
        "datasource": files[DATASOURCE],
        "scenes": [scene["scene_id"] for scene in scenes],
        "efficacy": round(efficacy(classes), 4),
        "cloud_ratio": round(cloud_ratio(classes), 4),
        "valid_pixels": valid,
        "clear_pixels": int(np.count_nonzero(classes == 1)),
        "total_pixels": int(classes.size),
    }


def _outputs(cube: CubeConfig, merged: Mapping[str, np.ndarray]):
    for band in cube.bands:
        yield band.name, merged[band.name], cube.nodata, "average"
    yield cube.quality.band, merged[cube.quality.band], cube.quality.nodata, "nearest"
    yield DATASOURCE, merged[DATASOURCE], DATASOURCE_NODATA, "nearest"
