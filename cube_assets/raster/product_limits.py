"""How large one band file of a product can be, checked from its header before any pixel is read.

A raster's header can declare any size: a 700 KB sparse GeoTIFF can claim 1,000,000 x 1,000,000
pixels, and a reader that trusts it works for hours. Every product the cube reads has a known
footprint and a finest pixel size, so a band file is refused when

* its declared ground extent (columns x pixel width, rows x pixel height, in metres) exceeds
  the product's footprint, or
* its declared pixel count on a side exceeds the product's largest band (the footprint at its
  finest resolution), or the ``proj:shape`` its STAC Item gives it,

each with a small tolerance (:data:`TOLERANCE`). The first rule bounds the pixel count at the
band's own resolution (a 20 m Sentinel-2 band has at most 5490 pixels a side), the second bounds
files whose pixel size is made tiny.

Limits: Sentinel-2 L1C/L2A 10980 x 10980 px at 10 m (a 109.8 km tile); Landsat Collection 2
9000 x 9000 px at 30 m (270 km; scenes are about 7800 x 7900); any other scene 20000 px and
1200 km (a MODIS tile is 4800 px and 1112 km).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError

from cube_assets.errors import InvalidRaster

TOLERANCE = 0.01
"""Relative slack on every limit (1 %), for rounding of pixel sizes and edge pixels."""
METRES_PER_DEGREE = 111_320.0
"""Ground length of one degree at the equator: an upper bound for rasters in geographic CRSs."""


@dataclass(frozen=True)
class ProductLimits:
    """The largest band file a product can have: its footprint side in metres and in pixels.

    ``max_shape`` (rows, columns), when set, is the exact size a STAC Item declares for the band
    (``proj:shape``); it only ever narrows the product's own limits.
    """

    product: str
    max_extent_m: float
    max_side_px: int
    max_shape: tuple[int, int] | None = None

    def narrowed_to(self, shape: Any, where: str) -> ProductLimits:
        """These limits, also bounded by a declared ``shape`` (``[rows, columns]``, e.g. STAC ``proj:shape``).

        ``where`` names the declaration in messages (e.g. ``"item S2B_X: assets.red.proj:shape"``).

        Returns:
            A copy with ``max_shape`` set to ``shape`` (``self`` when ``shape`` is None).

        Raises:
            InvalidRaster: naming ``where``, if ``shape`` is not two positive integers.
        """
        if shape is None:
            return self
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 2
            or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in shape)
        ):
            raise InvalidRaster(f"{where}: {str(shape)[:200]!r} is not [rows, columns] of positive integers")
        return replace(self, max_shape=(int(shape[0]), int(shape[1])))


SENTINEL2 = ProductLimits("Sentinel-2 L1C/L2A", max_extent_m=109_800.0, max_side_px=10_980)
LANDSAT_C2 = ProductLimits("Landsat Collection 2", max_extent_m=270_000.0, max_side_px=9_000)
ANY_SCENE = ProductLimits("a satellite scene", max_extent_m=1_200_000.0, max_side_px=20_000)


def limits_for_collection(collection: str) -> ProductLimits:
    """The limits of a collection's band files: Sentinel-2 and Landsat by name, else :data:`ANY_SCENE`.

    Returns:
        The :class:`ProductLimits` of the collection.
    """
    name = collection.lower()
    if name.startswith("sentinel-2"):
        return SENTINEL2
    if name.startswith("landsat"):
        return LANDSAT_C2
    return ANY_SCENE


def check_declared_size(dataset: Any, name: str, limits: ProductLimits) -> None:
    """Refuse an open raster whose header declares more than ``limits`` allow; reads no pixel.

    ``dataset`` is an open rasterio dataset (only its ``width``, ``height``, ``transform`` and
    ``crs`` are used); ``name`` names the file in messages.

    Returns:
        None.

    Raises:
        InvalidRaster: naming the file, its declared size and the limit it exceeds.
    """
    width, height = int(dataset.width), int(dataset.height)
    slack = 1.0 + TOLERANCE
    declared = f"declares {width} x {height} px"
    if limits.max_shape is not None:
        rows, cols = limits.max_shape
        if width > cols * slack or height > rows * slack:
            raise InvalidRaster(f"{name}: {declared}, more than the {cols} x {rows} px its STAC Item declares")
    if max(width, height) > limits.max_side_px * slack:
        raise InvalidRaster(
            f"{name}: {declared}, more than a band of {limits.product} can have ({limits.max_side_px} px a side)"
        )
    metres = _metres_per_unit(dataset.crs)
    transform = dataset.transform
    extent_x = width * math.hypot(transform.a, transform.d) * metres
    extent_y = height * math.hypot(transform.b, transform.e) * metres
    if not (math.isfinite(extent_x) and math.isfinite(extent_y)):
        raise InvalidRaster(f"{name}: its geotransform {tuple(transform)[:6]} gives no finite ground extent")
    if max(extent_x, extent_y) > limits.max_extent_m * slack:
        raise InvalidRaster(
            f"{name}: {declared} covering {extent_x / 1000:.1f} x {extent_y / 1000:.1f} km, more than the "
            f"{limits.max_extent_m / 1000:.1f} km footprint of {limits.product}"
        )


def _metres_per_unit(crs: CRS | None) -> float:
    """Metres per unit of ``crs``'s axes: an upper bound for degrees, 1 when unknown or absent."""
    if crs is None:
        return 1.0
    if crs.is_geographic:
        return METRES_PER_DEGREE
    try:
        return float(crs.linear_units_factor[1])
    except (CRSError, TypeError, ValueError, IndexError):
        return 1.0
