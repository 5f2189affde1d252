"""The merge core: warp scene bands onto a tile grid and mosaic several scenes of one date.

The destination grid is always explicit: ``dst_crs``, ``dst_transform`` and
``dst_shape = (height, width)``. Files are warped through a ``WarpedVRT`` laid over that grid,
so reading a window of the destination only reads the source blocks under that window.
Source nodata is handed to GDAL, which leaves nodata pixels out of every resampling kernel:
bilinear or cubic never blend nodata into valid values.

Default resampling: nearest for quality and class bands (values are bit fields or classes,
interpolating them is meaningless), bilinear for spectral bands.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from cube_assets.errors import InvalidRaster, InvalidScene

DATASOURCE = "DATASOURCE"
"""Name of the band recording which scene (index in priority order) gave each pixel."""
DATASOURCE_NODATA = 255
"""DATASOURCE value of pixels no scene covers; hence at most 255 scenes per merge."""
QUALITY_RESAMPLING = "nearest"
SPECTRAL_RESAMPLING = "bilinear"

ArraySource = tuple[np.ndarray, CRS | str | int, Affine]
Source = str | os.PathLike[str] | ArraySource


def warp_to_grid(
    source: Source,
    *,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    dst_nodata: float | int,
    src_nodata: float | int | None = None,
    resampling: str = "nearest",
    dtype: str | np.dtype | None = None,
    window: Window | None = None,
    band: int = 1,
) -> np.ndarray:
    """Warp one band onto the destination grid, or onto a window of it.

    ``source`` is a raster path (band ``band`` is read) or an ``(array, crs, transform)``
    tuple with a 2-D array. ``src_nodata=None`` uses the file's own nodata (an array then has
    none); a value overrides it. Source nodata pixels are excluded from resampling and, like
    destination pixels the source does not cover, come out as ``dst_nodata``. ``resampling``
    is a ``rasterio.enums.Resampling`` name ("nearest", "bilinear", "cubic", "average",
    "mode", ...). GDAL's approximate transformer is used (error at most 0.125 pixel).

    Returns:
        A ``(height, width)`` array of the destination grid (or of ``window``), of type
        ``dtype`` or else the source's type.

    Raises:
        InvalidRaster: if the file cannot be read or lacks band ``band`` or georeferencing, the
            array is not 2-D, ``window`` is not inside the grid, or ``dst_nodata`` does not
            fit the output type.
        ValueError: if ``resampling`` is not a known method.
    """
    method = _resampling(resampling)
    window = _grid_window(dst_shape, window)
    if isinstance(source, tuple):
        return _warp_array(
            source,
            dst_crs=CRS.from_user_input(dst_crs),
            dst_transform=dst_transform @ Affine.translation(window.col_off, window.row_off),
            dst_shape=(window.height, window.width),
            src_nodata=src_nodata,
            dst_nodata=dst_nodata,
            resampling=method,
            dtype=dtype,
        )
    path = Path(source)
    try:
        with rasterio.open(path) as src:
            if not 1 <= band <= src.count:
                raise InvalidRaster(f"{path}: no band {band} (the file has {src.count})")
            out_dtype = np.dtype(dtype or src.dtypes[band - 1])
            _check_nodata_fits(dst_nodata, out_dtype, str(path))
            with _warped_vrt(
                src,
                dst_crs=dst_crs,
                dst_transform=dst_transform,
                dst_shape=dst_shape,
                src_nodata=src_nodata,
                dst_nodata=dst_nodata,
                resampling=method,
                dtype=out_dtype,
            ) as vrt:
                return vrt.read(band, window=window)
    except RasterioIOError as error:
        raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error


def mosaic_first_valid(
    arrays: Sequence[np.ndarray], nodata: float | int
) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic same-shaped arrays: at each pixel the first array (in order) with a valid value wins.

    A value is valid when it is not ``nodata`` and not NaN.

    Returns:
        ``(mosaic, source_index)``: the mosaic, of the first array's type, ``nodata`` where no
        array is valid; and a uint8 array giving, per pixel, the index of the array that
        supplied it, 255 (``DATASOURCE_NODATA``) where none did.

    Raises:
        InvalidRaster: if ``arrays`` is empty, holds more than 255 arrays, or shapes differ.
    """
    if not arrays:
        raise InvalidRaster("mosaic_first_valid: no arrays to mosaic")
    if len(arrays) > DATASOURCE_NODATA:
        raise InvalidRaster(f"mosaic_first_valid: {len(arrays)} arrays, at most 255 can be indexed")
    shape = arrays[0].shape
    for index, array in enumerate(arrays):
        if array.shape != shape:
            raise InvalidRaster(
                f"mosaic_first_valid: array {index} has shape {array.shape}, array 0 has {shape}"
            )
    mosaic = np.full(shape, nodata, dtype=arrays[0].dtype)
    source_index = np.full(shape, DATASOURCE_NODATA, dtype=np.uint8)
    for index, array in enumerate(arrays):
        take = (source_index == DATASOURCE_NODATA) & _valid(array, nodata)
        mosaic[take] = array[take]
        source_index[take] = index
    return mosaic, source_index


def merge_scenes_to_tile(
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
        type equals the source band's data type: no scaling, no promotion) and ``"DATASOURCE"`` (uint8, index of the winning scene,
        255 where none).

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


def _warp_array(
    source: ArraySource,
    *,
    dst_crs: CRS,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    src_nodata: float | int | None,
    dst_nodata: float | int,
    resampling: Resampling,
    dtype: str | np.dtype | None,
) -> np.ndarray:
    """``rasterio.warp.reproject`` of an in-memory ``(array, crs, transform)`` band."""
    array, src_crs, src_transform = source
    array = np.asarray(array)
    if array.ndim != 2 or 0 in array.shape:
        raise InvalidRaster(f"warp source array: expected a non-empty 2-D array, got shape {array.shape}")
    out_dtype = np.dtype(dtype or array.dtype)
    _check_nodata_fits(dst_nodata, out_dtype, "warp source array")
    destination = np.full(dst_shape, dst_nodata, dtype=out_dtype)
    reproject(
        source=array,
        destination=destination,
        src_transform=src_transform,
        src_crs=CRS.from_user_input(src_crs),
        src_nodata=src_nodata,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=dst_nodata,
        resampling=resampling,
    )
    return destination


def _resampling(name: str) -> Resampling:
    """The ``Resampling`` member called ``name``."""
    try:
        return Resampling[name]
    except KeyError:
        known = ", ".join(member.name for member in Resampling)
        raise ValueError(f"unknown resampling {name!r}; use one of {known}") from None


def _grid_window(dst_shape: tuple[int, int], window: Window | None) -> Window:
    """``window`` (default: the whole grid), checked to lie inside a ``dst_shape`` grid."""
    height, width = dst_shape
    if height < 1 or width < 1:
        raise InvalidRaster(f"destination grid shape {dst_shape} is empty")
    if window is None:
        return Window(0, 0, width, height)
    window = window.round_offsets().round_lengths()
    if (
        window.col_off < 0
        or window.row_off < 0
        or window.width < 1
        or window.height < 1
        or window.col_off + window.width > width
        or window.row_off + window.height > height
    ):
        raise InvalidRaster(f"window {window} is not inside the destination grid of shape {dst_shape}")
    return window


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
        raise InvalidScene(
            f"merge scene {index}: band {band} file {path} cannot be read ({error})"
        ) from error


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
    except Exception:  # noqa: BLE001 - projection failures only disable the read-skipping shortcut
        return None


def _window_bounds(window: Window, transform: Affine) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of a window of a grid, whatever the transform's orientation."""
    cols = (window.col_off, window.col_off + window.width)
    rows = (window.row_off, window.row_off + window.height)
    xs, ys = zip(*(transform @ (col, row) for col in cols for row in rows), strict=True)
    return (min(xs), min(ys), max(xs), max(ys))


def _overlaps(
    extent: tuple[float, float, float, float] | None, bounds: tuple[float, float, float, float]
) -> bool:
    """Whether a scene extent may touch a block's bounds (None: unknown, so yes)."""
    if extent is None or not all(math.isfinite(value) for value in extent):
        return True
    left, bottom, right, top = bounds
    return extent[0] < right and extent[2] > left and extent[1] < top and extent[3] > bottom
