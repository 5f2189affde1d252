"""Merge: every scene of one date warped onto one tile, with its quality mask and statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import rasterio
from affine import Affine
from pydantic import ValidationError
from rasterio.errors import RasterioError

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidManifest, InvalidScene
from cube_assets.grids import Tile
from cube_assets.manifests import Merge, SceneRasters, TileMergeManifest
from cube_assets.raster.cog import COG_CONTENT_TYPE, cog_from_file
from cube_assets.raster.warp import DATASOURCE, DATASOURCE_NODATA, WARP_BLOCK, merge_scenes_to_files
from cube_assets.storage.layout import manifest_key, merge_item, merge_key
from cube_assets.storage.raster_store import RasterStore
from cube_assets.temporal import Period

__all__ = ["DATASOURCE", "DATASOURCE_NODATA", "MERGE_WINDOW", "merge_date", "native_grid", "reused_merges"]

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
    source: str | None = None,
) -> Merge:
    """Warp the scenes of ``day`` onto ``tile``, mosaic them (first valid scene wins) and publish COGs.

    ``scenes`` are the scenes' rasters (``scene_id``, ``bands`` and ``quality`` URIs; a
    ``SceneCog`` entry is one) in priority order. A pixel that is nodata in any spectral band
    becomes nodata in the quality band, so every later stage sees one consistent validity mask.
    A date whose scenes do not reach the tile still gets an (all-nodata) merge so the timeline
    stays regular. With the cube's ``native_grid`` the scenes are not warped onto the tile: the
    merge keeps the scenes' own grid (CRS, transform and size of their band files), which every
    scene of the date must share (:func:`native_grid`).

    The tile is merged window by window (``raster.warp.merge_scenes_to_files``, ``window_size``
    pixels a side): each band goes to an uncompressed staging GeoTIFF, then to a COG through
    GDAL's COG driver (overviews: average for spectral bands, nearest for the quality band and
    DATASOURCE), so memory does not grow with the tile. Nothing is published until every COG
    of the merge is written; the pixels and statistics do not depend on ``window_size``.

    In a cube with several sources each date has one merge per ``source`` (the scenes of that
    source only), named ``…_{date}_{source}``; a cube without sources keeps ``…_{date}``.

    Returns:
        The merge's manifest entry (``Merge``): date, item, band and quality URIs, DATASOURCE
        URI, the scene ids in DATASOURCE order, efficacy, cloud ratio and pixel counts.

    Raises:
        InvalidScene: naming the scene file, when a scene file cannot be read, or (native grid)
            naming both scenes, when scenes of the date lie on different grids; nothing of the
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
    dst_crs, dst_transform, dst_shape = (
        native_grid(scenes, sources) if cube.native_grid else (tile.crs_wkt, tile.transform, tile.shape)
    )
    nodata = {band: cube.nodata for band in cube.band_names} | {quality_band: cube.quality.nodata}
    resampling = {band.name: band.resampling for band in cube.bands} | {quality_band: "nearest"}
    overview_resampling = {band: "average" for band in cube.band_names} | {
        quality_band: "nearest",
        DATASOURCE: "nearest",
    }
    keys = {band: merge_key(cube.name, tile.name, day, band, source=source) for band in overview_resampling}
    files: dict[str, str] = {}
    with store.staging_dir() as staging:
        local = {band: staging / key.rsplit("/", 1)[-1] for band, key in keys.items()}
        band_of = {path: band for band, path in local.items()}

        def to_cog(tmp_tiff: Path, final_path: Path) -> None:
            # Whole-tile merges: GDAL's COG driver streams the staging file through a bounded cache;
            # the staging file is ours, so its overviews are built in it and copied.
            cog_from_file(
                tmp_tiff,
                final_path,
                compress=cube.compression,
                overview_resampling=overview_resampling[band_of[final_path]],
                driver="gdal",
                blocksize=cube.file_block_size,
                overviews_in_source=True,
            )

        statistics = merge_scenes_to_files(
            sources,
            bands=cube.band_names,
            quality_band=quality_band,
            quality_rules=cube.quality.rules,
            dst_crs=dst_crs,
            dst_transform=dst_transform,
            dst_shape=dst_shape,
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
        item=merge_item(cube.name, tile.name, day, source),
        bands={band: files[band] for band in cube.band_names},
        quality=files[quality_band],
        datasource=files[DATASOURCE],
        scenes=tuple(scene.scene_id for scene in scenes),
        efficacy=round(statistics.efficacy, 4),
        cloud_ratio=round(statistics.cloud_ratio, 4),
        valid_pixels=statistics.valid_pixels,
        clear_pixels=statistics.clear_pixels,
        total_pixels=statistics.total_pixels,
        source=source,
    )


def reused_merges(
    cube: CubeConfig, source: CubeConfig, tile: Tile, period: Period, store: RasterStore
) -> tuple[Merge, ...]:
    """The merges of ``source`` (the cube ``cube.reuse_data_cube`` names) on ``tile`` during ``period``.

    Nothing is merged again: the source cube's ``tile_merge`` manifests of every one of its
    periods that overlaps ``period`` are read from the store, and each merge of a date within
    ``period`` is kept with the files the source published, restricted to ``cube``'s bands.
    The cube file's check made sure both cubes share grid, quality band, dtype and nodata, and
    that ``cube``'s bands are bands of ``source``.

    Returns:
        The merges in date order (none when the source had no scene in the period).

    Raises:
        InvalidManifest: naming the cube, tile and period, when a source period's merges have
            not been materialized yet, or its manifest is not a ``tile_merge`` manifest.
    """
    merges: list[Merge] = []
    for source_period in source.periods:
        if source_period.end <= period.start or source_period.start >= period.end:
            continue
        key = manifest_key(source.name, "tile_merge", tile.name, source_period.key)
        where = f"cube {cube.name} reuses {source.name}: tile {tile.name} period {source_period.key}"
        if not store.exists(key):
            raise InvalidManifest(
                f"{where}: its merges are not materialized yet ({key}); materialize {source.name}/tile_merge "
                f"for partition {tile.name}|{source_period.key} first"
            )
        try:
            manifest = TileMergeManifest.model_validate_json(store.read_bytes(key))
        except ValidationError as exc:
            raise InvalidManifest(f"{where}: {key} is not a tile_merge manifest ({exc.error_count()} errors)") from exc
        merges += [
            merge.model_copy(update={"bands": {band: merge.bands[band] for band in cube.band_names}})
            for merge in manifest.merges
            if period.contains(merge.date)
        ]
    return tuple(sorted(merges, key=lambda merge: merge.date))


def native_grid(
    scenes: Sequence[SceneRasters], sources: Sequence[Mapping[str, str]]
) -> tuple[str, Affine, tuple[int, int]]:
    """The grid the scenes of one date share, for a merge that keeps them on their own grid.

    ``sources`` are the scenes' GDAL paths by band (as ``merge_date`` builds them). Every band
    file of every scene must have the first one's CRS, transform and size, so the merge
    resamples nothing.

    Returns:
        ``(crs_wkt, transform, (height, width))`` of the first scene's first band file.

    Raises:
        InvalidScene: naming both scenes and files when one lies on another grid, or a file
            cannot be read.
    """
    grid: tuple[str, Affine, tuple[int, int]] | None = None
    first = ""
    for scene, paths in zip(scenes, sources, strict=True):
        for band, path in paths.items():
            try:
                with rasterio.open(path) as src:
                    found = (src.crs.to_wkt() if src.crs else "", src.transform, (src.height, src.width))
            except RasterioError as exc:
                raise InvalidScene(f"native-grid merge: scene {scene.scene_id} band {band} file {path}: {exc}") from exc
            if grid is None:
                grid, first = found, f"scene {scene.scene_id} band {band} ({path})"
            elif found != grid:
                raise InvalidScene(
                    f"native-grid merge: scene {scene.scene_id} band {band} ({path}) lies on another grid than "
                    f"{first}: {found[2][1]}×{found[2][0]} px at {tuple(found[1])[:6]} against "
                    f"{grid[2][1]}×{grid[2][0]} px at {tuple(grid[1])[:6]}; a native-grid cube needs scenes "
                    "on one grid"
                )
    if grid is None:
        raise InvalidScene("native-grid merge: no scene to take the grid from")
    return grid
