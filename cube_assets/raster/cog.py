"""Cloud-Optimized GeoTIFFs: write arrays or translate GeoTIFFs into validated COGs.

Every writer builds the COG under a temporary name beside the destination, validates it with
``rio_cogeo.cogeo.cog_validate`` and only then moves it into place, so a destination path
either holds a valid COG or is left untouched.

The codec is one of :data:`COMPRESSIONS`, all lossless: DEFLATE, ZSTD (both with a predictor) or
LERC_ZSTD with ``MAX_Z_ERROR=0``; :data:`DEFAULT_COMPRESSION` was chosen by measurement
(``benchmarks/codecs.py``), and a cube may choose another (``compression:``). Files of any of
them read alike, so cubes written with another codec stay readable.

Two translators make the same layout (tiled, compressed, internal overviews):
rio-cogeo's ``cog_translate`` (the default, used for scenes) and GDAL's own COG driver
(``driver="gdal"``), which streams a large raster through a bounded block cache and compresses
the full resolution once. Whole-tile composites use the latter: on a 10560 x 10560 tile it
is about 30 % faster and peaks at about 300 MiB where rio-cogeo, which stages tiles under
120 M pixels in memory, peaks at 1.2 GiB (``benchmarks/blend.py --size 10560``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.shutil import copy as rio_copy
from rio_cogeo.cogeo import cog_translate, cog_validate

from cube_assets.atomic import atomic_path
from cube_assets.errors import InvalidRaster
from cube_assets.raster.codecs import DEFAULT_COMPRESSION, compression_options
from cube_assets.raster.inputs import open_input, reading_from
from cube_assets.raster.product_limits import ProductLimits
from cube_assets.raster.windowed_io import check_nodata_fits, gdal_cache_limit

OverviewResampling = Literal["nearest", "average", "mode", "bilinear", "cubic"]
OVERVIEW_RESAMPLINGS: tuple[OverviewResampling, ...] = ("nearest", "average", "mode", "bilinear", "cubic")
_MIN_BLOCKSIZE = 16  # GeoTIFF tiles must be multiples of 16 pixels.
_GDAL_ENV = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_INTERNAL_MASK": True}
DRIVERS = ("rio-cogeo", "gdal")
GDAL_DRIVER_CACHE_BYTES = 64 * 1024 * 1024
"""GDAL's block cache while its COG driver translates: bounds the memory of a whole-tile COG."""


#: The media type of a Cloud-Optimized GeoTIFF, for object stores.
COG_CONTENT_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def _is_overview_resampling(name: str) -> TypeGuard[OverviewResampling]:
    """Return whether ``name`` is one of :data:`OVERVIEW_RESAMPLINGS`; raises nothing."""
    return name in OVERVIEW_RESAMPLINGS


def write_cog(
    array: np.ndarray,
    destination: str | os.PathLike[str],
    *,
    crs: CRS | str | int,
    transform: Affine,
    nodata: float | int | None,
    dtype: str | np.dtype | None = None,
    compress: str = DEFAULT_COMPRESSION,
    level: int | None = None,
    predictor: int | None = None,
    blocksize: int = 512,
    overview_resampling: str = "nearest",
    band_descriptions: Sequence[str] | None = None,
) -> Path:
    """Write ``array`` as a Cloud-Optimized GeoTIFF at ``destination``.

    ``array`` is ``(bands, height, width)`` or ``(height, width)`` (one band). When ``dtype``
    differs from the array's, values are cast; a float array cast to an integer type is
    rounded to the nearest integer and must be finite and inside the type's range.
    ``compress`` is one of :data:`COMPRESSIONS` at ``level`` (see :func:`compression_options`);
    ``predictor=None`` picks 2 (horizontal differencing) for integer types and 3 (floating
    point) for float types. Rasters smaller than ``blocksize`` get the smallest power-of-two
    block (at least 16) that covers them, and overviews are only built when the raster's
    short side is larger than a block.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: if the array is not 2-D or 3-D, is empty, cannot be cast to ``dtype``,
            ``nodata`` does not fit the output type, ``band_descriptions`` has the wrong length,
            or the written file is not a valid COG.
        ValueError: if ``compress``, ``level``, ``overview_resampling``, ``predictor`` or
            ``blocksize`` is not one this module supports.
    """
    name = f"array for {Path(destination).name}"
    bands = _as_bands(array, name)
    out_dtype = np.dtype(dtype) if dtype is not None else bands.dtype
    bands = _cast(bands, out_dtype, name)
    check_nodata_fits(nodata, out_dtype, name)
    if band_descriptions is not None and len(band_descriptions) != bands.shape[0]:
        raise InvalidRaster(f"{name}: {len(band_descriptions)} band descriptions for {bands.shape[0]} bands")
    count, height, width = bands.shape
    profile = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": out_dtype.name,
        "crs": CRS.from_user_input(crs),
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.Env(**_GDAL_ENV), MemoryFile() as memfile:
        with memfile.open(**profile) as staging:
            staging.write(bands)
            for index, description in enumerate(band_descriptions or (), start=1):
                staging.set_band_description(index, description)
        with memfile.open() as staging:
            return _translate(
                staging,
                destination,
                compress=compress,
                level=level,
                predictor=predictor,
                blocksize=blocksize,
                overview_resampling=overview_resampling,
            )


def cog_from_file(
    src_path: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    compress: str = DEFAULT_COMPRESSION,
    level: int | None = None,
    predictor: int | None = None,
    blocksize: int = 512,
    overview_resampling: str = "nearest",
    driver: str = "rio-cogeo",
    limits: ProductLimits | None = None,
    overviews_in_source: bool = False,
) -> Path:
    """Translate the GeoTIFF (or any GDAL raster) at ``src_path`` into a COG at ``destination``.

    Pixel values, data type, nodata, band descriptions and dataset tags are kept; the output is
    tiled, compressed with ``compress`` at ``level`` (see :func:`compression_options`) and gets
    internal overviews when the raster is larger than a block. ``predictor=None`` chooses 2 for
    integer and 3 for float data. ``driver`` picks the
    translator: ``"rio-cogeo"`` (``cog_translate``) or ``"gdal"`` (GDAL's COG driver, with a
    64 MiB block cache: for rasters too large to stage in memory). Either output is validated;
    only rio-cogeo records the ``OVERVIEW_RESAMPLING`` tag. The source must have a CRS; with
    ``limits`` (a product's, for files from outside) its declared size is checked before any
    pixel is read. On any error ``destination`` is left untouched and no temporary file remains.

    ``overviews_in_source=True`` (GDAL's driver only) is for a staging GeoTIFF of the caller's,
    which is changed: the overviews the COG will have (:func:`cog_overview_factors`, with
    ``overview_resampling``) are first built into it in place, and the COG driver copies them
    (unless it has overviews already, or a level's size would differ from the driver's: GDAL's
    overview builder rounds sizes up where the COG driver rounds them down, so an odd size
    at some level leaves the overviews to the driver).
    Left to itself the driver computes them into a compressed temporary file and compresses them
    again. On uncompressed tiled int16 staging files of 2048² and 10560² pixels, building them in
    place took a fifth to a half less time in all, for the same pixels at every level
    (``cube_assets_tests/raster/test_cog.py`` compares them).

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming the file, if ``src_path`` cannot be opened as a raster, has no
            CRS, declares more than ``limits`` allow, cannot be read to its end (truncated or
            corrupt), or the translated file does not pass ``cog_validate``.
        ValueError: if ``compress``, ``level``, ``overview_resampling``, ``predictor``,
            ``blocksize`` or ``driver`` is not one this module supports, or
            ``overviews_in_source`` is asked of rio-cogeo.
    """
    if driver not in DRIVERS:
        raise ValueError(f"driver {driver!r} is not one of {DRIVERS}")
    if overviews_in_source and driver != "gdal":
        raise ValueError(f"overviews_in_source needs driver 'gdal', not {driver!r}")
    if not _is_overview_resampling(overview_resampling):
        raise ValueError(f"overview_resampling {overview_resampling!r} is not one of {OVERVIEW_RESAMPLINGS}")
    src_path = Path(src_path)
    env = gdal_cache_limit(GDAL_DRIVER_CACHE_BYTES, **_GDAL_ENV) if driver == "gdal" else rasterio.Env(**_GDAL_ENV)
    with env:
        if overviews_in_source:
            _build_overviews_in_place(src_path, overview_resampling, blocksize, limits)
        with open_input(src_path, limits=limits) as source, reading_from(src_path, "all bands"):
            return _translate(
                source,
                destination,
                compress=compress,
                level=level,
                predictor=predictor,
                blocksize=blocksize,
                overview_resampling=overview_resampling,
                driver=driver,
            )


def cog_overview_factors(width: int, height: int, blocksize: int = 512) -> list[int]:
    """The decimation factors of the overviews GDAL's COG driver gives a ``width`` x ``height`` raster.

    The driver halves the size (rounding down) until both sides fit in one ``blocksize`` block;
    each halving is one overview.

    Returns:
        ``[2, 4, ...]``, one factor per overview; empty when the raster fits in one block.

    Raises:
        ValueError: if a size or ``blocksize`` is not positive.
    """
    if width <= 0 or height <= 0 or blocksize <= 0:
        raise ValueError(f"sizes must be positive, not {width} x {height} with blocks of {blocksize}")
    factors: list[int] = []
    while width > blocksize or height > blocksize:
        width, height = width // 2, height // 2
        factors.append(2 ** (len(factors) + 1))
    return factors


def _build_overviews_in_place(
    path: Path, overview_resampling: OverviewResampling, blocksize: int, limits: ProductLimits | None
) -> None:
    """Build into the GeoTIFF at ``path`` the overviews its COG gets, unless it has overviews already."""
    with open_input(path, limits=limits):
        pass  # a clear error for a file that is no raster, before it is opened for writing
    with reading_from(path, "all bands"), rasterio.open(path, "r+") as dataset:
        if dataset.overviews(1):
            return
        factors = cog_overview_factors(dataset.width, dataset.height, blocksize)
        if factors and _built_sizes_match(dataset.width, dataset.height, factors):
            dataset.build_overviews(factors, Resampling[overview_resampling])


def _built_sizes_match(width: int, height: int, factors: list[int]) -> bool:
    # GDAL's BuildOverviews rounds each level's size up (ceil(size / factor)) where the COG driver
    # halves and rounds down: on sizes where the two differ the driver must compute its own.
    halved_width, halved_height = width, height
    for factor in factors:
        halved_width, halved_height = halved_width // 2, halved_height // 2
        if (halved_width, halved_height) != (-(-width // factor), -(-height // factor)):
            return False
    return True


def is_valid_cog(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a valid Cloud-Optimized GeoTIFF (``cog_validate``, not strict).

    Returns:
        ``True`` for a valid COG; ``False`` for an invalid one, a file GDAL cannot open, or a
        path that does not exist.

    Raises:
        Nothing on purpose.
    """
    try:
        valid, _errors, _warnings = cog_validate(str(path), quiet=True)
    except (RasterioIOError, OSError):
        return False
    return bool(valid)


def _translate(
    source: DatasetReader,
    destination: str | os.PathLike[str],
    *,
    compress: str,
    level: int | None,
    predictor: int | None,
    blocksize: int,
    overview_resampling: str,
    driver: str = "rio-cogeo",
) -> Path:
    """Translate an open dataset to a temporary file with ``driver``, validate, move into place."""
    destination = Path(destination)
    dst_kwargs = _cog_profile(
        dtype=np.dtype(source.dtypes[0]),
        width=source.width,
        height=source.height,
        compress=compress,
        level=level,
        predictor=predictor,
        blocksize=blocksize,
    )
    if not _is_overview_resampling(overview_resampling):
        raise ValueError(f"overview_resampling {overview_resampling!r} is not one of {OVERVIEW_RESAMPLINGS}")
    with atomic_path(destination) as tmp:
        if driver == "gdal":
            rio_copy(source, tmp, **_gdal_cog_options(dst_kwargs, overview_resampling))
        else:
            cog_translate(
                source,
                tmp,
                dst_kwargs,
                overview_resampling=overview_resampling,
                in_memory=None,
                quiet=True,
                config=_GDAL_ENV,
            )
        valid, errors, _warnings = cog_validate(tmp, quiet=True)
        if not valid:
            raise InvalidRaster(f"{destination}: not a valid COG after translation: {errors}")
    return destination


def _cog_profile(
    *,
    dtype: np.dtype,
    width: int,
    height: int,
    compress: str,
    level: int | None,
    predictor: int | None,
    blocksize: int,
) -> dict[str, Any]:
    """GeoTIFF creation options of a tiled, compressed COG for rasters of this type and size."""
    if blocksize < _MIN_BLOCKSIZE or blocksize % _MIN_BLOCKSIZE:
        raise ValueError(f"blocksize {blocksize} must be a positive multiple of 16")
    block = min(blocksize, max(_MIN_BLOCKSIZE, 1 << (max(width, height) - 1).bit_length()))
    return {
        "driver": "GTiff",
        "interleave": "pixel",
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        **compression_options(compress, dtype, level=level, predictor=predictor),
    }


def cog_driver_options(
    dtype: Any,
    *,
    width: int,
    height: int,
    compress: str = DEFAULT_COMPRESSION,
    level: int | None = None,
    overview_resampling: str = "nearest",
    blocksize: int = 512,
) -> dict[str, str]:
    """The creation options GDAL's COG driver gets from ``cog_from_file(..., driver="gdal")``.

    The same options as ``-co KEY=VALUE`` make ``gdal_translate -of COG`` write the same layout
    and codec (``benchmarks/pipeline.py`` scripts GDAL's tools with them).

    Returns:
        ``{"COMPRESS": ..., "LEVEL": ..., "BLOCKSIZE": ..., ...}`` (upper-case keys, text values),
        without the ``driver`` key.

    Raises:
        ValueError: if ``compress``, ``level``, ``blocksize`` or ``overview_resampling`` is not
            one this module supports.
    """
    if not _is_overview_resampling(overview_resampling):
        raise ValueError(f"overview_resampling {overview_resampling!r} is not one of {OVERVIEW_RESAMPLINGS}")
    profile = _cog_profile(
        dtype=np.dtype(dtype),
        width=width,
        height=height,
        compress=compress,
        level=level,
        predictor=None,
        blocksize=blocksize,
    )
    options = _gdal_cog_options(profile, overview_resampling)
    del options["driver"]
    return options


def _gdal_cog_options(profile: dict[str, Any], overview_resampling: str) -> dict[str, str]:
    """The COG driver's creation options for the layout ``_cog_profile`` describes."""
    options = {
        "driver": "COG",
        "COMPRESS": profile["compress"].upper(),
        "LEVEL": str(profile.get("zlevel", profile.get("zstd_level"))),
        "BLOCKSIZE": str(profile["blockxsize"]),
        "OVERVIEW_RESAMPLING": overview_resampling.upper(),
        "NUM_THREADS": "ALL_CPUS",
    }
    if "predictor" in profile:
        options["PREDICTOR"] = {1: "NO", 2: "STANDARD", 3: "FLOATING_POINT"}[profile["predictor"]]
    if "max_z_error" in profile:
        options["MAX_Z_ERROR"] = str(profile["max_z_error"])
    return options


def _as_bands(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as ``(bands, height, width)``; a 2-D array becomes one band."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise InvalidRaster(f"{name}: expected (bands, height, width) or (height, width), got shape {array.shape}")
    if 0 in array.shape:
        raise InvalidRaster(f"{name}: empty array of shape {array.shape}")
    if array.dtype == np.bool_ or array.dtype.kind not in "uif":
        raise InvalidRaster(f"{name}: dtype {array.dtype} cannot be written to a GeoTIFF")
    return array


def _cast(bands: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """Cast ``bands`` to ``dtype``; floats going to integers are rounded and range-checked."""
    if bands.dtype == dtype:
        return bands
    if np.issubdtype(dtype, np.integer) and np.issubdtype(bands.dtype, np.floating):
        info = np.iinfo(dtype)
        if not np.isfinite(bands).all():
            raise InvalidRaster(f"{name}: NaN or infinite values cannot be cast to {dtype}")
        rounded = np.rint(bands)
        if rounded.min() < info.min or rounded.max() > info.max:
            raise InvalidRaster(f"{name}: values {rounded.min()}..{rounded.max()} do not fit {dtype}")
        cast_bands: np.ndarray = rounded.astype(dtype)
        return cast_bands
    if np.issubdtype(dtype, np.integer) and np.issubdtype(bands.dtype, np.integer):
        info = np.iinfo(dtype)
        if bands.min() < info.min or bands.max() > info.max:
            raise InvalidRaster(f"{name}: values {bands.min()}..{bands.max()} do not fit {dtype}")
    return bands.astype(dtype)
