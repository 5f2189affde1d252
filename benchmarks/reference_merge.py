"""The whole-tile merge this project used before merging window by window: the benchmark's reference.

This module is a frozen copy, not project code: ``reference_merge_scenes_to_tile`` (with the
private helpers below it) is ``merge_scenes_to_tile`` of ``cube_assets/raster/warp.py`` as of
commit f8f9711, the last change to that file before the windowed merge (5bac2ee) replaced it, and
``reference_merge_date`` is ``merge_date`` of ``cube_assets/steps/merge.py`` as of 2177c77 (both as
in the tree of 290d78d); they are copied unchanged but for their names. It does not use
``cube_assets.raster.warp`` or ``cube_assets.raster.windowed_io`` on purpose, so that changes to
the project's merge cannot change the reference it is measured and tested against; do not
refactor it along with them.

In that merge every band of the whole tile is held in memory (a ``dst_shape`` array per band,
filled block by block from a ``WarpedVRT`` per scene and band), the spectral nodata is propagated
and the quality classified on the whole tile, and each band becomes a COG through ``write_cog``
(rio-cogeo, staged in memory). A 10560 x 10560 tile of ten int16 bands needs more than 2.5 GiB.

``benchmarks/merge.py`` times it against ``cube_assets.steps.merge.merge_date``, and
``cube_assets_tests/steps/test_merge.py`` checks that the windowed merge gives exactly its
pixels and statistics (the ``block_size=1024`` of ``reference_merge_date`` is the warp block of
the windowed merge, so the warped pixels are the same).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidRaster, InvalidScene
from cube_assets.grids import Tile
from cube_assets.raster.cog import COG_CONTENT_TYPE, write_cog
from cube_assets.raster.masks import (
    classify_quality,
    cloud_ratio,
    efficacy,
    propagate_spectral_nodata,
    rules_from_config,
)
from cube_assets.storage.layout import merge_item, merge_key
from cube_assets.storage.raster_store import RasterStore

DATASOURCE = "DATASOURCE"
DATASOURCE_NODATA = 255
QUALITY_RESAMPLING = "nearest"
SPECTRAL_RESAMPLING = "bilinear"


def reference_merge_date(
    cube: CubeConfig,
    tile: Tile,
    day: date,
    scenes: Sequence[Mapping[str, Any]],
    store: RasterStore,
) -> dict[str, Any]:
    """The former ``steps.merge.merge_date``: the whole tile in memory, then one ``write_cog`` per band.

    Returns:
        The merge's manifest entry, as ``merge_date`` returns it.
    """
    quality_band = cube.quality.band
    rules = rules_from_config(cube.quality.rules)
    sources = [
        {
            **{band: store.gdal_path(uri) for band, uri in scene["bands"].items()},
            quality_band: store.gdal_path(scene["quality"]),
        }
        for scene in scenes
    ]
    nodata = {band: cube.nodata for band in cube.band_names} | {quality_band: cube.quality.nodata}
    resampling = {band.name: band.resampling for band in cube.bands} | {quality_band: "nearest"}
    merged = reference_merge_scenes_to_tile(
        sources,
        bands=cube.band_names,
        quality_band=quality_band,
        dst_crs=tile.crs_wkt,
        dst_transform=tile.transform,
        dst_shape=tile.shape,
        band_nodata=nodata,
        resampling=resampling,
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
                array,
                staging / key.rsplit("/", 1)[-1],
                crs=tile.crs_wkt,
                transform=tile.transform,
                nodata=band_nodata,
                overview_resampling=resampling_name,
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


def reference_merge_scenes_to_tile(
    scenes: Sequence[Mapping[str, str | os.PathLike[str]]],
    *,
    bands: Sequence[str],
    quality_band: str,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    band_nodata: Mapping[str, float | int],
    resampling: Mapping[str, str] | None = None,
    block_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Merge the scenes of one date onto a tile grid, all bands of a pixel from one scene.

    ``scenes`` are in priority order, each mapping band name to a file whose band 1 is read.
    At each pixel the winner is the first scene whose warped ``quality_band`` is not nodata
    there; every band of that pixel is taken from the winner, so bands stay consistent (a
    winner's spectral band may still be nodata there, e.g. where bilinear found no valid
    neighbour). Pixels no scene's quality covers are nodata in every band and 255 in
    DATASOURCE. If no scene covers the tile, the result is an empty merge: full nodata, with
    the usual shapes and types.

    ``band_nodata[band]`` is that band's nodata both in the source files (overriding the
    files' own tags, e.g. the fill value of a quality band that declares none) and in the
    output. ``resampling`` maps band to method; missing bands get nearest for the quality
    band and bilinear otherwise. ``block_size`` processes the tile in square blocks of that
    many pixels to bound memory; blocks a scene does not reach never read that scene.

    Returns:
        A dict with the quality band, each of ``bands`` (each a ``dst_shape`` array whose data
        type equals the source band's data type: no scaling, no promotion) and ``"DATASOURCE"``
        (uint8, index of the winning scene, 255 where none).

    Raises:
        InvalidScene: if no scene is given, more than 255 are, a scene lacks a band, a band
            file cannot be read, or scenes disagree on a band's data type.
        InvalidRaster: if a band's nodata does not fit its data type.
        ValueError: if a band has no nodata in ``band_nodata``, a resampling method is
            unknown, or ``block_size`` < 1.
    """
    all_bands = [quality_band, *(band for band in dict.fromkeys(bands) if band != quality_band)]
    _check_merge_arguments(scenes, all_bands, band_nodata, block_size)
    methods = {
        band: _resampling(
            (resampling or {}).get(band, QUALITY_RESAMPLING if band == quality_band else SPECTRAL_RESAMPLING)
        )
        for band in all_bands
    }
    dst_crs = CRS.from_user_input(dst_crs)
    with contextlib.ExitStack() as stack:
        datasets = [
            {band: _open_scene_band(stack, scene, index, band) for band in all_bands}
            for index, scene in enumerate(scenes)
        ]
        dtypes = _band_dtypes(datasets, all_bands, band_nodata)
        merged = {band: np.full(dst_shape, band_nodata[band], dtype=dtypes[band]) for band in all_bands}
        datasource = np.full(dst_shape, DATASOURCE_NODATA, dtype=np.uint8)
        reaches = [_scene_extent_in(dataset[quality_band], dst_crs) for dataset in datasets]
        vrts: dict[tuple[int, str], WarpedVRT] = {}

        def warped(index: int, band: str, window: Window) -> np.ndarray:
            key = (index, band)
            if key not in vrts:
                vrts[key] = stack.enter_context(
                    _warped_vrt(
                        datasets[index][band],
                        dst_crs=dst_crs,
                        dst_transform=dst_transform,
                        dst_shape=dst_shape,
                        src_nodata=band_nodata[band],
                        dst_nodata=band_nodata[band],
                        resampling=methods[band],
                        dtype=dtypes[band],
                    )
                )
            return vrts[key].read(1, window=window)

        for window in _blocks(dst_shape, block_size):
            block = window.toslices()
            block_bounds = _window_bounds(window, dst_transform)
            filled = np.zeros((window.height, window.width), dtype=bool)
            for index in range(len(scenes)):
                if not _overlaps(reaches[index], block_bounds):
                    continue
                quality = warped(index, quality_band, window)
                take = ~filled & _valid(quality, band_nodata[quality_band])
                if not take.any():
                    continue
                merged[quality_band][block][take] = quality[take]
                for band in all_bands[1:]:
                    merged[band][block][take] = warped(index, band, window)[take]
                datasource[block][take] = index
                filled |= take
                if filled.all():
                    break
    merged[DATASOURCE] = datasource
    return merged


@contextlib.contextmanager
def _warped_vrt(
    src: DatasetReader,
    *,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    src_nodata: float | int | None,
    dst_nodata: float | int,
    resampling: Resampling,
    dtype: np.dtype,
) -> Iterator[WarpedVRT]:
    """A ``WarpedVRT`` of ``src`` laid over the destination grid."""
    if src.crs is None:
        raise InvalidRaster(f"{src.name}: no CRS")
    options = {"src_nodata": src_nodata} if src_nodata is not None else {}
    with WarpedVRT(
        src,
        crs=CRS.from_user_input(dst_crs),
        transform=dst_transform,
        height=dst_shape[0],
        width=dst_shape[1],
        nodata=dst_nodata,
        resampling=resampling,
        dtype=np.dtype(dtype).name,
        **options,
    ) as vrt:
        yield vrt


def _resampling(name: str) -> Resampling:
    """The ``Resampling`` member called ``name``."""
    try:
        return Resampling[name]
    except KeyError:
        known = ", ".join(member.name for member in Resampling)
        raise ValueError(f"unknown resampling {name!r}; use one of {known}") from None


def _blocks(dst_shape: tuple[int, int], block_size: int | None) -> Iterator[Window]:
    """Windows covering a ``dst_shape`` grid row by row; one window when ``block_size`` is None."""
    height, width = dst_shape
    step_rows = block_size or height
    step_cols = block_size or width
    for row in range(0, height, step_rows):
        for col in range(0, width, step_cols):
            yield Window(col, row, min(step_cols, width - col), min(step_rows, height - row))


def _valid(array: np.ndarray, nodata: float | int | None) -> np.ndarray:
    """True where ``array`` is not ``nodata`` and not NaN."""
    valid = ~np.isnan(array) if array.dtype.kind == "f" else np.ones(array.shape, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        valid &= array != nodata
    return valid


def _check_nodata_fits(nodata: float | int, dtype: np.dtype, name: str) -> None:
    """Raise ``InvalidRaster`` if ``nodata`` cannot be stored exactly in ``dtype``."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not math.isfinite(nodata) or nodata != int(nodata) or not info.min <= nodata <= info.max:
            raise InvalidRaster(f"{name}: nodata {nodata} does not fit {dtype}")


def _check_merge_arguments(
    scenes: Sequence[Mapping[str, str | os.PathLike[str]]],
    all_bands: Sequence[str],
    band_nodata: Mapping[str, float | int],
    block_size: int | None,
) -> None:
    """Raise if the scenes, nodata table or block size cannot describe a merge."""
    if not scenes:
        raise InvalidScene("merge: no scenes given; cannot tell the bands' data types")
    if len(scenes) > DATASOURCE_NODATA:
        raise InvalidScene(f"merge: {len(scenes)} scenes, at most 255 fit in DATASOURCE")
    for index, scene in enumerate(scenes):
        missing = [band for band in all_bands if band not in scene]
        if missing:
            raise InvalidScene(f"merge scene {index}: band(s) {missing} missing; it has {sorted(scene)}")
    missing_nodata = [band for band in all_bands if band not in band_nodata]
    if missing_nodata:
        raise ValueError(f"merge: no nodata value for band(s) {missing_nodata}")
    if block_size is not None and block_size < 1:
        raise ValueError(f"merge: block_size must be at least 1, got {block_size}")


def _open_scene_band(
    stack: contextlib.ExitStack, scene: Mapping[str, str | os.PathLike[str]], index: int, band: str
) -> DatasetReader:
    """Open one band file of a scene for the length of the merge."""
    path = Path(scene[band])
    try:
        return stack.enter_context(rasterio.open(path))
    except RasterioIOError as error:
        raise InvalidScene(f"merge scene {index}: band {band} file {path} cannot be read ({error})") from error


def _band_dtypes(
    datasets: Sequence[Mapping[str, DatasetReader]],
    all_bands: Sequence[str],
    band_nodata: Mapping[str, float | int],
) -> dict[str, np.dtype]:
    """Each band's data type, the same in every scene; its nodata must fit that type."""
    dtypes: dict[str, np.dtype] = {}
    for band in all_bands:
        found = {np.dtype(scene[band].dtypes[0]): scene[band].name for scene in datasets}
        if len(found) > 1:
            raise InvalidScene(f"merge: band {band} has different data types across scenes: {found}")
        dtypes[band] = next(iter(found))
        _check_nodata_fits(band_nodata[band], dtypes[band], f"merge band {band}")
    return dtypes


def _scene_extent_in(src: DatasetReader, dst_crs: CRS) -> tuple[float, float, float, float] | None:
    """Bounds of ``src`` in ``dst_crs``; None when they cannot be computed (then assume overlap)."""
    if src.crs is None:
        raise InvalidScene(f"{src.name}: no CRS")
    try:
        return transform_bounds(src.crs, dst_crs, *src.bounds, densify_pts=21)
    except Exception:  # projection failures only disable the read-skipping shortcut
        return None


def _window_bounds(window: Window, transform: Affine) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of a window of a grid, whatever the transform's orientation."""
    cols = (window.col_off, window.col_off + window.width)
    rows = (window.row_off, window.row_off + window.height)
    xs, ys = zip(*(transform @ (col, row) for col in cols for row in rows), strict=True)
    return (min(xs), min(ys), max(xs), max(ys))


def _overlaps(extent: tuple[float, float, float, float] | None, bounds: tuple[float, float, float, float]) -> bool:
    """Whether a scene extent may touch a block's bounds (None: unknown, so yes)."""
    if extent is None or not all(math.isfinite(value) for value in extent):
        return True
    left, bottom, right, top = bounds
    return extent[0] < right and extent[2] > left and extent[1] < top and extent[3] > bottom
