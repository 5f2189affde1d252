"""Surface reflectance from Level-2 products, with each product's own scale and offset.

Values are stored in the cube's data type and nodata (:class:`BandStorage`; default
reflectance × 10000 as int16, nodata −9999) within each band's valid range.
Sentinel-2 L2A: ``(DN + BOA_ADD_OFFSET) / QUANTIFICATION`` (:func:`write_reflectance`), results
below the valid range becoming nodata (by default: negative results) and values above it (and
beyond the type) clipped. Landsat Collection 2 Level-2: ``DN × scale + offset`` with the MTL's
scale and offset, clipped to the valid range (default 0–10000) by the project's one Landsat
rule, :func:`cube_assets.raster.masks.rescale_landsat_c2` (:func:`write_landsat_reflectance`).
With ``apply_valid_range`` every value outside the valid range becomes nodata instead.

The input nodata is the product's: the value passed by the caller (which reads it from the
product: its STAC Item, or its format's fill value), else the file's own nodata tag, else none.

:func:`rescale` is cube-builder's documented rescaling (floats, no clipping), beside the
clipped integer form the cube stores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import DTypeLike
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cube_assets.atomic import atomic_path
from cube_assets.errors import InvalidRaster
from cube_assets.raster.codecs import working_file_options
from cube_assets.raster.indexes import round_into_dtype
from cube_assets.raster.inputs import open_input, reading_from
from cube_assets.raster.masks import (
    LANDSAT_C2_REFLECTANCE_RANGE,
    QUALITY_CLASS_DTYPE,
    QualityClass,
    QualityRules,
    classify_quality,
    radsat_saturated,
    rescale_landsat_c2,
)
from cube_assets.raster.product_limits import ANY_SCENE, LANDSAT_C2, SENTINEL2, ProductLimits

REFLECTANCE_DTYPE = np.int16
REFLECTANCE_NODATA = -9999
REFLECTANCE_VALID_RANGE = (0.0, math.inf)
"""Valid range of Sentinel-2 and generic reflectance × 10000: negative results are nodata, none is too high."""
LANDSAT_C2_FILL = 0
"""Landsat Collection 2 Level-2 surface-reflectance fill value (the product guide's)."""
SENTINEL2_L2A_NODATA = 0
"""Sentinel-2 L2A ``NODATA`` special value of every band (the product specification's)."""
FROM_FILE = "file"
"""``nodata_in`` value meaning: the source file's own nodata tag (``None`` when it has none)."""
DEFAULT_BLOCK_SIZE = 512
"""Side, in pixels, of the GeoTIFF blocks the scene stage writes unless the cube says otherwise."""


@dataclass(frozen=True)
class BandStorage:
    """How a cube stores one band: data type, nodata, valid range and what happens outside it.

    ``valid_range`` is in stored units (reflectance × 10000 for reflectance bands); ``None``
    means the product's rule (:data:`REFLECTANCE_VALID_RANGE`, Landsat
    :data:`~cube_assets.raster.masks.LANDSAT_C2_REFLECTANCE_RANGE`). ``apply_valid_range``:
    values outside it become nodata instead of being clipped.
    """

    dtype: str = "int16"
    nodata: float = REFLECTANCE_NODATA
    valid_range: tuple[float, float] | None = None
    apply_valid_range: bool = False

    def __post_init__(self) -> None:
        if self.valid_range is not None:
            low, high = self.valid_range
            if not low < high:
                raise InvalidRaster(f"band storage: valid range {list(self.valid_range)} must have low below high")


def store_values(
    values: np.ndarray,
    valid: np.ndarray,
    storage: BandStorage,
    *,
    default_range: tuple[float, float] = REFLECTANCE_VALID_RANGE,
    below: str = "nodata",
    name: str = "reflectance",
) -> np.ndarray:
    """Store float ``values`` in ``storage``'s type: out-of-range values and invalid pixels become nodata.

    Rule: pixels not ``valid`` (or not finite) become ``storage.nodata``. With the valid range
    ``[low, high]`` (``storage.valid_range``, else ``default_range``): with
    ``storage.apply_valid_range`` values outside it become nodata; otherwise values above
    ``high`` are clipped to it and values below ``low`` become nodata (``below="nodata"``) or
    are clipped to it (``below="clip"``). Then rounded and clipped into the type by
    :func:`~cube_assets.raster.indexes.round_into_dtype` (a valid value never equals nodata).

    Returns:
        An array of ``storage.dtype`` with the shape of ``values``.

    Raises:
        InvalidRaster: naming ``name`` if the nodata cannot be stored in the type.
    """
    low, high = storage.valid_range or default_range
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(values)
    with np.errstate(invalid="ignore"):
        if storage.apply_valid_range:
            valid &= (values >= low) & (values <= high)
        else:
            if below == "nodata":
                valid &= values >= low
            values = np.clip(values, low, high)
    return round_into_dtype(values, valid, storage.dtype, storage.nodata, name=name)


def rescale(
    array: np.ndarray | np.ma.MaskedArray,
    multiplier: float,
    new_scale: float,
    origin_additive: float = 0,
    dtype: DTypeLike | None = None,
) -> np.ndarray | np.ma.MaskedArray:
    """Rescale ``array`` to a new scale: ``(array × multiplier + origin_additive) / new_scale``.

    cube-builder's documented ``rescale``: the result is float and nothing is clipped (Landsat
    C2 DNs with ``multiplier=0.0000275, new_scale=0.0001, origin_additive=-0.2`` give
    reflectance × 10000, negative where the product is). With ``dtype`` the result is cast to
    it, values beyond the type's limits set to those limits instead of wrapping (integer types
    are rounded first). A masked array stays masked where it was.

    Returns:
        A float64 array (or masked array), or one of ``dtype``.

    Raises:
        InvalidRaster: if ``new_scale`` is zero or not finite.
    """
    if not (math.isfinite(new_scale) and new_scale != 0):
        raise InvalidRaster(f"rescale: new_scale {new_scale!r} must be a finite, non-zero number")
    result = np.ma.asarray(array, dtype=np.float64) if np.ma.isMaskedArray(array) else np.asarray(array, np.float64)
    result = (result * multiplier + origin_additive) / new_scale
    if dtype is None:
        return result
    kind = np.dtype(dtype)
    if kind.kind in "iu":
        info = np.iinfo(kind)
        result = np.clip(np.rint(result), info.min, info.max)
    elif kind.kind == "f":
        limits = np.finfo(kind)
        result = np.clip(result, limits.min, limits.max)
    return result.astype(kind)


def scale_to_reflectance(
    dn: np.ndarray,
    *,
    add_offset: float,
    quantification: float,
    nodata_in: float | None = None,
    nodata_out: float = REFLECTANCE_NODATA,
    dtype: DTypeLike = REFLECTANCE_DTYPE,
    storage: BandStorage | None = None,
) -> np.ndarray:
    """Convert digital numbers to reflectance × 10000: ``(dn + add_offset) / quantification × 10000``.

    Implements the Sentinel-2 L2A rule (baseline ≥ 04.00 stores ``BOA_ADD_OFFSET = −1000``):
    input ``nodata_in`` stays nodata (``None``: the input has none), results below the valid
    range become nodata (by default negative ones), and values above it or beyond the output
    type are clipped instead of wrapping (so saturated 65535 becomes 32767 in int16); see
    :func:`store_values`. ``storage`` gives the type, nodata and valid range; without it,
    ``dtype`` and ``nodata_out`` with the default range.

    Returns:
        An array of the storage type with its nodata where the input was nodata or out of range.
    """
    storage = storage or BandStorage(str(np.dtype(dtype)), nodata_out)
    values = (dn.astype(np.float64) + add_offset) * (10000.0 / quantification)
    return store_values(values, _valid_input(dn, nodata_in), storage)


def _valid_input(dn: np.ndarray, nodata_in: float | None) -> np.ndarray:
    """True where ``dn`` is not the input nodata (NaN matches NaN; ``None``: everywhere)."""
    if nodata_in is None:
        return np.ones(dn.shape, dtype=bool)
    if math.isnan(nodata_in):
        valid: np.ndarray = ~np.isnan(dn)
        return valid
    valid = dn != nodata_in
    return valid


def write_reflectance(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    add_offset: float,
    quantification: float,
    nodata_in: float | str | None = FROM_FILE,
    block_size: int = 1024,
    limits: ProductLimits = SENTINEL2,
    storage: BandStorage | None = None,
    band_index: int = 1,
    tile_size: int = DEFAULT_BLOCK_SIZE,
) -> Path:
    """Write band ``band_index`` of ``source`` (a Level-2 product's band) as reflectance × 10000 to ``destination``.

    The header is checked first (``raster.inputs.open_input``): a CRS, and a declared size
    within ``limits``, the product's (default Sentinel-2), and the band index. Reads and writes
    block by block, so memory stays bounded whatever the scene size; the output is a ZSTD
    GeoTIFF tiled in ``tile_size`` px blocks, of ``storage``'s type and nodata (default int16,
    −9999), written under a temporary name and moved into place, and nothing is left when a
    read fails. ``nodata_in``: the product's input nodata; :data:`FROM_FILE` (default) takes
    the file's own tag, ``None`` says the input has none.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming ``source``, if it cannot be opened, has no CRS, declares more
            pixels or ground than ``limits`` allow, has no band ``band_index``, or a block of
            it cannot be read.
    """
    storage = storage or BandStorage()
    return _write_converted(
        source,
        destination,
        block_size,
        limits,
        lambda dn, nodata: scale_to_reflectance(
            dn, add_offset=add_offset, quantification=quantification, nodata_in=nodata, storage=storage
        ),
        nodata_in=nodata_in,
        storage=storage,
        band_index=band_index,
        tile_size=tile_size,
    )


def scale_landsat_to_reflectance(
    dn: np.ndarray,
    *,
    scale: float,
    offset: float,
    nodata_in: float | None = LANDSAT_C2_FILL,
    nodata_out: int = REFLECTANCE_NODATA,
    storage: BandStorage | None = None,
) -> np.ndarray:
    """Convert Landsat C2 Level-2 surface-reflectance DNs to reflectance × 10000.

    ``round((dn * scale + offset) * 10000)`` with this product's ``scale`` and ``offset`` (C2:
    2.75e-5 and −0.2, so DN 7273 is reflectance 0), by the rule of
    :func:`cube_assets.raster.masks.rescale_landsat_c2`, clipped to the valid range (default
    0–10000; with ``apply_valid_range`` values outside it become nodata); input ``nodata_in``
    pixels (default the C2 fill, 0) become nodata. ``storage`` gives the type, nodata and
    valid range (default int16 and ``nodata_out``).

    Returns:
        An array of the storage type with its nodata where the input was nodata.
    """
    storage = storage or BandStorage("int16", nodata_out)
    if storage.valid_range is None and not storage.apply_valid_range:
        return rescale_landsat_c2(
            dn, scale=scale, offset=offset, dtype=storage.dtype, nodata_in=nodata_in, nodata_out=storage.nodata
        )
    values = rescale(dn, scale, new_scale=1e-4, origin_additive=offset)
    return store_values(
        np.asarray(values),
        _valid_input(dn, nodata_in),
        storage,
        default_range=LANDSAT_C2_REFLECTANCE_RANGE,
        below="clip",
        name="Landsat reflectance",
    )


def write_landsat_reflectance(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    scale: float,
    offset: float,
    nodata_in: float | str | None = LANDSAT_C2_FILL,
    block_size: int = 1024,
    limits: ProductLimits = LANDSAT_C2,
    storage: BandStorage | None = None,
    band_index: int = 1,
    tile_size: int = DEFAULT_BLOCK_SIZE,
) -> Path:
    """Write one Landsat C2 Level-2 ``SR_B*`` band as reflectance × 10000 to ``destination``.

    Header checked against ``limits`` (default Landsat C2), then block by block, tiled ZSTD
    GeoTIFF of ``storage``'s type and nodata, written under a temporary name and moved into
    place (see :func:`write_reflectance`); values from :func:`scale_landsat_to_reflectance`.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: as :func:`write_reflectance`.
    """
    storage = storage or BandStorage()
    return _write_converted(
        source,
        destination,
        block_size,
        limits,
        lambda dn, nodata: scale_landsat_to_reflectance(
            dn, scale=scale, offset=offset, nodata_in=nodata, storage=storage
        ),
        nodata_in=nodata_in,
        storage=storage,
        band_index=band_index,
        tile_size=tile_size,
    )


def _write_converted(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    block_size: int,
    limits: ProductLimits,
    convert: Callable[[np.ndarray, float | None], np.ndarray],
    *,
    nodata_in: float | str | None,
    storage: BandStorage,
    band_index: int,
    tile_size: int,
) -> Path:
    """Write ``convert(band band_index of source, input nodata)`` block by block as a GeoTIFF of ``storage``."""
    with open_input(source, limits=limits) as src:
        _check_band_index(src, source, band_index)
        nodata = src.nodatavals[band_index - 1] if nodata_in == FROM_FILE else nodata_in
        profile = {
            **_grid_profile(src, tile_size),
            "dtype": storage.dtype,
            "nodata": storage.nodata,
            **working_file_options(storage.dtype),
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for row in range(0, src.height, block_size):
                for col in range(0, src.width, block_size):
                    window = Window(col, row, min(block_size, src.width - col), min(block_size, src.height - row))
                    with reading_from(source, band_index):
                        dn = src.read(band_index, window=window)
                    dst.write(convert(dn, None if nodata is None else float(nodata)), 1, window=window)
    return Path(destination)


def _check_band_index(src: DatasetReader, source: str | os.PathLike[str], band_index: int) -> None:
    """Raise ``InvalidRaster`` naming ``source`` when it has no band ``band_index`` (1-based)."""
    if isinstance(band_index, bool) or not isinstance(band_index, int) or not 1 <= band_index <= src.count:
        raise InvalidRaster(f"{source}: no band {band_index!r} (the file has {src.count} band(s), numbered from 1)")


def copy_band(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    nodata: float | None = None,
    limits: ProductLimits = ANY_SCENE,
    band_index: int = 1,
    tile_size: int = DEFAULT_BLOCK_SIZE,
) -> Path:
    """Copy band ``band_index`` of a class or quality file unchanged into a tiled GeoTIFF (setting ``nodata`` if given).

    The header is checked as :func:`write_reflectance` does, against ``limits`` (the product's;
    default any scene), and the band index; blocks of ``tile_size`` px.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming ``source``, if it cannot be opened, has no CRS, declares more
            pixels or ground than ``limits`` allow, or a block of it cannot be read.
    """
    with open_input(source, limits=limits) as src:
        _check_band_index(src, source, band_index)
        profile = {
            **_grid_profile(src, tile_size),
            "dtype": src.dtypes[band_index - 1],
            "nodata": nodata if nodata is not None else src.nodatavals[band_index - 1],
            **working_file_options(src.dtypes[band_index - 1], predictor=False),
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for _, window in src.block_windows(band_index):
                with reading_from(source, band_index):
                    block = src.read(band_index, window=window)
                dst.write(block, 1, window=window)
    return Path(destination)


def write_quality_with_radsat(
    source: str | os.PathLike[str],
    radsat: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    nodata: float,
    limits: ProductLimits = LANDSAT_C2,
    band_index: int = 1,
    tile_size: int = DEFAULT_BLOCK_SIZE,
) -> Path:
    """Copy a Landsat quality band (``QA_PIXEL``) with its radiometrically saturated pixels made ``nodata``.

    A pixel is saturated where any of bits 1–7 of ``radsat`` (the product's ``QA_RADSAT``) is set
    (:func:`~cube_assets.raster.masks.radsat_saturated`): one of its bands holds no measurement,
    so it is never composited and counts in neither efficacy nor cloud ratio. Both files are
    checked as :func:`copy_band` checks its source; they must share one grid.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming the file, as :func:`copy_band`, or when ``radsat`` lies on another
            grid than ``source``.
    """
    with open_input(source, limits=limits) as src, open_input(radsat, limits=limits) as sat:
        _check_band_index(src, source, band_index)
        if (sat.width, sat.height, sat.transform) != (src.width, src.height, src.transform):
            raise InvalidRaster(
                f"{radsat}: QA_RADSAT is {sat.width}×{sat.height} px at {tuple(sat.transform)[:6]}, its quality band "
                f"{source} {src.width}×{src.height} px at {tuple(src.transform)[:6]}: not the same grid"
            )
        profile = {**_grid_profile(src, tile_size), "dtype": src.dtypes[band_index - 1], "nodata": nodata}
        profile.update(working_file_options(src.dtypes[band_index - 1], predictor=False))
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for _, window in src.block_windows(band_index):
                with reading_from(source, band_index):
                    block = src.read(band_index, window=window)
                with reading_from(radsat, 1):
                    saturated = radsat_saturated(sat.read(1, window=window))
                block[saturated] = nodata
                dst.write(block, 1, window=window)
    return Path(destination)


def write_quality_classes(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    rules: QualityRules,
    *,
    limits: ProductLimits = ANY_SCENE,
    tile_size: int = DEFAULT_BLOCK_SIZE,
) -> Path:
    """Write a quality band (SCL, ``QA_PIXEL``…) classified by ``rules`` as ``QualityClass`` codes.

    What a cube with several sources stores as its quality band: every source's own quality in
    one encoding (uint8, 0 nodata, 1 clear, 2 not clear, 3 saturated; nodata tag 0), block by
    block, tiled ZSTD GeoTIFF written under a temporary name and moved into place.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming ``source``, as :func:`copy_band`.
    """
    with open_input(source, limits=limits) as src:
        profile = {
            **_grid_profile(src, tile_size),
            "dtype": QUALITY_CLASS_DTYPE.name,
            "nodata": int(QualityClass.NODATA),
            **working_file_options(QUALITY_CLASS_DTYPE, predictor=False),
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                with reading_from(source, 1):
                    block = src.read(1, window=window)
                dst.write(classify_quality(block, rules), 1, window=window)
    return Path(destination)


def _grid_profile(src: DatasetReader, tile_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, Any]:
    """A one-band GeoTIFF profile on ``src``'s grid in ``tile_size`` blocks (type, nodata, compression: caller's).

    The blocks are compressed on every CPU (``NUM_THREADS``): a JPEG 2000 source is read with
    ``GDAL_NUM_THREADS=1`` (``inputs.open_input``), which would otherwise hold the writer's
    compression to one thread too, and that was half of a band's time. The bytes are the same.
    """
    return {
        "driver": "GTiff",
        "num_threads": "all_cpus",
        "width": src.width,
        "height": src.height,
        "count": 1,
        "crs": src.crs,
        "transform": src.transform,
        "tiled": True,
        "blockxsize": tile_size,
        "blockysize": tile_size,
    }
