"""Surface reflectance from Level-2 products, with each product's own scale and offset.

Output convention of the whole cube: reflectance × 10000 as int16, nodata −9999.
Sentinel-2 L2A: ``(DN + BOA_ADD_OFFSET) / QUANTIFICATION`` (:func:`write_reflectance`), negative
results becoming nodata and values beyond the type clipped. Landsat Collection 2 Level-2:
``DN × scale + offset`` with the MTL's scale and offset, by the project's one Landsat rule,
:func:`cube_assets.raster.masks.rescale_landsat_c2` (:func:`write_landsat_reflectance`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cube_assets.atomic import atomic_path
from cube_assets.raster.inputs import open_input, reading_from
from cube_assets.raster.masks import rescale_landsat_c2
from cube_assets.raster.product_limits import ANY_SCENE, LANDSAT_C2, SENTINEL2, ProductLimits

REFLECTANCE_DTYPE = np.int16
REFLECTANCE_NODATA = -9999


def scale_to_reflectance(
    dn: np.ndarray,
    *,
    add_offset: float,
    quantification: float,
    nodata_in: float | None = 0,
    nodata_out: int = REFLECTANCE_NODATA,
    dtype: np.dtype | type = REFLECTANCE_DTYPE,
) -> np.ndarray:
    """Convert digital numbers to reflectance × 10000: ``(dn + add_offset) / quantification × 10000``.

    Implements the Sentinel-2 L2A rule (baseline ≥ 04.00 stores ``BOA_ADD_OFFSET = −1000``):
    input nodata stays nodata, negative results become nodata, and values beyond the output
    type are clipped instead of wrapping (so saturated 65535 becomes 32767 in int16).

    Returns:
        An array of ``dtype`` with ``nodata_out`` where the input was nodata or negative.
    """
    values = (dn.astype(np.float64) + add_offset) * (10000.0 / quantification)
    info = np.iinfo(dtype)
    invalid = values < 0
    if nodata_in is not None:
        invalid |= dn == nodata_in
    out = np.clip(np.rint(values), max(info.min, 0), info.max).astype(dtype)
    out[invalid] = nodata_out
    return out


def write_reflectance(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    add_offset: float,
    quantification: float,
    nodata_in: float | None = 0,
    block_size: int = 1024,
    limits: ProductLimits = SENTINEL2,
) -> Path:
    """Write ``source`` (one band of a Level-2 product) as int16 reflectance × 10000 to ``destination``.

    The header is checked first (``raster.inputs.open_input``): a CRS, and a declared size
    within ``limits``, the product's (default Sentinel-2). Reads and writes block by block, so
    memory stays bounded whatever the scene size; the output is a tiled DEFLATE GeoTIFF written
    under a temporary name and moved into place, and nothing is left when a read fails.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming ``source``, if it cannot be opened, has no CRS, declares more
            pixels or ground than ``limits`` allow, or a block of it cannot be read.
    """
    return _write_converted(
        source,
        destination,
        block_size,
        limits,
        lambda dn: scale_to_reflectance(dn, add_offset=add_offset, quantification=quantification, nodata_in=nodata_in),
    )


def scale_landsat_to_reflectance(
    dn: np.ndarray,
    *,
    scale: float,
    offset: float,
    nodata_in: float | None = 0,
    nodata_out: int = REFLECTANCE_NODATA,
) -> np.ndarray:
    """Convert Landsat C2 Level-2 surface-reflectance DNs to reflectance × 10000 (int16).

    ``round((dn * scale + offset) * 10000)`` with this product's ``scale`` and ``offset`` (C2:
    2.75e-5 and −0.2, so DN 7273 is reflectance 0), by the rule of
    :func:`cube_assets.raster.masks.rescale_landsat_c2` (which clips to 0–10000); input
    ``nodata_in`` pixels become ``nodata_out``.

    Returns:
        An int16 array with ``nodata_out`` where the input was nodata.
    """
    return rescale_landsat_c2(
        dn, scale=scale, offset=offset, dtype=REFLECTANCE_DTYPE, nodata_in=nodata_in, nodata_out=nodata_out
    )


def write_landsat_reflectance(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    scale: float,
    offset: float,
    nodata_in: float | None = 0,
    block_size: int = 1024,
    limits: ProductLimits = LANDSAT_C2,
) -> Path:
    """Write one Landsat C2 Level-2 ``SR_B*`` band as int16 reflectance × 10000 to ``destination``.

    Header checked against ``limits`` (default Landsat C2), then block by block, tiled DEFLATE
    GeoTIFF, written under a temporary name and moved into place (see :func:`write_reflectance`);
    values from :func:`scale_landsat_to_reflectance`.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: as :func:`write_reflectance`.
    """
    return _write_converted(
        source,
        destination,
        block_size,
        limits,
        lambda dn: scale_landsat_to_reflectance(dn, scale=scale, offset=offset, nodata_in=nodata_in),
    )


def _write_converted(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    block_size: int,
    limits: ProductLimits,
    convert: Callable[[np.ndarray], np.ndarray],
) -> Path:
    """Write ``convert(band 1 of source)`` block by block as an int16 reflectance GeoTIFF."""
    with open_input(source, limits=limits) as src:
        profile = {
            **_grid_profile(src),
            "dtype": "int16",
            "nodata": REFLECTANCE_NODATA,
            "compress": "deflate",
            "predictor": 2,
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for row in range(0, src.height, block_size):
                for col in range(0, src.width, block_size):
                    window = Window(col, row, min(block_size, src.width - col), min(block_size, src.height - row))
                    with reading_from(source, 1):
                        dn = src.read(1, window=window)
                    dst.write(convert(dn), 1, window=window)
    return Path(destination)


def copy_band(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    nodata: float | None = None,
    limits: ProductLimits = ANY_SCENE,
) -> Path:
    """Copy a class or quality band unchanged into a tiled GeoTIFF (setting ``nodata`` if given).

    The header is checked as :func:`write_reflectance` does, against ``limits`` (the product's;
    default any scene).

    Returns:
        The destination path.

    Raises:
        InvalidRaster: naming ``source``, if it cannot be opened, has no CRS, declares more
            pixels or ground than ``limits`` allow, or a block of it cannot be read.
    """
    with open_input(source, limits=limits) as src:
        profile = {
            **_grid_profile(src),
            "dtype": src.dtypes[0],
            "nodata": nodata if nodata is not None else src.nodata,
            "compress": "deflate",
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                with reading_from(source, 1):
                    block = src.read(1, window=window)
                dst.write(block, 1, window=window)
    return Path(destination)


def _grid_profile(src: DatasetReader) -> dict[str, Any]:
    """A one-band tiled GeoTIFF profile on ``src``'s grid (type, nodata and compression left to the caller)."""
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "count": 1,
        "crs": src.crs,
        "transform": src.transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
