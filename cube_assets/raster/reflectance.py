"""Surface reflectance from Level-2 products, with each product's own scale and offset.

Output convention of the whole cube: reflectance × 10000 as int16, nodata −9999.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cube_assets.atomic import atomic_path
from cube_assets.errors import InvalidRaster

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
) -> Path:
    """Write ``source`` (one band of a Level-2 product) as int16 reflectance × 10000 to ``destination``.

    Reads and writes block by block, so memory stays bounded whatever the scene size; the
    output is a tiled DEFLATE GeoTIFF written under a temporary name and moved into place.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: if ``source`` cannot be opened or has no georeferencing.
    """
    try:
        src = rasterio.open(source)
    except rasterio.RasterioIOError as exc:
        raise InvalidRaster(f"{source}: cannot open: {exc}") from exc
    with src:
        if src.crs is None:
            raise InvalidRaster(f"{source}: has no CRS")
        profile = {
            "driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
            "dtype": "int16", "nodata": REFLECTANCE_NODATA, "crs": src.crs, "transform": src.transform,
            "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": 2,
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for row in range(0, src.height, block_size):
                for col in range(0, src.width, block_size):
                    window = Window(col, row, min(block_size, src.width - col), min(block_size, src.height - row))
                    dn = src.read(1, window=window)
                    dst.write(
                        scale_to_reflectance(dn, add_offset=add_offset, quantification=quantification, nodata_in=nodata_in),
                        1, window=window,
                    )
    return Path(destination)


def copy_band(source: str | os.PathLike[str], destination: str | os.PathLike[str], *, nodata: float | None = None) -> Path:
    """Copy a class or quality band unchanged into a tiled GeoTIFF (setting ``nodata`` if given).

    Returns:
        The destination path.

    Raises:
        InvalidRaster: if ``source`` cannot be opened.
    """
    try:
        src = rasterio.open(source)
    except rasterio.RasterioIOError as exc:
        raise InvalidRaster(f"{source}: cannot open: {exc}") from exc
    with src:
        profile = {
            "driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
            "dtype": src.dtypes[0], "nodata": nodata if nodata is not None else src.nodata,
            "crs": src.crs, "transform": src.transform,
            "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        }
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                dst.write(src.read(1, window=window), 1, window=window)
    return Path(destination)
