"""Valid-data footprints: the outline of a raster's non-nodata pixels, in EPSG:4326 (lon, lat).

The footprint is traced on a mask read decimated to at most ``max_size`` pixels on the long
side (nearest neighbour), so it is exact to one decimated pixel. Holes and stray islands
smaller than ``MIN_SPECK_PX`` decimated pixels are dropped, the outline is simplified by
``simplify_tolerance_px`` decimated pixels, densified and reprojected vertex by vertex.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_geom
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

from cube_assets.errors import InvalidRaster

WGS84 = CRS.from_epsg(4326)
MIN_SPECK_PX = 4.0
"""Holes in the valid area, and islands apart from the largest, smaller than this many
(decimated) pixels are dropped: a footprint outlines the data, not single stray pixels."""
_DENSIFY_PX = 32.0
"""Longest edge, in decimated pixels, before reprojection; keeps curved edges curved."""


def valid_data_footprint(
    path_or_array: str | os.PathLike[str] | np.ndarray,
    *,
    transform: Affine | None = None,
    crs: CRS | str | int | None = None,
    nodata: float | int | None = None,
    simplify_tolerance_px: float = 1.0,
    max_size: int = 1024,
) -> BaseGeometry:
    """The outline of the valid (non-nodata) pixels of a raster, as a geometry in EPSG:4326.

    For a path, validity comes from the file's dataset mask (a pixel is valid when any band is
    not nodata, or per its mask/alpha band), unless ``nodata`` is given, which then overrides
    the file's nodata. ``transform`` and ``crs`` must not be given with a path. For an array
    (``(H, W)`` or ``(bands, H, W)``), ``transform`` and ``crs`` are required and a pixel is
    valid when any band is neither ``nodata`` nor NaN.

    Returns:
        A ``Polygon`` or ``MultiPolygon`` in EPSG:4326 with (lon, lat) coordinates.

    Raises:
        InvalidRaster: if the raster has no valid pixel, cannot be read, has no CRS or
            geotransform, or an array is not 2-D/3-D.
        ValueError: if ``max_size`` < 1 or ``simplify_tolerance_px`` < 0.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    if simplify_tolerance_px < 0:
        raise ValueError(f"simplify_tolerance_px must be >= 0, got {simplify_tolerance_px}")
    if isinstance(path_or_array, np.ndarray):
        name = "footprint array"
        if transform is None or crs is None:
            raise InvalidRaster(f"{name}: transform and crs are required for an array")
        valid, mask_transform = _array_mask(path_or_array, transform, nodata, max_size, name)
        src_crs = CRS.from_user_input(crs)
    else:
        name = str(path_or_array)
        if transform is not None or crs is not None:
            raise ValueError(f"{name}: transform and crs come from the file; do not pass them")
        valid, mask_transform, src_crs = _file_mask(Path(path_or_array), nodata, max_size)
    if not valid.any():
        raise InvalidRaster(f"{name}: no valid (non-nodata) pixel")
    outline = _outline(valid, mask_transform, simplify_tolerance_px)
    pixel = math.sqrt(abs(mask_transform.determinant))
    outline = shapely.segmentize(outline, _DENSIFY_PX * pixel)
    geometry = shape(transform_geom(src_crs, WGS84, mapping(outline)))
    return geometry if geometry.is_valid else shapely.make_valid(geometry)


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    """Intersection over union of the areas of two geometries (in their shared planar units).

    Returns:
        A number in [0, 1]: 1 for identical areas, 0 for disjoint ones.

    Raises:
        ValueError: if both geometries have zero area (the ratio is undefined).
    """
    union = a.union(b).area
    if union == 0:
        raise ValueError("iou: both geometries have zero area")
    return float(a.intersection(b).area / union)


def _file_mask(path: Path, nodata: float | int | None, max_size: int) -> tuple[np.ndarray, Affine, CRS]:
    """The decimated valid mask of a file, the transform of that mask, and the file's CRS."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None or src.transform == Affine.identity():
                raise InvalidRaster(f"{path}: no CRS or geotransform")
            out_shape = _decimated_shape(src.shape, max_size)
            if nodata is None:
                valid = src.dataset_mask(out_shape=out_shape, resampling=Resampling.nearest) > 0
            else:
                data = src.read(out_shape=(src.count, *out_shape), resampling=Resampling.nearest)
                valid = _valid_any_band(data, nodata)
            scale = Affine.scale(src.width / out_shape[1], src.height / out_shape[0])
            return valid, src.transform @ scale, src.crs
    except RasterioIOError as error:
        raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error


def _array_mask(
    array: np.ndarray, transform: Affine, nodata: float | int | None, max_size: int, name: str
) -> tuple[np.ndarray, Affine]:
    """The decimated (nearest) valid mask of an array, and the transform of that mask."""
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or 0 in array.shape:
        raise InvalidRaster(f"{name}: expected a non-empty (H, W) or (bands, H, W) array, got shape {array.shape}")
    height, width = array.shape[1:]
    out_shape = _decimated_shape((height, width), max_size)
    rows = np.floor((np.arange(out_shape[0]) + 0.5) * height / out_shape[0]).astype(np.intp)
    cols = np.floor((np.arange(out_shape[1]) + 0.5) * width / out_shape[1]).astype(np.intp)
    valid = _valid_any_band(array[:, rows][:, :, cols], nodata)
    return valid, transform @ Affine.scale(width / out_shape[1], height / out_shape[0])


def _valid_any_band(data: np.ndarray, nodata: float | int | None) -> np.ndarray:
    """True where any band of ``(bands, H, W)`` data is neither NaN nor ``nodata``."""
    valid = ~np.isnan(data) if data.dtype.kind == "f" else np.ones(data.shape, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        valid &= data != nodata
    return np.asarray(valid.any(axis=0))


def _decimated_shape(shape: tuple[int, int], max_size: int) -> tuple[int, int]:
    """``shape`` scaled so its long side is at most ``max_size`` (never enlarged)."""
    height, width = shape
    scale = min(1.0, max_size / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale)))


def _outline(valid: np.ndarray, transform: Affine, simplify_tolerance_px: float) -> BaseGeometry:
    """Union of the valid pixels as polygons in the raster's CRS, small holes filled, simplified."""
    polygons = [
        shape(geometry)
        for geometry, _value in rasterio.features.shapes(
            valid.astype(np.uint8), mask=valid, transform=transform, connectivity=8
        )
    ]
    merged = shapely.union_all(polygons)
    pixel_area = abs(transform.determinant)
    merged = _drop_specks(merged, MIN_SPECK_PX * pixel_area)
    tolerance = simplify_tolerance_px * math.sqrt(pixel_area)
    if tolerance > 0:
        merged = merged.simplify(tolerance, preserve_topology=True)
    return merged


def _drop_specks(geometry: BaseGeometry, min_area: float) -> BaseGeometry:
    """``geometry`` without holes and islands smaller than ``min_area``; the largest part stays."""
    parts = [part for part in getattr(geometry, "geoms", [geometry]) if isinstance(part, Polygon)]
    largest = max(parts, key=lambda part: part.area)
    kept = [
        Polygon(part.exterior, [ring for ring in part.interiors if Polygon(ring).area >= min_area])
        for part in parts
        if part is largest or part.area >= min_area
    ]
    return kept[0] if len(kept) == 1 else MultiPolygon(kept)
