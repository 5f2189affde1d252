"""Load catalog images' pixels onto a :class:`~cube_assets.client.geocontext.GeoContext`.

The catalog object model (``Image``/``ImageCollection``) calls these with plain data:

* ``images``: one mapping per image from band name to its file: a local path, a GDAL path
  (``/vsis3/bucket/key``), an ``s3://``/``gs://``/``http(s)://`` URI (turned into a GDAL path by
  :func:`gdal_path`), or ``(path, band_number)`` for band ``band_number`` (1-based) of a
  multi-band file; a plain path means its band 1.
* ``band_meta``: ``{band: metadata}`` (a ``BandRecord``, a catalog ``Band`` row, a
  :class:`~cube_assets.client.scaling.BandInfo` or a plain dict with ``data_type``, ``nodata``,
  ``type`` and the ranges), shared by every image, or a sequence with one such mapping per image
  when images come from products that differ. :func:`band_meta_from_files` reads data types and
  nodata from the files when there is no catalog.
* ``geocontext``: the destination grid.

Every band of every image is warped onto the grid through a ``WarpedVRT`` (only the source
blocks under the grid are read; GDAL's approximate transformer, error at most 0.125 pixel), or,
when the image already shares the grid's CRS and pixel size and sits on whole-pixel offsets from
it, read directly through a window (no resampling). A COG's overviews are used when the grid is
at least twice as coarse as the file (the finest overview not coarser than the grid, as
``gdalwarp`` does). Images are read in parallel threads (each opens its own datasets; GDAL config
options, including credentials set with ``rasterio.Env(session=...)`` in the caller, are global
and reach them), with an optional ``tqdm`` progress bar on stderr.

**Masks.** A pixel is masked where the band's nodata (the metadata's ``nodata`` when given, which
overrides the file's own, else the file's nodata or mask band) is found, where the image does not
cover the grid, and where a float value is NaN. Masked data holds the band's nodata in unscaled
output (0 when there is none or it does not fit the output type) and 0 in scaled output.

**Alpha.** With ``alpha`` (a band name), every band of an image is also masked where that
image's alpha band is 0: those pixels are transparent, in a stack and in a mosaic (where the image
below shows through). The result is then a masked array even with ``mask_nodata=False``.

**Mosaics** take, band by band and pixel by pixel, the last image in the given order whose pixel
is not masked (GDAL's VRT mosaic rule: later sources are painted over earlier ones, nodata is
transparent). **Flattening** (the client's ``flatten=["acquired.date"]``): images sharing a group
key are mosaicked into one layer of the stack; layers come out sorted by key, and within a group
the input order decides which image wins. :func:`flatten_keys` computes the keys from dotted
attribute paths or callables, as the client's ``Collection.groupby`` does, except that a path step
that yields a method is called: ``"acquired.date"`` on a ``datetime`` is its calendar date (UTC for
the catalog's UTC ``acquired``), which is what the client meant by it.

**Scaling** is resolved once for the whole call by
:func:`~cube_assets.client.scaling.scaling_parameters` and applied to each layer (each image of
a stack, each group when flattening, the whole mosaic); ``auto`` scales from each layer's own
min and max.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import tempfile
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from tqdm import tqdm

from cube_assets.atomic import atomic_path
from cube_assets.client.geocontext import GeoContext
from cube_assets.client.scaling import (
    BandInfo,
    Scale,
    apply_scaling,
    band_info,
    multiproduct_scaling_parameters,
    normalize_data_type,
    numpy_dtype,
)
from cube_assets.errors import InvalidRaster
from cube_assets.raster.cog import cog_from_file
from cube_assets.raster.windowed_io import check_nodata_fits, nodata_fits, read_warped_band

BandSource = str | os.PathLike[str] | tuple[str | os.PathLike[str], int]
"""A band's file: a path or URI (band 1), or ``(path, band_number)``."""
ImageSources = Mapping[str, BandSource]
"""One image: band name → file."""
BandMeta = Mapping[str, Any]
"""Band name → metadata (``BandRecord``, catalog ``Band``, ``BandInfo`` or dict)."""

#: File formats of :func:`download_files`/:func:`download_mosaic_files`: extension → GDAL driver.
FORMATS: dict[str, str] = {"tif": "GTiff", "tiff": "GTiff", "png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}
_FORMAT_TYPES: dict[str, tuple[str, ...]] = {"PNG": ("Byte", "UInt16"), "JPEG": ("Byte",)}
_FORMAT_BANDS: dict[str, tuple[int, ...]] = {"PNG": (1, 2, 3, 4), "JPEG": (1, 3)}
_RESAMPLING_ALIASES = {"near": "nearest", "cubicspline": "cubic_spline"}
_OVERVIEW_TOLERANCE = 1e-6
_ALIGN_TOLERANCE = 1e-6
_T = TypeVar("_T")
_R = TypeVar("_R")


# ------------------------------------------------------------------------------------ one band


def gdal_path(href: str | os.PathLike[str]) -> str:
    """The path GDAL opens for ``href``.

    ``s3://b/k`` → ``/vsis3/b/k``, ``gs://`` → ``/vsigs/``, ``http(s)://`` → ``/vsicurl/``.

    Returns:
        The GDAL path; local and ``/vsi...`` paths unchanged.

    Raises:
        Nothing.
    """
    text = os.fspath(href)
    for scheme, prefix in (("s3://", "/vsis3/"), ("gs://", "/vsigs/")):
        if text.startswith(scheme):
            return prefix + text[len(scheme) :]
    if text.startswith(("http://", "https://")):
        return "/vsicurl/" + text
    return text


def read_band_window(
    href: BandSource,
    geocontext: GeoContext,
    *,
    resampling: str | Resampling = "nearest",
    nodata: float | None = None,
    use_overviews: bool = True,
) -> np.ma.MaskedArray:
    """Read one band onto ``geocontext``'s grid.

    ``href`` is a :data:`BandSource`. ``nodata`` overrides the file's own nodata (e.g. the
    catalog's value for a file that declares none); with neither, the file's mask band (or
    full validity) decides, and pixels the file does not cover are masked. ``resampling`` is a
    ``rasterio.enums.Resampling`` member or name (``"near"`` is accepted for ``nearest``).

    Returns:
        A ``geocontext.shape`` masked array of the file's data type, masked where nodata, NaN or
        not covered; masked data holds ``nodata`` (or the file's nodata; 0 when neither exists).

    Raises:
        InvalidRaster: if the file cannot be opened, lacks the band or a CRS, or ``nodata`` does
            not fit the band's data type.
        ValueError: if ``resampling`` is unknown.
    """
    method = _resampling(resampling)
    path, band = _split_source(href)
    try:
        with rasterio.open(path) as src:
            _check_band(src, band, path)
            dtype = np.dtype(src.dtypes[band - 1])
            fill = nodata if nodata is not None else src.nodatavals[band - 1]
            if fill is not None:
                check_nodata_fits(fill, dtype, f"{path} band {band}")
            level = _overview_level(src, band, geocontext) if use_overviews else None
            if level is None:
                return _read_open(src, band, path, geocontext, method, fill, dtype)
        with rasterio.open(path, overview_level=level) as overview:
            return _read_open(overview, band, path, geocontext, method, fill, dtype)
    except RasterioIOError as error:
        raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error


def _read_open(
    src: DatasetReader,
    band: int,
    path: str,
    geocontext: GeoContext,
    method: Resampling,
    fill: float | None,
    dtype: np.dtype,
) -> np.ma.MaskedArray:
    """Read one band of an open dataset onto the grid; ``fill`` is the nodata in force (or None)."""
    if src.crs is None:
        raise InvalidRaster(f"{path}: has no CRS, so it cannot be placed on the grid")
    window = _aligned_window(src, geocontext)
    if window is not None:
        data, mask = _read_aligned(src, band, window, geocontext, fill, dtype)
    else:
        data, mask = _read_warped(src, band, geocontext, method, fill, dtype)
    if dtype.kind == "f":
        mask |= np.isnan(data)
    data[mask] = fill if fill is not None else 0
    return np.ma.MaskedArray(data, mask=mask)


def _read_aligned(
    src: DatasetReader,
    band: int,
    window: Window,
    geocontext: GeoContext,
    fill: float | None,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the part of ``window`` inside the file; the rest is masked."""
    height, width = geocontext.shape
    data = np.zeros((height, width), dtype=dtype)
    mask = np.ones((height, width), dtype=bool)
    col0, row0 = int(window.col_off), int(window.row_off)
    left, top = max(col0, 0), max(row0, 0)
    right, bottom = min(col0 + width, src.width), min(row0 + height, src.height)
    if right <= left or bottom <= top:
        return data, mask
    inner = Window(left, top, right - left, bottom - top)
    block = (slice(top - row0, bottom - row0), slice(left - col0, right - col0))
    values = src.read(band, window=inner)
    data[block] = values
    if fill is not None:
        mask[block] = _equals(values, fill)  # the nodata mask, without GDAL reading the band twice
    else:
        mask[block] = src.read_masks(band, window=inner) == 0  # an internal mask band, or all valid
    return data, mask


def _read_warped(
    src: DatasetReader,
    band: int,
    geocontext: GeoContext,
    method: Resampling,
    fill: float | None,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp through a WarpedVRT laid over the grid; masks from the VRT's nodata or alpha."""
    # One warp per read: the mask comes from the warped nodata, or from an alpha band warped in
    # the same pass (``read_masks`` would warp everything a second time).
    data, alpha = read_warped_band(
        src,
        band,
        dst_crs=geocontext.crs,
        dst_transform=geocontext.transform,
        dst_shape=geocontext.shape,
        resampling=method,
        dtype=dtype,
        src_nodata=fill,
        dst_nodata=fill,
        add_alpha=fill is None,
    )
    if alpha is not None:
        return data, alpha == 0
    assert fill is not None  # there is an alpha band whenever there is no nodata
    return data, _equals(data, fill)


def _aligned_window(src: DatasetReader, geocontext: GeoContext) -> Window | None:
    """The window of ``src`` that is exactly the grid, if they share CRS, pixel size and pixel edges."""
    transform = src.transform
    if transform.b != 0 or transform.d != 0 or transform.e >= 0 or src.crs != geocontext.crs:
        return None
    xres, yres = geocontext.resolution
    if not (math.isclose(transform.a, xres, rel_tol=1e-9) and math.isclose(-transform.e, yres, rel_tol=1e-9)):
        return None
    col = (geocontext.bounds[0] - transform.c) / transform.a
    row = (transform.f - geocontext.bounds[3]) / -transform.e
    if abs(col - round(col)) > _ALIGN_TOLERANCE or abs(row - round(row)) > _ALIGN_TOLERANCE:
        return None
    return Window(round(col), round(row), geocontext.width, geocontext.height)


def _overview_level(src: DatasetReader, band: int, geocontext: GeoContext) -> int | None:
    """The finest overview not coarser than the grid, when the grid is at least 2x coarser."""
    factors = src.overviews(band)
    if not factors or src.crs is None:
        return None
    if src.crs == geocontext.crs:
        dx, dy = geocontext.resolution
    else:
        try:
            left, bottom, right, top = transform_bounds(
                geocontext.crs, src.crs, *geocontext.grid_bounds, densify_pts=21
            )
        except Exception:  # a failed projection only disables overviews
            return None
        dx, dy = (right - left) / geocontext.width, (top - bottom) / geocontext.height
    ratio = min(dx / abs(src.res[0]), dy / abs(src.res[1]))
    level = None
    for index, factor in enumerate(factors):
        if factor <= ratio * (1 + _OVERVIEW_TOLERANCE):
            level = index
    return level


# ------------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class _Request:
    """Everything a worker needs to load layers: validated bands, metadata, grid and scaling."""

    images: tuple[ImageSources, ...]
    bands: tuple[str, ...]
    infos: tuple[tuple[BandInfo, ...], ...]  # per image, per band
    geocontext: GeoContext
    resampling: Resampling
    scales: tuple[Scale, ...] | None
    data_type: str
    use_overviews: bool
    alpha: str | None = None


def band_meta_from_files(image: ImageSources) -> dict[str, BandInfo]:
    """Band metadata (data type and nodata) read from one image's files, for use without a catalog.

    Returns:
        ``{band: BandInfo}`` with ``type="spectral"`` and no ranges.

    Raises:
        InvalidRaster: if a file cannot be opened or lacks its band.
    """
    infos = {}
    for name, source in image.items():
        path, band = _split_source(source)
        try:
            with rasterio.open(path) as src:
                _check_band(src, band, path)
                infos[name] = BandInfo(
                    name=name,
                    data_type=normalize_data_type(src.dtypes[band - 1]),
                    nodata=src.nodatavals[band - 1],
                )
        except RasterioIOError as error:
            raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error
    return infos


def flatten_keys(
    items: Sequence[Any], flatten: str | Callable[[Any], Any] | Sequence[str | Callable[[Any], Any]]
) -> list[tuple[Any, ...]]:
    """One group key per item for ``flatten``: dotted attribute/key paths or callables.

    ``"acquired.date"`` reads ``item.acquired`` (or ``item["acquired"]``), then its ``date``, which
    is a method and so is called. Several predicates make a tuple key.

    Returns:
        A list of tuples, one per item.

    Raises:
        ValueError: if no predicate is given, or a path step is missing on an item (naming the
            item's index and the path).
    """
    predicates = [flatten] if isinstance(flatten, str) or callable(flatten) else list(flatten)
    if not predicates:
        raise ValueError("flatten: no predicate given")
    for predicate in predicates:
        if not isinstance(predicate, str) and not callable(predicate):
            raise ValueError(f"flatten: predicate {predicate!r} must be a dotted path or a callable")
    return [tuple(_evaluate(item, index, predicate) for predicate in predicates) for index, item in enumerate(items)]


def _evaluate(item: Any, index: int, predicate: str | Callable[[Any], Any]) -> Any:
    if callable(predicate):
        return predicate(item)
    value = item
    for step in predicate.split("."):
        try:
            value = value[step] if isinstance(value, Mapping) else getattr(value, step)
        except (KeyError, AttributeError):
            raise ValueError(f"flatten: item {index} has no {step!r} (in {predicate!r})") from None
        if callable(value) and not isinstance(value, type):
            value = value()
    return value


def stack_files(
    images: Sequence[ImageSources],
    bands: str | Sequence[str],
    geocontext: GeoContext,
    band_meta: BandMeta | Sequence[BandMeta],
    *,
    flatten: Sequence[Hashable] | None = None,
    mask_nodata: bool = True,
    bands_axis: int = 1,
    raster_info: bool = False,
    resampling: str | Resampling = "nearest",
    scaling: Any = None,
    data_type: str | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    use_overviews: bool = True,
    alpha: str | None = None,
) -> np.ndarray | np.ma.MaskedArray | tuple[np.ndarray | np.ma.MaskedArray, list[dict[str, Any]]]:
    """Load ``bands`` of every image onto ``geocontext`` and stack them: ``(image, band, y, x)``.

    ``bands`` is a sequence of names or one space-separated string. ``flatten`` gives one group
    key per image (see :func:`flatten_keys`): images with equal keys are mosaicked (last wins)
    into one layer and layers are sorted by key. ``bands_axis`` moves the band axis (1 or -3 is
    the default layout; 2/-2 gives ``(image, y, band, x)``, 3/-1 ``(image, y, x, band)``).
    ``scaling``/``data_type`` as :func:`~cube_assets.client.scaling.scaling_parameters`.
    Layers load in up to ``max_workers`` threads (default: ``min(32, cpus + 4)``).

    Returns:
        A masked array (a plain array when ``mask_nodata`` is False) of the output data type;
        with ``raster_info``, also a list with one dict per layer: ``crs`` (WKT),
        ``geotransform``, ``shape``, ``bounds``, ``images`` (indices of the images in the layer,
        in mosaic order), ``bands``, ``data_type``, ``scales``.

    Raises:
        ValueError: if ``images`` or ``bands`` is empty, bands repeat, an image lacks a band, a
            band lacks metadata, ``flatten`` does not have one key per image or its keys cannot
            be ordered, ``bands_axis`` is 0 or out of range, or scaling is invalid.
        InvalidRaster: if a file cannot be read (naming the file and band).
    """
    request = _request(images, bands, geocontext, band_meta, resampling, scaling, data_type, use_overviews, alpha)
    groups = _groups(len(request.images), flatten)
    axis = _check_axis(bands_axis, ndim=4, band_axis=1, what="stack_files")
    height, width = geocontext.shape
    out_dtype = numpy_dtype(request.data_type)
    stacked = np.empty((len(groups), len(request.bands), height, width), dtype=out_dtype)
    masks = np.empty(stacked.shape, dtype=bool) if mask_nodata or alpha is not None else None

    def load(index: int) -> int:
        layer = _load_layer(request, groups[index], out=stacked[index])
        if masks is not None:
            masks[index] = layer.mask
        return index

    for _ in _run_unordered(load, range(len(groups)), max_workers, progress, "stack"):
        pass
    result: np.ndarray | np.ma.MaskedArray = stacked if masks is None else np.ma.MaskedArray(stacked, mask=masks)
    result = _move_axis(result, 1, axis)
    if raster_info:
        return result, [_raster_info(request, group) for group in groups]
    return result


def mosaic_files(
    images: Sequence[ImageSources],
    bands: str | Sequence[str],
    geocontext: GeoContext,
    band_meta: BandMeta | Sequence[BandMeta],
    *,
    mask_nodata: bool = True,
    bands_axis: int = 0,
    raster_info: bool = False,
    resampling: str | Resampling = "nearest",
    scaling: Any = None,
    data_type: str | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    use_overviews: bool = True,
    alpha: str | None = None,
) -> np.ndarray | np.ma.MaskedArray | tuple[np.ndarray | np.ma.MaskedArray, dict[str, Any]]:
    """Mosaic every image onto ``geocontext``: ``(band, y, x)``, the last image winning where they overlap.

    Images are read in parallel and painted in order; at most ``2 * max_workers`` decoded images
    wait in memory. ``bands_axis`` 0 (or -3) is ``(band, y, x)``, 1/-2 ``(y, band, x)``, 2/-1
    ``(y, x, band)``. Other arguments as :func:`stack_files`.

    Returns:
        A masked array (plain when ``mask_nodata`` is False); with ``raster_info``, also the
        grid's dict (as one entry of :func:`stack_files`'s list).

    Raises:
        ValueError, InvalidRaster: as :func:`stack_files`.
    """
    request = _request(images, bands, geocontext, band_meta, resampling, scaling, data_type, use_overviews, alpha)
    axis = _check_axis(bands_axis, ndim=3, band_axis=0, what="mosaic_files")
    order = list(range(len(request.images)))
    reads = _run_ordered(lambda index: _read_image(request, index), order, max_workers, progress, "mosaic")
    layer = _scale_layer(request, order, _paint(reads))
    result: np.ndarray | np.ma.MaskedArray = layer if mask_nodata or alpha is not None else np.ma.getdata(layer)
    result = _move_axis(result, 0, axis)
    if raster_info:
        return result, _raster_info(request, order)
    return result


def download_files(
    images: Sequence[ImageSources],
    bands: str | Sequence[str],
    geocontext: GeoContext,
    band_meta: BandMeta | Sequence[BandMeta],
    dest: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str = "tif",  # the client's name for it
    names: Sequence[str] | None = None,
    cog: bool = False,
    nodata: float | None = None,
    resampling: str | Resampling = "nearest",
    scaling: Any = None,
    data_type: str | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    use_overviews: bool = True,
    alpha: str | None = None,
) -> list[Path]:
    """Write each image, loaded onto ``geocontext``, to its own file (GeoTIFF, PNG or JPEG).

    ``dest`` is a folder (files are named ``{names[i]}-{band}-{band}....{format}``, names
    defaulting to ``image{i}``) or one path per image, whose extension (``.tif``, ``.png``,
    ``.jpg``) then decides the format. PNG and JPEG hold Byte data (PNG also UInt16), so
    ``scaling`` defaults to ``"display"`` for them. See :func:`write_raster` for ``cog`` and
    ``nodata``. Each file is written under a temporary name and moved into place.

    Returns:
        The written paths, in image order.

    Raises:
        ValueError: as :func:`stack_files`; also for an unknown format or extension, paths
            that repeat or do not match the images, or data the format cannot hold.
        InvalidRaster: if a source cannot be read or the COG is invalid.
    """
    bands_list = _bands_list(bands)
    if isinstance(dest, str | os.PathLike):
        extension = _extension(format)
        stems = list(names) if names is not None else [f"image{index}" for index in range(len(images))]
        if len(stems) != len(images):
            raise ValueError(f"download_files: {len(stems)} names for {len(images)} images")
        paths = [Path(dest) / f"{stem}-{'-'.join(bands_list)}.{extension}" for stem in stems]
    else:
        paths = [Path(path) for path in dest]
        if len(paths) != len(images):
            raise ValueError(f"download_files: {len(paths)} destination paths for {len(images)} images")
    if len(set(paths)) != len(paths):
        repeated = sorted({str(path) for path in paths if paths.count(path) > 1})
        raise ValueError(f"download_files: destination paths repeat: {repeated}")
    drivers = {_driver_of(path) for path in paths}
    if scaling is None and drivers & {"PNG", "JPEG"}:
        scaling = "display"
    request = _request(images, bands_list, geocontext, band_meta, resampling, scaling, data_type, use_overviews, alpha)
    for path in paths:
        _check_format(_driver_of(path), request, path)

    def write(index: int) -> Path:
        layer = _load_layer(request, [index])
        return write_raster(
            layer, paths[index], geocontext, nodata=_output_nodata(request, nodata), cog=cog, band_names=request.bands
        )

    written = dict(
        _run_unordered(lambda index: (index, write(index)), range(len(paths)), max_workers, progress, "download")
    )
    return [written[index] for index in range(len(paths))]


def download_mosaic_files(
    images: Sequence[ImageSources],
    bands: str | Sequence[str],
    geocontext: GeoContext,
    band_meta: BandMeta | Sequence[BandMeta],
    dest: str | os.PathLike[str],
    *,
    format: str = "tif",  # the client's name for it
    cog: bool = False,
    nodata: float | None = None,
    resampling: str | Resampling = "nearest",
    scaling: Any = None,
    data_type: str | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    use_overviews: bool = True,
    alpha: str | None = None,
) -> Path:
    """Write the mosaic of ``images`` (last wins) on ``geocontext`` to one file.

    ``dest`` is a file path (its extension decides the format) or an existing folder, where the
    file is named ``mosaic-{band}-{band}....{format}``. Otherwise as :func:`download_files`.

    Returns:
        The written path.

    Raises:
        ValueError, InvalidRaster: as :func:`download_files`.
    """
    bands_list = _bands_list(bands)
    path = Path(dest)
    if path.is_dir():
        path = path / f"mosaic-{'-'.join(bands_list)}.{_extension(format)}"
    driver = _driver_of(path)
    if scaling is None and driver in ("PNG", "JPEG"):
        scaling = "display"
    request = _request(images, bands_list, geocontext, band_meta, resampling, scaling, data_type, use_overviews, alpha)
    _check_format(driver, request, path)
    order = list(range(len(request.images)))
    reads = _run_ordered(lambda index: _read_image(request, index), order, max_workers, progress, "mosaic")
    layer = _scale_layer(request, order, _paint(reads))
    return write_raster(
        layer, path, geocontext, nodata=_output_nodata(request, nodata), cog=cog, band_names=request.bands
    )


# ------------------------------------------------------------------------------------ writing


def write_raster(
    array: np.ndarray | np.ma.MaskedArray,
    destination: str | os.PathLike[str],
    geocontext: GeoContext,
    *,
    nodata: float | None = None,
    cog: bool = False,
    band_names: Sequence[str] | None = None,
) -> Path:
    """Write a ``(band, y, x)`` array on ``geocontext``'s grid as GeoTIFF, PNG or JPEG (by extension).

    GeoTIFF: tiled, DEFLATE; masked pixels get ``nodata`` when given (it becomes the file's
    nodata), else an internal mask band marks them; ``cog`` makes it a validated
    Cloud-Optimized GeoTIFF with overviews. PNG/JPEG: Byte (PNG also UInt16) with 1 or 3 bands
    (PNG also 2 or 4); masked pixels get ``nodata`` or 0, and the georeferencing goes to a
    ``.aux.xml`` sidecar that GDAL reads back. Band descriptions are ``band_names``.

    Returns:
        The destination path.

    Raises:
        ValueError: if the extension is not a known format, the array is not 3-D, or the format
            cannot hold its data type or band count.
        InvalidRaster: if ``nodata`` does not fit the data type, or the COG is not valid.
    """
    destination = Path(destination)
    driver = _driver_of(destination)
    data = np.ma.asarray(array)
    if data.ndim != 3 or data.shape[1:] != geocontext.shape:
        raise ValueError(
            f"write_raster {destination}: expected (band, y, x) with y, x = {geocontext.shape}, got {data.shape}"
        )
    dtype_name = normalize_data_type(data.dtype)
    if driver in _FORMAT_TYPES and dtype_name not in _FORMAT_TYPES[driver]:
        raise ValueError(
            f"write_raster {destination}: {driver} cannot hold {dtype_name} data ({_FORMAT_TYPES[driver]})"
        )
    if driver in _FORMAT_BANDS and data.shape[0] not in _FORMAT_BANDS[driver]:
        raise ValueError(
            f"write_raster {destination}: {driver} holds {_FORMAT_BANDS[driver]} bands, not {data.shape[0]}"
        )
    if band_names is not None and len(band_names) != data.shape[0]:
        raise ValueError(f"write_raster {destination}: {len(band_names)} band names for {data.shape[0]} bands")
    if nodata is not None:
        check_nodata_fits(nodata, data.dtype, f"write_raster {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)  # intermediate folders are created
    mask = np.ma.getmaskarray(data)
    values = np.array(np.ma.getdata(data), copy=True)
    values[mask] = nodata if nodata is not None else 0
    profile: dict[str, Any] = {
        "driver": driver,
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": geocontext.crs,
        "transform": geocontext.transform,
        "nodata": nodata,
    }
    if driver == "GTiff":
        block = min(512, max(16, 1 << (max(data.shape[1:]) - 1).bit_length()))
        profile.update(
            tiled=True,
            blockxsize=block,
            blockysize=block,
            compress="DEFLATE",
            predictor=3 if data.dtype.kind == "f" else 2,
            interleave="pixel" if data.shape[0] > 1 else "band",
        )
    write_mask = driver == "GTiff" and nodata is None and bool(mask.any())
    band_mask = (~mask.any(axis=0)).astype(np.uint8) * 255 if write_mask else None
    if driver == "GTiff" and cog:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".staging-") as staging:
            plain = Path(staging) / destination.name
            _write_dataset(plain, profile, values, band_mask, band_names)
            return cog_from_file(plain, destination)
    with atomic_path(destination) as tmp:
        _write_dataset(tmp, profile, values, band_mask, band_names)
        sidecar = Path(f"{tmp}.aux.xml")
        if sidecar.exists():
            os.replace(sidecar, f"{destination}.aux.xml")
    return destination


def _write_dataset(
    path: Path,
    profile: Mapping[str, Any],
    values: np.ndarray,
    band_mask: np.ndarray | None,
    band_names: Sequence[str] | None,
) -> None:
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dataset:
        dataset.write(values)
        for index, name in enumerate(band_names or (), start=1):
            dataset.set_band_description(index, name)
        if band_mask is not None:
            dataset.write_mask(band_mask)


# ------------------------------------------------------------------------------------ helpers


def _request(
    images: Sequence[ImageSources],
    bands: str | Sequence[str],
    geocontext: GeoContext,
    band_meta: BandMeta | Sequence[BandMeta],
    resampling: str | Resampling,
    scaling: Any,
    data_type: str | None,
    use_overviews: bool,
    alpha: str | None = None,
) -> _Request:
    """Validate the arguments every loader shares and resolve the scaling once."""
    if not isinstance(geocontext, GeoContext):
        raise ValueError(f"geocontext must be a GeoContext, got {type(geocontext).__name__}")
    images = tuple(images)
    if not images:
        raise ValueError("no images to load")
    bands_list = _bands_list(bands)
    for index, image in enumerate(images):
        if not isinstance(image, Mapping):
            raise ValueError(f"image {index} must map band names to files, got {type(image).__name__}")
        missing = [band for band in bands_list if band not in image]
        if missing:
            raise ValueError(f"image {index} has no file for bands {missing} (it has {sorted(image)})")
        if alpha is not None and alpha not in image:
            raise ValueError(f"image {index} has no file for the alpha band {alpha!r} (it has {sorted(image)})")
    if isinstance(band_meta, Mapping):
        per_image: list[BandMeta] = [band_meta] * len(images)
    else:
        per_image = list(band_meta)
        if len(per_image) != len(images):
            raise ValueError(
                f"band_meta has {len(per_image)} entries for {len(images)} images; give one or one per image"
            )
    distinct: dict[tuple[BandInfo, ...], int] = {}
    infos = []
    for index, meta in enumerate(per_image):
        missing = [band for band in bands_list if band not in meta]
        if missing:
            raise ValueError(f"band_meta of image {index} has no metadata for bands {missing}")
        resolved = tuple(band_info(band, meta[band]) for band in bands_list)
        infos.append(resolved)
        distinct.setdefault(resolved, len(distinct))
    products = {str(number): dict(zip(bands_list, resolved, strict=True)) for resolved, number in distinct.items()}
    scales, out_type = multiproduct_scaling_parameters(products, bands_list, scaling, data_type)
    return _Request(
        images=images,
        bands=tuple(bands_list),
        infos=tuple(infos),
        geocontext=geocontext,
        resampling=_resampling(resampling),
        scales=None if scales is None else tuple(scales),
        data_type=out_type,
        use_overviews=use_overviews,
        alpha=alpha,
    )


def _bands_list(bands: str | Sequence[str]) -> list[str]:
    names = bands.split() if isinstance(bands, str) else list(bands)
    if not names:
        raise ValueError("no bands given")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"band names must be non-empty strings, got {name!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"bands {repeated} are listed more than once")
    return names


def _groups(count: int, flatten: Sequence[Hashable] | None) -> list[list[int]]:
    """Image indices per layer: one per image, or grouped by key and sorted by key."""
    if flatten is None:
        return [[index] for index in range(count)]
    keys = list(flatten)
    if len(keys) != count:
        raise ValueError(f"flatten has {len(keys)} keys for {count} images; give one key per image (see flatten_keys)")
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    try:
        ordered = sorted(groups, key=_sort_key)
    except TypeError as error:
        raise ValueError(f"flatten keys cannot be ordered ({error})") from None
    return [groups[key] for key in ordered]


def _sort_key(key: Any) -> Any:
    """Order keys with None before any value, also inside tuples."""
    if isinstance(key, tuple):
        return tuple(_sort_key(part) for part in key)
    return (key is not None, key)


def _check_axis(bands_axis: int, *, ndim: int, band_axis: int, what: str) -> int:
    if isinstance(bands_axis, bool) or not isinstance(bands_axis, int) or not -ndim <= bands_axis < ndim:
        raise ValueError(f"{what}: bands_axis {bands_axis!r} must be an integer in [{-ndim}, {ndim - 1}]")
    axis = bands_axis % ndim
    if ndim == 4 and axis == 0:
        raise ValueError(f"{what}: bands_axis 0 is not supported (the image axis comes first); use np.moveaxis")
    return axis


def _move_axis(array: np.ndarray | np.ma.MaskedArray, source: int, destination: int) -> np.ndarray | np.ma.MaskedArray:
    if source == destination:
        return array
    if isinstance(array, np.ma.MaskedArray):
        return np.ma.MaskedArray(
            np.moveaxis(array.data, source, destination),
            mask=np.moveaxis(np.ma.getmaskarray(array), source, destination),
        )
    return np.moveaxis(array, source, destination)


def _read_image(request: _Request, index: int) -> list[np.ma.MaskedArray]:
    """Every requested band of image ``index`` on the grid, unscaled."""
    image = request.images[index]
    arrays = []
    for band, info in zip(request.bands, request.infos[index], strict=True):
        try:
            arrays.append(
                read_band_window(
                    image[band],
                    request.geocontext,
                    resampling=request.resampling,
                    nodata=info.nodata,
                    use_overviews=request.use_overviews,
                )
            )
        except InvalidRaster as error:
            raise InvalidRaster(f"image {index} band {band!r}: {error}") from error
    if request.alpha is not None:
        transparent = _transparent(request, index)
        for array in arrays:
            array.mask = np.ma.getmaskarray(array) | transparent
    return arrays


def _transparent(request: _Request, index: int) -> np.ndarray:
    """Where image ``index``'s alpha band is 0 (or does not cover the grid): its transparent pixels."""
    assert request.alpha is not None
    try:
        alpha = read_band_window(
            request.images[index][request.alpha],
            request.geocontext,
            resampling=Resampling.nearest,
            nodata=None,
            use_overviews=request.use_overviews,
        )
    except InvalidRaster as error:
        raise InvalidRaster(f"image {index} alpha band {request.alpha!r}: {error}") from error
    return np.ma.getmaskarray(alpha) | (np.ma.getdata(alpha) == 0)


def _paint(reads: Iterable[list[np.ma.MaskedArray]]) -> list[np.ma.MaskedArray]:
    """Mosaic images' band lists in order: each valid pixel of a later image replaces what is below."""
    canvas: list[np.ma.MaskedArray] | None = None
    for arrays in reads:
        if canvas is None:
            canvas = arrays  # freshly read arrays, ours to paint over
            continue
        for band, array in enumerate(arrays):
            below = canvas[band]
            if array.dtype != below.dtype:
                common = np.promote_types(array.dtype, below.dtype)
                below = np.ma.MaskedArray(below.data.astype(common), mask=below.mask)
                canvas[band] = below
            take = ~np.ma.getmaskarray(array)
            below.data[take] = array.data[take]
            below.mask[take] = False
    assert canvas is not None
    return canvas


def _scale_layer(
    request: _Request, group: Sequence[int], arrays: list[np.ma.MaskedArray], out: np.ndarray | None = None
) -> np.ma.MaskedArray:
    """Scale and cast a layer's bands (into ``out`` when given); unscaled masked pixels hold the band's nodata."""
    layer = apply_scaling(arrays, request.scales, request.data_type, out=out)
    infos = request.infos[group[0]]
    for band, info in enumerate(infos):
        unscaled = request.scales is None or request.scales[band] is None
        if unscaled and info.nodata is not None and nodata_fits(info.nodata, layer.dtype):
            layer.data[band][layer.mask[band]] = info.nodata
    return layer


def _load_layer(request: _Request, group: Sequence[int], out: np.ndarray | None = None) -> np.ma.MaskedArray:
    """One layer of a stack: the image, or the mosaic of the group's images, scaled (into ``out``)."""
    return _scale_layer(request, group, _paint(_read_image(request, index) for index in group), out)


def _raster_info(request: _Request, group: Sequence[int]) -> dict[str, Any]:
    return {
        **request.geocontext.raster_info(),
        "images": list(group),
        "bands": list(request.bands),
        "data_type": request.data_type,
        "scales": None if request.scales is None else list(request.scales),
    }


def _output_nodata(request: _Request, nodata: float | None) -> float | None:
    """The file nodata: the given one, else the bands' common nodata when unscaled and it fits."""
    if nodata is not None:
        return nodata
    if request.scales is not None and any(scale is not None for scale in request.scales):
        return None
    values = {info.nodata for infos in request.infos for info in infos}
    if len(values) != 1:
        return None
    value = values.pop()
    return value if value is not None and nodata_fits(value, numpy_dtype(request.data_type)) else None


def _check_format(driver: str, request: _Request, path: Path) -> None:
    allowed = _FORMAT_TYPES.get(driver)
    if allowed is not None and request.data_type not in allowed:
        raise ValueError(
            f"{path}: {driver} holds {' or '.join(allowed)} data, but the bands load as {request.data_type};"
            " pass scaling='display' or data_type='Byte'"
        )
    counts = _FORMAT_BANDS.get(driver)
    if counts is not None and len(request.bands) not in counts:
        raise ValueError(f"{path}: {driver} holds {counts} bands, not {len(request.bands)}")


def _extension(format: str) -> str:
    extension = format.lower().lstrip(".")
    if extension not in FORMATS:
        raise ValueError(f"format {format!r} is not one of {sorted(FORMATS)}")
    return extension


def _driver_of(path: Path) -> str:
    extension = path.suffix.lower().lstrip(".")
    if extension not in FORMATS:
        raise ValueError(f"{path}: extension {path.suffix!r} is not one of {sorted('.' + e for e in FORMATS)}")
    return FORMATS[extension]


def _resampling(method: str | Resampling) -> Resampling:
    if isinstance(method, Resampling):
        return method
    name = _RESAMPLING_ALIASES.get(method, method)
    try:
        return Resampling[name]
    except KeyError:
        known = ", ".join(member.name for member in Resampling)
        raise ValueError(f"unknown resampling {method!r}; use one of {known}") from None


def _split_source(source: BandSource) -> tuple[str, int]:
    if isinstance(source, tuple):
        if len(source) != 2 or isinstance(source[1], bool) or not isinstance(source[1], int) or source[1] < 1:
            raise ValueError(f"band source {source!r} must be (path, band_number >= 1)")
        return gdal_path(source[0]), source[1]
    if not isinstance(source, str | os.PathLike):
        raise ValueError(f"band source {source!r} must be a path, a URI or (path, band_number)")
    return gdal_path(source), 1


def _check_band(src: DatasetReader, band: int, path: str) -> None:
    if not 1 <= band <= src.count:
        raise InvalidRaster(f"{path}: no band {band} (the file has {src.count})")


def _equals(values: np.ndarray, nodata: float) -> np.ndarray:
    if isinstance(nodata, float) and math.isnan(nodata):
        return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)
    return values == nodata


def _workers(max_workers: int | None, tasks: int) -> int:
    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
    ):
        raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
    default = min(32, (os.cpu_count() or 1) + 4)
    return max(1, min(max_workers or default, tasks))


def _run_unordered(
    function: Callable[[_T], _R], items: Sequence[_T], max_workers: int | None, progress: bool, what: str
) -> Iterator[_R]:
    """``function`` over ``items`` in threads; results as they finish; the first error cancels the rest."""
    with (
        tqdm(total=len(items), desc=what, disable=not progress) as bar,
        concurrent.futures.ThreadPoolExecutor(_workers(max_workers, len(items))) as executor,
    ):
        futures = [executor.submit(function, item) for item in items]
        try:
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                bar.update(1)
                yield result
        finally:
            for future in futures:
                future.cancel()


def _run_ordered(
    function: Callable[[_T], _R], items: Sequence[_T], max_workers: int | None, progress: bool, what: str
) -> Iterator[_R]:
    """``function`` over ``items`` in threads, results in input order, at most 2 × workers in flight."""
    workers = _workers(max_workers, len(items))
    with (
        tqdm(total=len(items), desc=what, disable=not progress) as bar,
        concurrent.futures.ThreadPoolExecutor(workers) as executor,
    ):
        pending: deque[concurrent.futures.Future[_R]] = deque()
        remaining = iter(items)
        try:
            for item in remaining:
                pending.append(executor.submit(function, item))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                result = pending.popleft().result()
                for item in remaining:
                    pending.append(executor.submit(function, item))
                    break
                bar.update(1)
                yield result
        finally:
            for future in pending:
                future.cancel()


__all__ = [
    "FORMATS",
    "BandSource",
    "ImageSources",
    "band_meta_from_files",
    "download_files",
    "download_mosaic_files",
    "flatten_keys",
    "gdal_path",
    "mosaic_files",
    "read_band_window",
    "stack_files",
    "write_raster",
]
