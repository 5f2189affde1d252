"""The one windowed read / write / staging layer of the raster code.

What the merge (``warp``), the composites (``composite``) and the catalog's reads and writes
share when they move pixels between arrays and GeoTIFFs window by window:

* ``nodata_fits`` / ``check_nodata_fits``: whether a nodata value can be stored in a dtype;
* ``block_windows``: the row-major windows that tile a raster exactly once;
* ``open_aligned``: open a stack of single-band files that must share one grid and dtype;
* ``warped_view`` / ``read_warped_band``: a band of a file seen through a ``WarpedVRT`` laid over
  a destination grid, and one read of it (a window, optionally with its alpha band);
* ``output_profile``: the tiled single-band GeoTIFF every windowed output is written as;
* ``staged_outputs`` and ``open_writers`` / ``write_window``: outputs written under a temporary
  name in their destination folder, then moved into place atomically (or handed to a
  ``finalize`` such as a COG conversion), with nothing left behind on error;
* ``gdal_cache_limit``: GDAL's block cache held to a size while pixels move, and given back after.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.env
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from cube_assets.atomic import atomic_path, temporary_path
from cube_assets.errors import InvalidRaster
from cube_assets.raster.codecs import DEFAULT_COMPRESSION, compression_options

PathLike = str | os.PathLike[str]
Finalize = Callable[[Path, Path], None]
"""``finalize(staged_tiff, destination)``: writes ``destination`` from a finished staging file."""

OUTPUT_BLOCK_SIZE = 512
"""Tile side of the windowed GeoTIFF outputs (staging files and compressed outputs)."""


# --------------------------------------------------------------------------- nodata


def nodata_fits(nodata: float | int | None, dtype: Any) -> bool:
    """Whether ``nodata`` can be stored exactly in ``dtype``.

    Any value fits a float dtype; an integer dtype needs a finite whole number inside its
    range; ``None`` (no nodata) always fits.

    Returns:
        True when it fits.

    Raises:
        TypeError: if ``dtype`` is not a numpy dtype.
    """
    dtype = np.dtype(dtype)
    if nodata is None or dtype.kind not in "iu":
        return True
    info = np.iinfo(dtype)
    return math.isfinite(nodata) and float(nodata) == int(nodata) and info.min <= nodata <= info.max


def check_nodata_fits(nodata: float | int | None, dtype: Any, name: str) -> None:
    """Check that ``nodata`` can be stored exactly in ``dtype`` (see ``nodata_fits``).

    Returns:
        None.

    Raises:
        InvalidRaster: naming ``name`` (the file, band or array the nodata belongs to) if it
            does not fit.
    """
    if not nodata_fits(nodata, dtype):
        raise InvalidRaster(f"{name}: nodata {nodata} cannot be stored in {np.dtype(dtype)}")


# --------------------------------------------------------------------------- windows


def block_windows(width: int, height: int, block_size: int) -> Iterator[Window]:
    """Yield row-major windows of at most ``block_size`` x ``block_size`` covering the raster.

    Every pixel of a ``width`` x ``height`` raster lies in exactly one window; windows start
    at multiples of ``block_size``, and those of the last column and row are cut to the raster.

    Returns:
        An iterator of ``Window``.

    Raises:
        ValueError: if ``block_size`` is not positive.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    for row in range(0, height, block_size):
        for col in range(0, width, block_size):
            yield Window(col, row, min(block_size, width - col), min(block_size, height - row))


# --------------------------------------------------------------------------- reading


def open_aligned(stack: contextlib.ExitStack, paths: Sequence[PathLike], reference: Any | None) -> list[DatasetReader]:
    """Open every path for the life of ``stack``; all must share one dtype and one grid.

    The grid (shape, CRS, transform) is ``reference``'s, or else the first file's.

    Returns:
        The open datasets, in the order of ``paths``.

    Raises:
        InvalidRaster: naming the file, if it cannot be opened or its shape, CRS, transform
            or dtype differs from the reference (the dtype: from the first file).
    """
    datasets: list[DatasetReader] = []
    for path in paths:
        try:
            dataset = stack.enter_context(rasterio.open(path))
        except RasterioIOError as error:
            raise InvalidRaster(f"{path}: cannot be opened ({error})") from None
        reference = reference if reference is not None else dataset
        if (dataset.width, dataset.height) != (reference.width, reference.height):
            raise InvalidRaster(
                f"{path}: shape {dataset.height}x{dataset.width} differs from "
                f"{reference.name} {reference.height}x{reference.width}"
            )
        if dataset.crs != reference.crs:
            raise InvalidRaster(f"{path}: CRS {dataset.crs} differs from {reference.name} {reference.crs}")
        if not dataset.transform.almost_equals(reference.transform, precision=1e-9):
            raise InvalidRaster(f"{path}: transform {tuple(dataset.transform)[:6]} differs from {reference.name}")
        if datasets and dataset.dtypes[0] != datasets[0].dtypes[0]:
            raise InvalidRaster(
                f"{path}: dtype {dataset.dtypes[0]} differs from {datasets[0].name} {datasets[0].dtypes[0]}"
            )
        datasets.append(dataset)
    return datasets


@contextlib.contextmanager
def warped_view(
    src: DatasetReader,
    *,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    resampling: Resampling,
    dtype: Any,
    src_nodata: float | int | None = None,
    dst_nodata: float | int | None = None,
    add_alpha: bool = False,
) -> Iterator[WarpedVRT]:
    """A ``WarpedVRT`` of ``src`` laid over the ``dst_shape = (height, width)`` grid.

    Only the source blocks under what is read are warped (GDAL's approximate transformer,
    error at most 0.125 pixel). ``src_nodata=None`` keeps the file's own nodata; a value
    overrides it. ``dst_nodata=None`` lets GDAL choose the destination nodata (the source's).
    ``add_alpha`` adds a last band, 0 where the source has no valid pixel, warped in the same
    pass as the data (for files with no nodata).

    Returns:
        A context manager yielding the open ``WarpedVRT`` (its bands are the source's, plus the
        alpha band with ``add_alpha``), closed on exit.

    Raises:
        InvalidRaster: naming the file, if it has no CRS.
        TypeError: if ``dtype`` is not a numpy dtype.
    """
    if src.crs is None:
        raise InvalidRaster(f"{src.name}: no CRS")
    options: dict[str, Any] = {}
    if src_nodata is not None:
        options["src_nodata"] = src_nodata
    if dst_nodata is not None:
        options["nodata"] = dst_nodata
    if add_alpha:
        options["add_alpha"] = True
    with WarpedVRT(
        src,
        crs=CRS.from_user_input(dst_crs),
        transform=dst_transform,
        height=dst_shape[0],
        width=dst_shape[1],
        resampling=resampling,
        dtype=np.dtype(dtype).name,
        **options,
    ) as vrt:
        yield vrt


def read_warped_band(
    src: DatasetReader,
    band: int,
    *,
    dst_crs: CRS | str | int,
    dst_transform: Affine,
    dst_shape: tuple[int, int],
    resampling: Resampling,
    dtype: Any,
    src_nodata: float | int | None = None,
    dst_nodata: float | int | None = None,
    add_alpha: bool = False,
    window: Window | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read band ``band`` of ``src`` warped onto the destination grid, or onto ``window`` of it.

    One ``warped_view`` is opened for the read (see it for ``src_nodata``, ``dst_nodata`` and
    ``add_alpha``); destination pixels the source does not cover, and source nodata pixels,
    come out as the destination nodata.

    Returns:
        ``(values, alpha)``: the ``(height, width)`` values of the grid (or of ``window``) of
        type ``dtype``, and with ``add_alpha`` the warped alpha band read in the same pass
        (0 where not valid), else None.

    Raises:
        InvalidRaster: naming the file, if it has no CRS.
        rasterio.errors.RasterioIOError: if GDAL cannot read the source.
    """
    with warped_view(
        src,
        dst_crs=dst_crs,
        dst_transform=dst_transform,
        dst_shape=dst_shape,
        resampling=resampling,
        dtype=dtype,
        src_nodata=src_nodata,
        dst_nodata=dst_nodata,
        add_alpha=add_alpha,
    ) as vrt:
        if not add_alpha:
            values: np.ndarray = vrt.read(band, window=window)
            return values, None
        both: np.ndarray = vrt.read([band, vrt.count], window=window)
        return both[0], both[1]


# --------------------------------------------------------------------------- writing


def output_profile(
    dtype: Any,
    nodata: float | int | None,
    *,
    crs: CRS | str | int | None,
    transform: Affine,
    shape: tuple[int, int],
    compress: bool | str,
    predictor: bool = True,
) -> dict[str, Any]:
    """The profile of a tiled (512 x 512) single-band GeoTIFF on a grid of ``shape = (height, width)``.

    ``compress`` is a codec of ``codecs.COMPRESSIONS`` or True for ``codecs.DEFAULT_COMPRESSION``
    (at the codec's default level), with the predictor suiting the dtype (2 for integers, 3 for
    floats) unless ``predictor`` is False; False leaves it uncompressed (a staging file for a
    ``finalize`` that compresses it).

    Returns:
        A profile for ``rasterio.open(path, "w", **profile)``.

    Raises:
        TypeError: if ``dtype`` is not a numpy dtype.
        ValueError: if ``compress`` is not a known codec.
        rasterio.errors.CRSError: if ``crs`` is not a CRS.
    """
    dtype = np.dtype(dtype)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": 1,
        "height": shape[0],
        "width": shape[1],
        "dtype": dtype.name,
        "crs": CRS.from_user_input(crs) if crs is not None else None,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": OUTPUT_BLOCK_SIZE,
        "blockysize": OUTPUT_BLOCK_SIZE,
    }
    if compress is not False:
        codec = DEFAULT_COMPRESSION if compress is True else compress
        profile.update(compression_options(codec, dtype))
        if not predictor:
            profile.pop("predictor", None)
    return profile


@contextlib.contextmanager
def staged_outputs(
    destinations: Mapping[str, PathLike],
    finalize: Finalize | None = None,
    *,
    finalize_threads: int | None = None,
    thread_name_prefix: str = "finalize",
) -> Iterator[dict[str, Path]]:
    """Yield a temporary path per output name, in its destination's folder; put each in place on success.

    Without ``finalize`` each temporary file comes from ``atomic_path`` and is renamed onto its
    destination. With ``finalize``, ``finalize(tmp, destination)`` is called instead (it must
    write ``destination``, atomically if that matters): one output after another in the calling
    thread, or with ``finalize_threads`` up to that many at once in threads named
    ``thread_name_prefix`` (a COG conversion is mostly GDAL work outside the GIL); each
    temporary file is removed once its output is finalized. If one ``finalize`` fails, the
    outputs this call already finalized are removed again, so no output is left out of step with
    the others. In any case no temporary file (nor a GDAL sidecar of one) is left behind.

    Returns:
        A context manager yielding ``{name: temporary path}``.

    Raises:
        Whatever the block or a ``finalize`` raises (the first failure); ``OSError`` if a
        folder cannot be made or a file cannot be moved.
    """
    if finalize is None:
        with contextlib.ExitStack() as stack:
            yield {name: stack.enter_context(atomic_path(path)) for name, path in destinations.items()}
        return
    staged = {name: _staging_path(Path(path)) for name, path in destinations.items()}
    try:
        yield staged
        jobs = [(staged[name], Path(destinations[name])) for name in destinations]
        _finalize_all(jobs, finalize, finalize_threads, thread_name_prefix)
    finally:
        for tmp in staged.values():
            _remove_with_sidecars(tmp)


def open_writers(
    stack: contextlib.ExitStack, paths: Mapping[str, Path], profiles: Mapping[str, Mapping[str, Any]]
) -> dict[str, DatasetWriter]:
    """Open a GeoTIFF writer per output name for the life of ``stack``, with that name's profile.

    Returns:
        ``{name: writer}`` in the order of ``paths``.

    Raises:
        KeyError: if a name has no profile.
        rasterio.errors.RasterioIOError: if a file cannot be created.
    """
    return {name: stack.enter_context(rasterio.open(path, "w", **profiles[name])) for name, path in paths.items()}


def write_window(writers: Mapping[str, DatasetWriter], window: Window, arrays: Mapping[str, np.ndarray]) -> None:
    """Write each writer's array of ``arrays`` (by name) into band 1 at ``window``.

    Returns:
        None.

    Raises:
        KeyError: if a writer has no array.
        rasterio.errors.RasterioIOError: if GDAL cannot write.
    """
    for name, writer in writers.items():
        writer.write(arrays[name], 1, window=window)


def _staging_path(destination: Path) -> Path:
    """A fresh hidden staging file name beside ``destination`` (its folder is created)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    return temporary_path(destination.with_suffix(".tif"), "staging")


def _remove_with_sidecars(path: Path) -> None:
    """Remove ``path`` and the sidecars (``.aux.xml``, ``.ovr``) GDAL may have left beside it."""
    for leftover in path.parent.glob(path.name + "*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _finalize_all(
    jobs: Sequence[tuple[Path, Path]], finalize: Finalize, threads: int | None, thread_name_prefix: str
) -> None:
    """Run ``finalize`` on every ``(tmp, destination)``; on a failure remove the destinations done."""
    finalized: list[Path] = []
    try:
        if threads is None or len(jobs) == 1:
            for tmp, destination in jobs:
                _finalize_one(finalize, tmp, destination, finalized)
            return
        with ThreadPoolExecutor(max_workers=min(len(jobs), threads), thread_name_prefix=thread_name_prefix) as pool:
            futures = [pool.submit(_finalize_one, finalize, tmp, destination, finalized) for tmp, destination in jobs]
            wait(futures)
        for future in futures:
            future.result()
    except BaseException:
        for destination in finalized:
            destination.unlink(missing_ok=True)
        raise


def _finalize_one(finalize: Finalize, tmp: Path, destination: Path, finalized: list[Path]) -> None:
    """``finalize`` one output, note it in ``finalized`` and free its staging file at once."""
    finalize(tmp, destination)
    finalized.append(destination)
    _remove_with_sidecars(tmp)


__all__ = [
    "OUTPUT_BLOCK_SIZE",
    "Finalize",
    "PathLike",
    "block_windows",
    "check_nodata_fits",
    "nodata_fits",
    "open_aligned",
    "open_writers",
    "output_profile",
    "read_warped_band",
    "staged_outputs",
    "warped_view",
    "write_window",
]


class _GdalCacheHolders:
    """Who holds GDAL's block cache to a limit now, and the size to give back when the last one is done.

    GDAL's cache size is one setting of the whole process. ``rasterio.Env`` restores it on exit
    only when it is the outermost environment: nested in another one (the S3 store's
    ``gdal_environment``), it leaves the limit in place for everything the process does next.
    Several threads may hold a limit at once (COG conversions run in parallel), so the size
    before the first one is given back when the last one leaves.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._previous: Any = None

    def enter(self) -> None:
        with self._lock:
            if self._count == 0:
                self._previous = rasterio.env.get_gdal_config("GDAL_CACHEMAX")
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and self._previous is not None:
                rasterio.env.set_gdal_config("GDAL_CACHEMAX", self._previous)


_GDAL_CACHE_HOLDERS = _GdalCacheHolders()


@contextlib.contextmanager
def gdal_cache_limit(cache_bytes: int, **options: Any) -> Iterator[None]:
    """``rasterio.Env(GDAL_CACHEMAX=cache_bytes, **options)``, with GDAL's cache size given back afterwards.

    ``cache_bytes`` is in bytes (rasterio applies it with ``GDALSetCacheMax64``; GDAL itself
    would read a small number as megabytes).

    Returns:
        A context manager; inside it GDAL's block cache holds at most ``cache_bytes``.

    Raises:
        Nothing of its own; errors of the body pass through, and the cache size is still given back.
    """
    _GDAL_CACHE_HOLDERS.enter()
    try:
        with rasterio.Env(GDAL_CACHEMAX=cache_bytes, **options):
            yield
    finally:
        _GDAL_CACHE_HOLDERS.leave()
