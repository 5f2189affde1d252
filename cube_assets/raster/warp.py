"""The merge core: warp scene bands onto a tile grid and mosaic several scenes of one date.

The destination grid is always explicit: ``dst_crs``, ``dst_transform`` and
``dst_shape = (height, width)``. Files are warped through a ``WarpedVRT`` laid over that grid,
so reading a window of the destination only reads the source blocks under that window.
Source nodata is handed to GDAL, which leaves nodata pixels out of every resampling kernel:
bilinear or cubic never blend nodata into valid values.

Default resampling: nearest for quality and class bands (values are bit fields or classes,
interpolating them is meaningless), bilinear for spectral bands.

A whole tile is merged window by window (``merge_scenes_to_files``): each window of every
scene is warped in fixed tile-aligned blocks (``WARP_BLOCK``), mosaicked, its quality masked
and counted, and written to per-band files, so memory does not grow with the tile.
``merge_scenes_to_tile`` gathers the same windows into whole-tile arrays, for small grids.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from cube_assets.errors import InvalidRaster, InvalidScene
from cube_assets.raster.inputs import open_input
from cube_assets.raster.masks import (
    QualityClass,
    QualityRules,
    classify_quality,
    propagate_spectral_nodata,
    rules_from_config,
)
from cube_assets.raster.product_limits import ANY_SCENE
from cube_assets.raster.windowed_io import (
    Finalize,
    block_windows,
    check_nodata_fits,
    gdal_cache_limit,
    open_writers,
    output_profile,
    read_warped_band,
    staged_outputs,
    warped_view,
    write_window,
)

DATASOURCE = "DATASOURCE"
"""Name of the band recording which scene (index in priority order) gave each pixel."""
DATASOURCE_NODATA = 255
"""DATASOURCE value of pixels no scene covers; hence at most 255 scenes per merge."""
QUALITY_RESAMPLING = "nearest"
SPECTRAL_RESAMPLING = "bilinear"

WARP_BLOCK = 1024
"""Side, in pixels, of the tile-aligned blocks in which a merge warps each scene onto the tile.

GDAL warps a requested region with an approximate transformer (exact at a few points of each
row, interpolated in between, within 1/8 pixel), so a pixel's warped value depends on the region
it was warped in: on the real T29UNU product warped to a 30 m grid, reading the same WarpedVRT
in 1024 px windows instead of 777 px windows changes about 10,000 nearest and 1.6 M bilinear
pixels. A merge therefore always warps the same blocks, whatever window it processes, so its
pixels do not depend on the window size. 1024 is the block the whole-tile merge warped in, so
they are also the pixels it gave."""
DEFAULT_WARP_THREADS = 4
"""At most this many bands of a scene are warped at once by default (fewer on fewer CPUs)."""
MIN_BAND_OVERLAP = 0.5
"""Share of the smaller extent that the bands of one scene must have in common with its quality band.

The bands of a product cover the same ground (a Sentinel-2 tile at 10, 20 and 60 m has the same
bounds), so a band that, transformed into the quality band's CRS, covers less than this is not
of the same scene: merged, it would blank every pixel it misses."""
MERGE_GDAL_CACHE_BYTES = 64 * 1024 * 1024
"""GDAL block cache while merging: it holds decoded scene blocks and output blocks waiting to be
written, so a bounded cache bounds the merge's memory (GDAL's default is 5 % of the RAM). In
bytes, as ``composite.GDAL_CACHE_BYTES``."""

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
            check_nodata_fits(dst_nodata, out_dtype, str(path))
            warped, _ = read_warped_band(
                src,
                band,
                dst_crs=dst_crs,
                dst_transform=dst_transform,
                dst_shape=dst_shape,
                src_nodata=src_nodata,
                dst_nodata=dst_nodata,
                resampling=method,
                dtype=out_dtype,
                window=window,
            )
            return warped
    except RasterioIOError as error:
        raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error


def mosaic_first_valid(arrays: Sequence[np.ndarray], nodata: float | int) -> tuple[np.ndarray, np.ndarray]:
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
            raise InvalidRaster(f"mosaic_first_valid: array {index} has shape {array.shape}, array 0 has {shape}")
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
    """Merge the scenes of one date onto a tile grid, all bands of a pixel from one scene, in memory.

    The rule is ``SceneMosaic.read``'s (first scene whose warped ``quality_band`` is valid wins
    the pixel, for every band; DATASOURCE records it); this function only gathers the windows
    into whole-tile arrays, which suits small grids and tests. Whole tiles go through
    ``merge_scenes_to_files``, whose memory does not grow with the tile. If no scene covers
    the tile, the result is an empty merge: full nodata, with the usual shapes and types.

    ``band_nodata[band]`` is that band's nodata both in the source files (overriding the
    files' own tags) and in the output. ``resampling`` maps band to method; missing bands get
    nearest for the quality band and bilinear otherwise. ``block_size`` is the warp block
    (default ``WARP_BLOCK``); merges compared pixel for pixel must use the same one.

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
    with open_scene_mosaic(
        scenes,
        bands=bands,
        quality_band=quality_band,
        dst_crs=dst_crs,
        dst_transform=dst_transform,
        dst_shape=dst_shape,
        band_nodata=band_nodata,
        resampling=resampling,
        warp_block=WARP_BLOCK if block_size is None else block_size,
        threads=1,
    ) as mosaic:
        merged = {band: np.empty(dst_shape, dtype=dtype) for band, dtype in mosaic.dtypes.items()}
        for window in mosaic.windows():
            for band, array in mosaic.read(window).items():
                merged[band][window.toslices()] = array
    return merged


class SceneMosaic:
    """The scenes of one date laid over a tile grid, merged one window at a time.

    Made by ``open_scene_mosaic`` (which opens every band file and closes them on exit).
    Each scene band is a ``WarpedVRT`` over the whole grid, read in tile-aligned blocks of
    ``warp_block`` pixels (see ``WARP_BLOCK``): a window is merged block by block, and only
    the source blocks under a warp block are decoded. Blocks a scene does not reach never
    read it, and once every pixel of a block has a winner the remaining scenes are skipped.

    Attributes:
        bands: the quality band, then the spectral bands, then ``"DATASOURCE"``.
        dtypes: each of ``bands``' data type (the source files'; uint8 for DATASOURCE).
        nodata: each of ``bands``' nodata (255 for DATASOURCE).
        shape: the grid's ``(height, width)``.
        warp_block: the warp block side in pixels.
    """

    def __init__(
        self,
        stack: contextlib.ExitStack,
        scenes: Sequence[Mapping[str, str | os.PathLike[str]]],
        *,
        all_bands: Sequence[str],
        dst_crs: CRS,
        dst_transform: Affine,
        dst_shape: tuple[int, int],
        band_nodata: Mapping[str, float | int],
        methods: Mapping[str, Resampling],
        warp_block: int,
        pool: ThreadPoolExecutor | None,
    ) -> None:
        self._stack = stack
        self._paths = [{band: Path(scene[band]) for band in all_bands} for scene in scenes]
        self._datasets = [
            {band: _open_scene_band(stack, scene, index, band) for band in all_bands}
            for index, scene in enumerate(scenes)
        ]
        for index, (paths, datasets) in enumerate(zip(self._paths, self._datasets, strict=True)):
            _check_bands_agree(index, paths, datasets, all_bands[0])
        band_dtypes = _band_dtypes(self._datasets, all_bands, band_nodata)
        self._quality_band, self._spectral = all_bands[0], list(all_bands[1:])
        self._crs, self._transform, self.shape = dst_crs, dst_transform, dst_shape
        self._methods = methods
        self._pool = pool
        self.warp_block = warp_block
        self.bands = (*all_bands, DATASOURCE)
        self.dtypes = {**band_dtypes, DATASOURCE: np.dtype(np.uint8)}
        self.nodata = {**{band: band_nodata[band] for band in all_bands}, DATASOURCE: DATASOURCE_NODATA}
        self._reaches = [_scene_extent_in(dataset[self._quality_band], dst_crs) for dataset in self._datasets]
        self._vrts: dict[tuple[int, str], WarpedVRT] = {}
        self._vrt_lock = threading.Lock()

    def windows(self, window_size: int | None = None) -> list[Window]:
        """Row-major windows of ``window_size`` pixels covering the grid (default: the warp block).

        Raises:
            ValueError: if ``window_size`` is not a positive multiple of ``warp_block``.
        """
        size = self.warp_block if window_size is None else window_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % self.warp_block:
            raise ValueError(
                f"merge window size {window_size!r} must be a positive multiple of the warp block {self.warp_block}"
            )
        return list(block_windows(self.shape[1], self.shape[0], size))

    def read(self, window: Window) -> dict[str, np.ndarray]:
        """Merge ``window`` of the grid: every band of each pixel from the first scene with a valid quality.

        Rule: scenes are in priority order; at each pixel the winner is the
        first scene whose warped quality band is not nodata there, and every band of that
        pixel is taken from it, so bands stay consistent (a winner's spectral band may still
        be nodata there, e.g. where bilinear found no valid neighbour). Pixels no scene's
        quality covers are nodata in every band and 255 in DATASOURCE.

        Returns:
            ``{band: array}`` for every one of ``bands``, each of the window's shape.

        Raises:
            ValueError: if ``window`` does not lie inside the grid on warp-block boundaries
                (as those of ``windows()`` do).
            InvalidScene: naming the scene, band and file, if a scene file cannot be read.
        """
        window = self._check_window(window)
        shape = (int(window.height), int(window.width))
        merged = {band: np.full(shape, self.nodata[band], dtype=self.dtypes[band]) for band in self.bands}
        for block in block_windows(shape[1], shape[0], self.warp_block):
            grid_block = Window(
                window.col_off + block.col_off, window.row_off + block.row_off, block.width, block.height
            )
            self._merge_block(grid_block, {band: array[block.toslices()] for band, array in merged.items()})
        return merged

    def _merge_block(self, block: Window, merged: Mapping[str, np.ndarray]) -> None:
        """Fill the views ``merged`` of one warp block (already nodata) from the scenes."""
        quality_band = self._quality_band
        bounds = _window_bounds(block, self._transform)
        filled = np.zeros((int(block.height), int(block.width)), dtype=bool)
        for index in range(len(self._datasets)):
            if not _overlaps(self._reaches[index], bounds):
                continue
            quality = self._warp(index, quality_band, block)
            take = ~filled & _valid(quality, self.nodata[quality_band])
            if not take.any():
                continue
            merged[quality_band][take] = quality[take]
            for band, values in zip(self._spectral, self._warp_bands(index, block), strict=True):
                merged[band][take] = values[take]
            merged[DATASOURCE][take] = index
            filled |= take
            if filled.all():
                break

    def _warp_bands(self, index: int, block: Window) -> list[np.ndarray]:
        """The spectral bands of scene ``index`` warped onto ``block``, one thread per band if pooled."""
        if self._pool is None or len(self._spectral) < 2:
            return [self._warp(index, band, block) for band in self._spectral]
        futures = [self._pool.submit(self._warp, index, band, block) for band in self._spectral]
        wait(futures)  # every read has finished before an error propagates and the files close
        return [future.result() for future in futures]

    def _warp(self, index: int, band: str, block: Window) -> np.ndarray:
        """Band ``band`` of scene ``index`` warped onto one warp block of the grid."""
        try:
            warped: np.ndarray = self._vrt(index, band).read(1, window=block)
            return warped
        except RasterioIOError as error:
            cause = f"{error}: {error.__cause__}" if error.__cause__ is not None else str(error)
            raise InvalidScene(
                f"merge scene {index}: band {band} file {self._paths[index][band]} cannot be read "
                f"in tile block {_window_text(block)} ({cause})"
            ) from error

    def _vrt(self, index: int, band: str) -> WarpedVRT:
        """The ``WarpedVRT`` of one scene band over the whole grid, made on first use."""
        key = (index, band)
        vrt = self._vrts.get(key)
        if vrt is None:
            with self._vrt_lock:
                vrt = self._vrts.get(key)
                if vrt is None:
                    vrt = self._stack.enter_context(
                        warped_view(
                            self._datasets[index][band],
                            dst_crs=self._crs,
                            dst_transform=self._transform,
                            dst_shape=self.shape,
                            src_nodata=self.nodata[band],
                            dst_nodata=self.nodata[band],
                            resampling=self._methods[band],
                            dtype=self.dtypes[band],
                        )
                    )
                    self._vrts[key] = vrt
        return vrt

    def _check_window(self, window: Window) -> Window:
        """``window`` rounded to whole pixels.

        Raises ``ValueError`` unless it lies inside the grid on warp-block boundaries.
        """
        height, width = self.shape
        window = window.round_offsets().round_lengths()
        col, row, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        inside = col >= 0 and row >= 0 and w >= 1 and h >= 1 and col + w <= width and row + h <= height
        aligned = (
            col % self.warp_block == 0
            and row % self.warp_block == 0
            and (w % self.warp_block == 0 or col + w == width)
            and (h % self.warp_block == 0 or row + h == height)
        )
        if not (inside and aligned):
            raise ValueError(
                f"merge window {_window_text(window)} is not on {self.warp_block} px warp-block boundaries "
                f"inside the grid of shape {self.shape}"
            )
        return Window(col, row, w, h)


@contextlib.contextmanager
def open_scene_mosaic(
    scenes: Sequence[Mapping[str, str | os.PathLike[str]]],
    *,
    bands: Sequence[str],
    quality_band: str,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    band_nodata: Mapping[str, float | int],
    resampling: Mapping[str, str] | None = None,
    warp_block: int = WARP_BLOCK,
    threads: int | None = None,
) -> Iterator[SceneMosaic]:
    """Open the scenes of one date over a tile grid, to merge them window by window.

    ``scenes`` are in priority order, each mapping band name to a file whose band 1 is read.
    ``band_nodata[band]`` is that band's nodata both in the source files (overriding the
    files' own tags, e.g. the fill value of a quality band that declares none) and in the
    output. ``resampling`` maps band to method; missing bands get nearest for the quality band
    and bilinear otherwise. ``warp_block`` is the warp block side (``WARP_BLOCK``). Up to
    ``threads`` bands of a scene are warped at once (default: the CPU count, at most
    ``DEFAULT_WARP_THREADS``; 1 warps in the calling thread).

    Returns:
        A context manager yielding a ``SceneMosaic``; the files close when it exits.

    Raises:
        InvalidScene: if no scene is given, more than 255 are, a scene lacks a band, a band
            file cannot be opened, or scenes disagree on a band's data type.
        InvalidRaster: if a band's nodata does not fit its data type.
        ValueError: if a band has no nodata in ``band_nodata``, a resampling method is
            unknown, ``warp_block`` < 1 or ``threads`` < 1.
    """
    all_bands = [quality_band, *(band for band in dict.fromkeys(bands) if band != quality_band)]
    _check_merge_arguments(scenes, all_bands, band_nodata, warp_block)
    methods = {
        band: _resampling(
            (resampling or {}).get(band, QUALITY_RESAMPLING if band == quality_band else SPECTRAL_RESAMPLING)
        )
        for band in all_bands
    }
    pool = _warp_pool(threads)
    with contextlib.ExitStack() as stack:
        if pool is not None:
            stack.callback(pool.shutdown)  # runs after the files below have closed: last in, first out
        yield SceneMosaic(
            stack,
            scenes,
            all_bands=all_bands,
            dst_crs=CRS.from_user_input(dst_crs),
            dst_transform=dst_transform,
            dst_shape=dst_shape,
            band_nodata=band_nodata,
            methods=methods,
            warp_block=warp_block,
            pool=pool,
        )


@dataclass(frozen=True)
class MergeStatistics:
    """Pixel counts of a merge's classified quality band, and the efficacy and cloud ratio derived from them."""

    total_pixels: int
    """Every pixel of the tile."""
    valid_pixels: int
    """Pixels whose quality class is not NODATA (clear, not clear or saturated)."""
    clear_pixels: int
    not_clear_pixels: int

    def __add__(self, other: MergeStatistics) -> MergeStatistics:
        return MergeStatistics(
            self.total_pixels + other.total_pixels,
            self.valid_pixels + other.valid_pixels,
            self.clear_pixels + other.clear_pixels,
            self.not_clear_pixels + other.not_clear_pixels,
        )

    @classmethod
    def of(cls, classes: np.ndarray) -> MergeStatistics:
        """The counts of one array of ``QualityClass`` codes."""
        return cls(
            int(classes.size),
            int(np.count_nonzero(classes != QualityClass.NODATA)),
            int(np.count_nonzero(classes == QualityClass.CLEAR)),
            int(np.count_nonzero(classes == QualityClass.NOT_CLEAR)),
        )

    @property
    def efficacy(self) -> float:
        """100 x clear pixels / all tile pixels (``masks.efficacy``'s rule); 0.0 for an empty tile."""
        return 100.0 * float(self.clear_pixels) / self.total_pixels if self.total_pixels else 0.0

    @property
    def cloud_ratio(self) -> float:
        """100 x not clear / (clear + not clear) (``masks.cloud_ratio``'s rule); 0.0 when both are 0."""
        observed = self.clear_pixels + self.not_clear_pixels
        return 100.0 * float(self.not_clear_pixels) / float(observed) if observed else 0.0


def merge_scenes_to_files(
    scenes: Sequence[Mapping[str, str | os.PathLike[str]]],
    *,
    bands: Sequence[str],
    quality_band: str,
    quality_rules: QualityRules | Mapping[str, Any],
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    band_nodata: Mapping[str, float | int],
    out_paths: Mapping[str, str | os.PathLike[str]],
    resampling: Mapping[str, str] | None = None,
    window_size: int = WARP_BLOCK,
    warp_block: int = WARP_BLOCK,
    finalize: Finalize | None = None,
    threads: int | None = None,
) -> MergeStatistics:
    """Merge the scenes of one date onto a tile grid window by window, writing one file per band.

    Rules: each window is merged by ``SceneMosaic.read`` (first scene
    with a valid quality wins every band of a pixel; DATASOURCE says which); a pixel that is
    nodata in any spectral band becomes nodata in the quality band
    (``propagate_spectral_nodata``); the quality is classified with ``quality_rules`` and
    counted for the statistics (efficacy = 100 x clear / all tile pixels, cloud ratio =
    100 x not clear / (clear + not clear)). Memory depends on ``window_size`` (a multiple of
    ``warp_block``) and the number of bands, not on the tile: GDAL's block cache is held to
    ``MERGE_GDAL_CACHE_BYTES``. The pixels and statistics do not depend on ``window_size``;
    they depend on ``warp_block`` (see ``WARP_BLOCK``).

    ``out_paths`` names the file of the quality band, every one of ``bands`` and
    ``"DATASOURCE"`` (uint8, nodata 255). Each is a tiled 512 x 512 GeoTIFF on the grid with
    the band's data type and nodata, compressed with the default codec and moved into place under its final
    name; with ``finalize`` it is written uncompressed under a temporary name and handed to
    ``finalize(tmp_tiff, final_path)`` (e.g. a COG conversion) once every window is written,
    then removed. On any error every temporary file, and every output this call had already
    finalized, is removed: no output is left half-written or out of step with the others.

    Returns:
        The merge's ``MergeStatistics``.

    Raises:
        InvalidScene: naming the scene, band and file, if a scene file cannot be read (when
            opened or in any window); and as ``open_scene_mosaic``.
        InvalidRaster: if a band's nodata does not fit its data type.
        ValueError: if ``out_paths`` lacks an output, ``window_size`` is not a positive
            multiple of ``warp_block``, or as ``open_scene_mosaic``.
    """
    rules = rules_from_config(quality_rules) if isinstance(quality_rules, Mapping) else quality_rules
    spectral = [band for band in dict.fromkeys(bands) if band != quality_band]
    missing = [name for name in (quality_band, *spectral, DATASOURCE) if name not in out_paths]
    if missing:
        raise ValueError(f"merge: no output path for {missing}")
    statistics = MergeStatistics(0, 0, 0, 0)
    # The outputs are staged once the scenes are open, and finalized when ``staging`` exits:
    # after the scenes, their warped views and GDAL's blocks of them have been released.
    with contextlib.ExitStack() as staging:
        with (
            gdal_cache_limit(MERGE_GDAL_CACHE_BYTES),
            open_scene_mosaic(
                scenes,
                bands=spectral,
                quality_band=quality_band,
                dst_crs=dst_crs,
                dst_transform=dst_transform,
                dst_shape=dst_shape,
                band_nodata=band_nodata,
                resampling=resampling,
                warp_block=warp_block,
                threads=threads,
            ) as mosaic,
            contextlib.ExitStack() as open_files,
        ):
            windows = mosaic.windows(window_size)
            staged = staging.enter_context(staged_outputs({band: out_paths[band] for band in mosaic.bands}, finalize))
            profiles = {
                band: output_profile(
                    mosaic.dtypes[band],
                    mosaic.nodata[band],
                    crs=dst_crs,
                    transform=dst_transform,
                    shape=dst_shape,
                    compress=finalize is None,
                )
                for band in mosaic.bands
            }
            writers = open_writers(open_files, staged, profiles)
            for window in windows:
                merged = mosaic.read(window)
                merged[quality_band] = propagate_spectral_nodata(
                    merged[quality_band],
                    [merged[band] for band in spectral],
                    [band_nodata[band] for band in spectral],
                    band_nodata[quality_band],
                )
                statistics = statistics + MergeStatistics.of(classify_quality(merged[quality_band], rules))
                write_window(writers, window, merged)
    return statistics


def _warp_pool(threads: int | None) -> ThreadPoolExecutor | None:
    """Threads that warp a scene's bands at once; None for one thread."""
    count = threads if threads is not None else min(DEFAULT_WARP_THREADS, os.cpu_count() or 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"merge threads must be an integer of at least 1, got {count!r}")
    return None if count == 1 else ThreadPoolExecutor(max_workers=count, thread_name_prefix="merge-warp")


def _window_text(window: Window) -> str:
    """``rows a..b, cols c..d`` of a window, for messages."""
    return (
        f"rows {int(window.row_off)}..{int(window.row_off + window.height) - 1}, "
        f"cols {int(window.col_off)}..{int(window.col_off + window.width) - 1}"
    )


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
    check_nodata_fits(dst_nodata, out_dtype, "warp source array")
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


def _valid(array: np.ndarray, nodata: float | int | None) -> np.ndarray:
    """True where ``array`` is not ``nodata`` and not NaN."""
    valid = ~np.isnan(array) if array.dtype.kind == "f" else np.ones(array.shape, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        valid &= array != nodata
    return valid


def _check_merge_arguments(
    scenes: Sequence[Mapping[str, str | os.PathLike[str]]],
    all_bands: Sequence[str],
    band_nodata: Mapping[str, float | int],
    warp_block: int,
) -> None:
    """Raise if the scenes, nodata table or warp block size cannot describe a merge."""
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
    if isinstance(warp_block, bool) or not isinstance(warp_block, int) or warp_block < 1:
        raise ValueError(f"merge: the warp block size must be an integer of at least 1, got {warp_block!r}")


def _open_scene_band(
    stack: contextlib.ExitStack, scene: Mapping[str, str | os.PathLike[str]], index: int, band: str
) -> DatasetReader:
    """Open one band file of a scene for the length of the merge, its header checked (``raster.inputs.open_input``)."""
    path = Path(scene[band])
    try:
        return stack.enter_context(open_input(path, limits=ANY_SCENE))
    except InvalidRaster as error:
        raise InvalidScene(f"merge scene {index}: band {band} file {error}") from error


def _check_bands_agree(
    index: int, paths: Mapping[str, Path], datasets: Mapping[str, DatasetReader], quality_band: str
) -> None:
    """Refuse a scene a band of which lies elsewhere than its quality band (see ``MIN_BAND_OVERLAP``).

    Raises:
        InvalidScene: naming the scene, both files, their CRSs and bounds.
    """
    reference = datasets[quality_band]
    for band, dataset in datasets.items():
        if band == quality_band:
            continue
        try:
            bounds = transform_bounds(dataset.crs, reference.crs, *dataset.bounds, densify_pts=21)
        except (RasterioError, CPLE_BaseError, ValueError):
            bounds = None
        if bounds is not None and _overlap_share(bounds, tuple(reference.bounds)) >= MIN_BAND_OVERLAP:
            continue
        where = (
            f"in the quality band's CRS it covers {_bounds_text(bounds)}"
            if bounds is not None
            else "it cannot be transformed into the quality band's CRS"
        )
        raise InvalidScene(
            f"merge scene {index}: band {band} file {paths[band]} ({_crs_text(dataset.crs)}, bounds "
            f"{_bounds_text(dataset.bounds)}) is not on the ground of its quality band {quality_band} file "
            f"{paths[quality_band]} ({_crs_text(reference.crs)}, bounds {_bounds_text(reference.bounds)}): {where}"
        )


def _overlap_share(a: Sequence[float], b: Sequence[float]) -> float:
    """Area of the intersection of two ``(left, bottom, right, top)`` boxes over the smaller box's area.

    0 when either box is degenerate.
    """
    if not all(math.isfinite(value) for value in (*a, *b)):
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    if width <= 0 or height <= 0 or smaller <= 0:
        return 0.0
    return width * height / smaller


def _bounds_text(bounds: Sequence[float]) -> str:
    """``(left, bottom, right, top)`` for messages: whole metres, or four decimals of degrees."""
    return (
        "(" + ", ".join(f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4f}" for value in tuple(bounds)[:4]) + ")"
    )


def _crs_text(crs: CRS) -> str:
    """``EPSG:n`` when the CRS has a code, else the start of its WKT."""
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_string()[:80]


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
        check_nodata_fits(band_nodata[band], dtypes[band], f"merge band {band}")
    return dtypes


def _scene_extent_in(src: DatasetReader, dst_crs: CRS) -> tuple[float, float, float, float] | None:
    """Bounds of ``src`` in ``dst_crs``; None when they cannot be computed (then assume overlap)."""
    if src.crs is None:
        raise InvalidScene(f"{src.name}: no CRS")
    try:
        extent: tuple[float, float, float, float] = transform_bounds(src.crs, dst_crs, *src.bounds, densify_pts=21)
        return extent
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
