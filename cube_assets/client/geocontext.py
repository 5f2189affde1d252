"""Where and how finely to load pixels: a north-up grid given by bounds, CRS and resolution or shape.

A :class:`GeoContext` is the destination grid of every pixel read in
:mod:`cube_assets.client.raster_read`: images are warped onto it, whatever their own CRS and
resolution. It is always north-up, with its upper-left corner at ``(minx, maxy)`` of the bounds.

* ``GeoContext(bounds, crs, resolution=10)``: the shape is ``ceil(extent / resolution)`` (an
  extent within 1e-6 pixel of a whole number of pixels counts as that number), so the grid covers
  all of ``bounds`` and may reach up to one pixel past its right and bottom edges
  (:attr:`GeoContext.grid_bounds` is what it really covers).
* ``GeoContext(bounds, crs, shape=(height, width))``: the resolution is ``extent / shape``, and
  the grid covers ``bounds`` exactly.
* :meth:`GeoContext.from_tile` gives exactly a data-cube tile's grid, :meth:`GeoContext.from_grid`
  any raster's grid, :meth:`GeoContext.from_geometry` a grid over a geometry's bounds (in the
  geometry's UTM zone by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
import shapely.geometry
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry.base import BaseGeometry

from cube_assets.grids import Tile, densify

Bounds = tuple[float, float, float, float]
"""``(minx, miny, maxx, maxy)`` in the context's CRS."""

_WHOLE_PIXEL_TOLERANCE = 1e-6
_MAX_PIXELS = 2**31 - 1


class GeoContext:
    """A north-up destination grid: bounds and CRS, with a resolution or a shape.

    Give exactly one of ``resolution`` (a pixel size in CRS units, or ``(xres, yres)``) and
    ``shape`` (``(height, width)`` in pixels). Both are always available afterwards as
    :attr:`resolution` and :attr:`shape`. Instances are immutable, hashable and compare equal when
    their CRS, bounds, resolution and shape are equal.

    Raises:
        ValueError: if the bounds are not four finite numbers with ``minx < maxx`` and
            ``miny < maxy``, the CRS cannot be parsed, both or neither of ``resolution`` and
            ``shape`` are given, a resolution is not positive and finite, a shape is not two
            positive integers, or the grid would exceed 2**31 - 1 pixels on a side.
    """

    __slots__ = ("_bounds", "_crs", "_resolution", "_shape")

    def __init__(
        self,
        bounds: Sequence[float],
        crs: CRS | ProjCRS | str | int,
        *,
        resolution: float | Sequence[float] | None = None,
        shape: Sequence[int] | None = None,
    ) -> None:
        self._bounds = _check_bounds(bounds)
        self._crs = _check_crs(crs)
        if (resolution is None) == (shape is None):
            raise ValueError(
                f"GeoContext: give exactly one of resolution and shape, got resolution={resolution!r}, shape={shape!r}"
            )
        minx, miny, maxx, maxy = self._bounds
        if resolution is not None:
            xres, yres = _check_resolution(resolution)
            width = _pixels(maxx - minx, xres)
            height = _pixels(maxy - miny, yres)
            self._resolution = (xres, yres)
            self._shape = (height, width)
        else:
            height, width = _check_shape(shape)
            self._shape = (height, width)
            self._resolution = ((maxx - minx) / width, (maxy - miny) / height)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_grid(
        cls, crs: CRS | ProjCRS | str | int, transform: Affine | Sequence[float], shape: Sequence[int]
    ) -> GeoContext:
        """The grid of a raster: its CRS, affine transform (or GDAL geotransform) and ``(height, width)``.

        Reading through the returned context gives the raster's own pixels, unresampled.

        Returns:
            A GeoContext whose :attr:`transform` equals ``transform`` exactly.

        Raises:
            ValueError: if the transform is rotated, sheared or not north-up (``a > 0``,
                ``e < 0``), or the CRS or shape is invalid.
        """
        affine = _as_affine(transform)
        if affine.b != 0 or affine.d != 0 or not affine.a > 0 or not affine.e < 0:
            raise ValueError(
                f"GeoContext.from_grid: transform {tuple(affine)[:6]} must be north-up without rotation"
                " (a > 0, b = d = 0, e < 0)"
            )
        height, width = _check_shape(shape)
        bounds = (affine.c, affine.f + height * affine.e, affine.c + width * affine.a, affine.f)
        context = cls(bounds, crs, shape=(height, width))
        context._resolution = (affine.a, -affine.e)
        return context

    @classmethod
    def from_tile(cls, tile: Tile, resolution: float | Sequence[float] | None = None) -> GeoContext:
        """A data-cube tile's grid (:class:`cube_assets.grids.Tile`), or its extent at another resolution.

        Returns:
            The tile's exact grid when ``resolution`` is None, else a grid over the tile's bounds
            at ``resolution``.

        Raises:
            ValueError: if ``resolution`` is not positive.
        """
        if resolution is None:
            return cls.from_grid(tile.crs_wkt, tile.transform, tile.shape)
        return cls(tile.bounds, tile.crs_wkt, resolution=resolution)

    @classmethod
    def from_geometry(
        cls,
        geometry: BaseGeometry | Mapping[str, Any] | Any,
        *,
        resolution: float | Sequence[float] | None = None,
        shape: Sequence[int] | None = None,
        crs: CRS | ProjCRS | str | int | None = None,
        geometry_crs: CRS | ProjCRS | str | int = "EPSG:4326",
        align_pixels: bool = False,
    ) -> GeoContext:
        """A grid over the bounds of ``geometry`` (shapely, GeoJSON, or any ``__geo_interface__``).

        ``geometry_crs`` is the geometry's CRS (lon/lat by default). ``crs`` is the grid's CRS;
        by default the WGS 84 UTM zone of the geometry's centroid when the geometry is in a
        geographic CRS, else ``geometry_crs``. The geometry is densified before it is projected,
        so curved edges in the grid's CRS stay inside the bounds. ``align_pixels`` snaps the
        bounds outwards to whole multiples of the resolution (needs ``resolution``), so grids
        of nearby geometries share pixel edges.

        Returns:
            The GeoContext.

        Raises:
            ValueError: if the geometry is empty or not a geometry, a CRS is invalid, both or
                neither of ``resolution`` and ``shape`` are given, or ``align_pixels`` is set
                with ``shape``.
        """
        shape_geometry = _as_geometry(geometry)
        source_crs = _check_crs(geometry_crs)
        if crs is None:
            target_crs = _utm_crs(shape_geometry, source_crs) if source_crs.is_geographic else source_crs
        else:
            target_crs = _check_crs(crs)
        if target_crs != source_crs:
            transformer = Transformer.from_crs(source_crs, target_crs, always_xy=True)
            shape_geometry = shapely.transform(
                densify(shape_geometry, 32), lambda xy: _stack(transformer.transform(xy[:, 0], xy[:, 1]))
            )
        bounds = shape_geometry.bounds
        if align_pixels:
            if resolution is None:
                raise ValueError("GeoContext.from_geometry: align_pixels needs a resolution, not a shape")
            xres, yres = _check_resolution(resolution)
            minx, miny, maxx, maxy = bounds
            bounds = (
                math.floor(minx / xres) * xres,
                math.floor(miny / yres) * yres,
                math.ceil(maxx / xres) * xres,
                math.ceil(maxy / yres) * yres,
            )
        return cls(bounds, target_crs, resolution=resolution, shape=shape)

    def assign(
        self,
        *,
        bounds: Sequence[float] | None = None,
        crs: CRS | ProjCRS | str | int | None = None,
        resolution: float | Sequence[float] | None = None,
        shape: Sequence[int] | None = None,
    ) -> GeoContext:
        """A copy with some parts replaced.

        A new ``crs`` without new ``bounds`` reprojects the current bounds (their envelope, densified).
        The copy keeps the current resolution unless a new ``resolution`` or ``shape`` is given;
        after a CRS change without either, a resolution must be given, since the current one is
        in the old CRS's units.

        Returns:
            The new GeoContext.

        Raises:
            ValueError: if both ``resolution`` and ``shape`` are given, or the CRS changes without
                a new resolution or shape, or any part is invalid.
        """
        if resolution is not None and shape is not None:
            raise ValueError("GeoContext.assign: give at most one of resolution and shape")
        new_crs = self._crs if crs is None else _check_crs(crs)
        if bounds is None:
            bounds = (
                self._bounds
                if new_crs == self._crs
                else transform_bounds(self._crs, new_crs, *self._bounds, densify_pts=21)
            )
        if resolution is None and shape is None:
            if new_crs != self._crs:
                raise ValueError("GeoContext.assign: a new crs needs a new resolution or shape")
            resolution = self._resolution
        return GeoContext(bounds, new_crs, resolution=resolution, shape=shape)

    # ---------------------------------------------------------------- properties

    @property
    def bounds(self) -> Bounds:
        """``(minx, miny, maxx, maxy)`` as given, in :attr:`crs`."""
        return self._bounds

    @property
    def crs(self) -> CRS:
        """The grid's CRS (a ``rasterio.crs.CRS``)."""
        return self._crs

    @property
    def resolution(self) -> tuple[float, float]:
        """``(xres, yres)``: pixel width and height in CRS units, both positive."""
        return self._resolution

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self._shape

    @property
    def width(self) -> int:
        """Number of columns."""
        return self._shape[1]

    @property
    def height(self) -> int:
        """Number of rows."""
        return self._shape[0]

    @property
    def transform(self) -> Affine:
        """The grid's affine transform: upper-left corner ``(minx, maxy)``, north-up."""
        xres, yres = self._resolution
        return Affine(xres, 0.0, self._bounds[0], 0.0, -yres, self._bounds[3])

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        """The GDAL geotransform ``(minx, xres, 0, maxy, 0, -yres)``."""
        return self.transform.to_gdal()

    @property
    def grid_bounds(self) -> Bounds:
        """The bounds the pixels really cover: :attr:`bounds`, extended to whole pixels right and down."""
        xres, yres = self._resolution
        minx, _, _, maxy = self._bounds
        height, width = self._shape
        return (minx, maxy - height * yres, minx + width * xres, maxy)

    @property
    def bbox_4326(self) -> Bounds:
        """``(min_lon, min_lat, max_lon, max_lat)`` enclosing :attr:`grid_bounds`, e.g. for a catalog search."""
        if self._crs == CRS.from_epsg(4326):
            return self.grid_bounds
        return transform_bounds(self._crs, CRS.from_epsg(4326), *self.grid_bounds, densify_pts=21)

    def raster_info(self) -> dict[str, Any]:
        """The grid as plain data: ``crs`` (WKT), ``geotransform``, ``shape`` and ``bounds``.

        Returns:
            A JSON-serializable dict; :func:`cube_assets.client.upload.upload_ndarray` accepts it
            as ``raster_meta``.
        """
        return {
            "crs": self._crs.to_wkt(),
            "geotransform": list(self.geotransform),
            "shape": list(self._shape),
            "bounds": list(self.grid_bounds),
        }

    # ---------------------------------------------------------------- value semantics

    def _key(self) -> tuple[Any, ...]:
        return (self._crs.to_wkt(), self._bounds, self._resolution, self._shape)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GeoContext) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        crs = self._crs.to_string() if self._crs.to_epsg() else self._crs.to_wkt()[:60]
        return f"GeoContext(bounds={self._bounds}, crs={crs!r}, resolution={self._resolution}, shape={self._shape})"


# -------------------------------------------------------------------- validation helpers


def _check_bounds(bounds: Sequence[float]) -> Bounds:
    if isinstance(bounds, str | bytes) or not isinstance(bounds, Sequence) or len(bounds) != 4:
        raise ValueError(f"GeoContext: bounds must be (minx, miny, maxx, maxy), got {bounds!r}")
    try:
        values = tuple(float(value) for value in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"GeoContext: bounds must be four numbers, got {bounds!r}") from None
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"GeoContext: bounds must be finite, got {bounds!r}")
    minx, miny, maxx, maxy = values
    if not (minx < maxx and miny < maxy):
        raise ValueError(f"GeoContext: bounds {values} must have minx < maxx and miny < maxy")
    return (minx, miny, maxx, maxy)


def _check_crs(crs: CRS | ProjCRS | str | int) -> CRS:
    if isinstance(crs, CRS):
        return crs
    try:
        if isinstance(crs, ProjCRS):
            return CRS.from_wkt(crs.to_wkt())
        return CRS.from_user_input(crs)
    except Exception as error:  # rasterio raises several types for unparseable input
        raise ValueError(f"GeoContext: crs {crs!r} cannot be parsed ({error})") from error


def _check_resolution(resolution: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(resolution, str | bytes):
        raise ValueError(f"GeoContext: resolution must be a number or (xres, yres), got {resolution!r}")
    pair = (resolution, resolution) if not isinstance(resolution, Sequence) else tuple(resolution)
    if len(pair) != 2:
        raise ValueError(f"GeoContext: resolution must be a number or (xres, yres), got {resolution!r}")
    try:
        xres, yres = (float(value) for value in pair)
    except (TypeError, ValueError):
        raise ValueError(f"GeoContext: resolution must be numbers, got {resolution!r}") from None
    if not (math.isfinite(xres) and math.isfinite(yres) and xres > 0 and yres > 0):
        raise ValueError(f"GeoContext: resolution must be positive and finite, got {resolution!r}")
    return (xres, yres)


def _check_shape(shape: Sequence[int] | None) -> tuple[int, int]:
    if (
        isinstance(shape, str | bytes)
        or not isinstance(shape, Sequence)
        or len(shape) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(f"GeoContext: shape must be (height, width) positive integers, got {shape!r}")
    if max(shape) > _MAX_PIXELS:
        raise ValueError(f"GeoContext: shape {tuple(shape)} exceeds {_MAX_PIXELS} pixels on a side")
    return (shape[0], shape[1])


def _pixels(extent: float, resolution: float) -> int:
    """Whole pixels covering ``extent``: ceil, but within a tolerance of a whole number, that number."""
    count = extent / resolution
    nearest = round(count)
    pixels = nearest if abs(count - nearest) <= _WHOLE_PIXEL_TOLERANCE else math.ceil(count)
    pixels = max(1, int(pixels))
    if pixels > _MAX_PIXELS:
        raise ValueError(
            f"GeoContext: extent {extent} at resolution {resolution} gives {pixels} pixels, more than {_MAX_PIXELS}"
        )
    return pixels


def _as_affine(transform: Affine | Sequence[float]) -> Affine:
    if isinstance(transform, Affine):
        return transform
    values = tuple(transform)
    if len(values) == 6:
        return Affine.from_gdal(*values)
    if len(values) == 9:
        return Affine(*values[:6])
    raise ValueError(f"GeoContext: transform must be an Affine or a GDAL geotransform, got {transform!r}")


def _as_geometry(geometry: BaseGeometry | Mapping[str, Any] | Any) -> BaseGeometry:
    if isinstance(geometry, BaseGeometry):
        shape_geometry = geometry
    else:
        if hasattr(geometry, "__geo_interface__") and not isinstance(geometry, Mapping):
            geometry = geometry.__geo_interface__
        if not isinstance(geometry, Mapping):
            raise ValueError(f"GeoContext: geometry must be shapely, GeoJSON or __geo_interface__, got {geometry!r}")
        if geometry.get("type") == "Feature":
            geometry = geometry.get("geometry") or {}
        try:
            shape_geometry = shapely.geometry.shape(geometry)
        except Exception as error:  # shapely raises several types for malformed GeoJSON
            raise ValueError(f"GeoContext: geometry is not valid GeoJSON ({error})") from error
    if shape_geometry.is_empty:
        raise ValueError("GeoContext: geometry is empty")
    if not all(math.isfinite(value) for value in shape_geometry.bounds):
        raise ValueError(f"GeoContext: geometry has non-finite bounds {shape_geometry.bounds}")
    return shape_geometry


def _utm_crs(geometry: BaseGeometry, geometry_crs: CRS) -> CRS:
    """The WGS 84 UTM zone (EPSG 326xx north, 327xx south) of the geometry's centroid."""
    centroid = geometry.centroid
    lon, lat = centroid.x, centroid.y
    if geometry_crs != CRS.from_epsg(4326):
        lon, lat = Transformer.from_crs(geometry_crs, "EPSG:4326", always_xy=True).transform(lon, lat)
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _stack(xy: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.column_stack(xy)
