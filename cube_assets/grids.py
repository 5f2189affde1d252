"""Data-cube grids and their tiles.

A grid is a regular tiling of a projected CRS: an origin (the upper-left corner of tile
column 0, row 0), a tile size in pixels and a pixel size. Tile ``(col, row)`` covers
``x in [ox + col*W*res, ox + (col+1)*W*res)`` and ``y in (oy - (row+1)*H*res, oy - row*H*res]``.

Three kinds are provided:

* ``bdc_grid("SM"|"MD"|"LG")`` — the Brazil Data Cube Albers grid: 10560×10560 px tiles at
  10 m (SM); MD and LG use tiles 2 and 4 times larger in ground size at the same pixel count
  (20 m and 40 m pixels). Tile names are ``{col:03d}{row:03d}``.
* ``utm_grid(zone, hemisphere)`` — MGRS-style 109.8 km tiles aligned on 100 km in one UTM
  zone, named ``{zone}{hemisphere}_{col:03d}{row:03d}``.
* ``user_grid(...)`` — any CRS, origin, tile size and resolution.

Tile names become Dagster partition keys and path components, so a ``name_format`` is
checked before any tile is named: its only fields are ``{col}`` and ``{row}``, each once, each
without a conversion and with no format spec or a zero-padded width ``0Nd`` (N at most
``MAX_NAME_FORMAT_WIDTH``); its literal text is letters, digits, ``_``, ``.`` and ``-``; a
rendered name is at most ``MAX_TILE_NAME_LENGTH`` characters. The tiles of an area are counted
from its bounds before any is made: more than ``MAX_TILES_PER_CUBE`` is refused.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from cube_assets.errors import InvalidCubeConfig
from cube_assets.quoting import quoted, shortened

BDC_ALBERS = (
    "+proj=aea +lat_0=-12 +lon_0=-54 +lat_1=-2 +lat_2=-22 +x_0=5000000 +y_0=10000000 +ellps=GRS80 +units=m +no_defs"
)
# Brazil's extent (lon/lat); the BDC grid origin is its upper-left corner in BDC_ALBERS,
# snapped down/up to whole metres, so every Brazilian point has non-negative tile indices.
BRAZIL_BBOX = (-73.9872354804, -33.7683777809, -34.7299934555, 5.24448639569)
_BDC_TILE_PX = 10560
_BDC_FACTORS = {"SM": 1, "MD": 2, "LG": 4}
MAX_TILES_PER_CUBE = 100_000
"""The most tiles one area (a cube's AOI) may cover, counted from its bounds before any tile is made."""
MAX_TILE_NAME_LENGTH = 128
MAX_NAME_FORMAT_WIDTH = 64
MAX_TILE_SIDE_PX = 65_536
_TILE_NAME = re.compile(rf"^[A-Za-z0-9_.-]{{1,{MAX_TILE_NAME_LENGTH}}}$")
_FORMAT_LITERAL = re.compile(r"^[A-Za-z0-9_.-]*$")
_FORMAT_SPEC = re.compile(r"^(?:0(?P<width>[0-9]{1,6})d)?$")


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: its name, CRS, affine transform and shape in pixels."""

    grid_name: str
    name: str
    col: int
    row: int
    crs_wkt: str = field(repr=False)
    transform: Affine
    width: int
    height: int

    # Cached: parsing the WKT and reprojecting the outline take about 0.1 s for a custom CRS, and
    # the catalog asks once per image of the tile.
    @cached_property
    def crs(self) -> CRS:
        """The tile's CRS as a ``pyproj.CRS``."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        """Pixel width in CRS units (the pixel size when pixels are square)."""
        return self.transform.a

    @property
    def resolution_x(self) -> float:
        """Pixel width in CRS units."""
        return self.transform.a

    @property
    def resolution_y(self) -> float:
        """Pixel height in CRS units (positive; the transform's ``e`` is its negative)."""
        return -self.transform.e

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` in the tile's CRS."""
        minx, maxy = self.transform.c, self.transform.f
        return (minx, maxy - self.height * self.resolution_y, minx + self.width * self.resolution_x, maxy)

    @property
    def geometry(self) -> Polygon:
        """The tile's outline as a shapely polygon in its own CRS."""
        return box(*self.bounds)

    @cached_property
    def geometry_4326(self) -> Polygon:
        """The tile's outline in EPSG:4326 (lon, lat), densified so curved edges stay close."""
        return _to_4326(densify(self.geometry, 32), self.crs)


@dataclass(frozen=True)
class Grid:
    """A regular tiling of a projected CRS (see module docstring for the conventions)."""

    name: str
    crs_wkt: str
    origin_x: float
    origin_y: float
    tile_width: int
    tile_height: int
    resolution: float
    name_format: str = "{col:03d}{row:03d}"
    resolution_y: float | None = None
    """Pixel height in CRS units when pixels are not square; ``None``: ``resolution``."""

    def __post_init__(self) -> None:
        for what, value in (
            ("origin x", self.origin_x),
            ("origin y", self.origin_y),
            ("resolution", self.resolution),
            ("resolution y", self.pixel_height),
        ):
            if not math.isfinite(value):
                raise InvalidCubeConfig(f"grid {quoted(self.name)}: {what} must be a finite number, got {value}")
        for what, value in (("tile width", self.tile_width), ("tile height", self.tile_height)):
            if not 1 <= value <= MAX_TILE_SIDE_PX:
                raise InvalidCubeConfig(
                    f"grid {quoted(self.name)}: {what} must lie in 1..{MAX_TILE_SIDE_PX} px, got {value}"
                )
        if not (self.resolution > 0 and self.pixel_height > 0):
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: resolution must be positive, got {self.resolution}"
                + (f" × {self.resolution_y}" if self.resolution_y is not None else "")
            )
        if not (math.isfinite(self.tile_size_x) and math.isfinite(self.tile_size_y)):
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: resolution {self.resolution} makes tiles of infinite size"
            )
        crs = CRS.from_wkt(self.crs_wkt)
        if not crs.is_projected:
            raise InvalidCubeConfig(f"grid {quoted(self.name)}: CRS must be projected, got {quoted(crs.name)}")
        check_name_format(self.name_format, self.name)

    @cached_property
    def crs(self) -> CRS:
        """The grid's CRS as a ``pyproj.CRS``."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def pixel_width(self) -> float:
        """Pixel width in CRS units."""
        return self.resolution

    @property
    def pixel_height(self) -> float:
        """Pixel height in CRS units: ``resolution_y``, else ``resolution`` (square pixels)."""
        return self.resolution if self.resolution_y is None else self.resolution_y

    @property
    def tile_size_x(self) -> float:
        """Tile width in CRS units."""
        return self.tile_width * self.pixel_width

    @property
    def tile_size_y(self) -> float:
        """Tile height in CRS units."""
        return self.tile_height * self.pixel_height

    def tile(self, col: int, row: int) -> Tile:
        """Return the tile at grid column ``col`` and row ``row``.

        Raises:
            InvalidCubeConfig: if the resulting tile name is longer than ``MAX_TILE_NAME_LENGTH``.
        """
        name = self.name_format.format(col=col, row=row)
        if len(name) > MAX_TILE_NAME_LENGTH:
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: tile ({col}, {row}) would be named {quoted(name)}, longer than "
                f"{MAX_TILE_NAME_LENGTH} characters"
            )
        transform = Affine(
            self.resolution,
            0.0,
            self.origin_x + col * self.tile_size_x,
            0.0,
            -self.pixel_height,
            self.origin_y - row * self.tile_size_y,
        )
        return Tile(self.name, name, col, row, self.crs_wkt, transform, self.tile_width, self.tile_height)

    def tile_by_name(self, name: str) -> Tile:
        """Return the tile called ``name``.

        Raises:
            InvalidCubeConfig: if ``name`` does not follow this grid's name format.
        """
        match = (
            re.fullmatch(self._name_pattern(), name) if isinstance(name, str) and _TILE_NAME.fullmatch(name) else None
        )
        if not match or self.name_format.format(col=int(match["col"]), row=int(match["row"])) != name:
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: {quoted(name)} is not a tile name of format {quoted(self.name_format)}"
            )
        return self.tile(int(match["col"]), int(match["row"]))

    def _name_pattern(self) -> str:
        # "{col:03d}{row:03d}" -> "(?P<col>-?\d{3})(?P<row>-?\d{3})": a width makes the split unambiguous.
        pattern = []
        for part in re.finditer(r"\{(col|row)(?::0?(\d+)d)?\}|[^{]+|\{", self.name_format):
            if part.group(1):
                digits = f"\\d{{{int(part.group(2))}}}" if part.group(2) else "\\d+?"
                pattern.append(f"(?P<{part.group(1)}>-?{digits})")
            else:
                pattern.append(re.escape(part.group(0)))
        return "".join(pattern)

    def tiles_intersecting(
        self,
        geometry: BaseGeometry,
        geometry_crs: CRS | str = "EPSG:4326",
        max_tiles: int = MAX_TILES_PER_CUBE,
    ) -> list[Tile]:
        """Return every tile whose outline intersects ``geometry`` (given in ``geometry_crs``).

        The tiles of the geometry's bounding box are counted before any is made.

        Returns:
            Tiles sorted by row then column.

        Raises:
            InvalidCubeConfig: when the geometry has no finite bounds in the grid's CRS, or its
                bounding box spans more than ``max_tiles`` tiles (the message says how many).
        """
        src_crs = CRS.from_user_input(geometry_crs)
        projected = geometry if src_crs == self.crs else _reproject(densify(geometry, 64), src_crs, self.crs)
        cols, rows = self.tile_span(projected.bounds)
        count = len(cols) * len(rows)
        if count > max_tiles:
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: the area spans {len(cols):,} columns × {len(rows):,} rows "
                f"= {count:,} tiles, "
                f"more than the limit of {max_tiles:,} tiles"
            )
        tiles = []
        for row in rows:
            for col in cols:
                tile = self.tile(col, row)
                if tile.geometry.intersects(projected):
                    tiles.append(tile)
        return tiles

    def tile_span(self, bounds: tuple[float, float, float, float]) -> tuple[range, range]:
        """Return the columns and rows of the tiles that ``bounds`` (in the grid's CRS) touch.

        Returns:
            ``(columns, rows)`` as ranges; their lengths multiply to the number of tiles.

        Raises:
            InvalidCubeConfig: when a bound is not finite (e.g. an area outside the projection's
                domain), or the indices are too large to be tile indices.
        """
        minx, miny, maxx, maxy = bounds
        if not all(math.isfinite(v) for v in bounds):
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: the area has no finite bounds in the grid's CRS "
                "(it lies outside the projection's domain)"
            )
        spans = (
            (minx - self.origin_x) / self.tile_size_x,
            (maxx - self.origin_x) / self.tile_size_x,
            (self.origin_y - maxy) / self.tile_size_y,
            (self.origin_y - miny) / self.tile_size_y,
        )
        if not all(math.isfinite(v) and abs(v) < 1e15 for v in spans):
            raise InvalidCubeConfig(
                f"grid {quoted(self.name)}: the area lies too far from the grid's origin for tile indices"
            )
        col0, col1, row0, row1 = (math.floor(v) for v in spans)
        return range(col0, col1 + 1), range(row0, row1 + 1)

    def tile_at(self, x: float, y: float) -> Tile:
        """Return the tile containing the point ``(x, y)`` given in the grid's CRS.

        Raises:
            InvalidCubeConfig: when the point is not finite or too far from the origin.
        """
        cols, rows = self.tile_span((x, y, x, y))
        return self.tile(cols[0], rows[0])

    def tiles_frame(self, tiles: Iterable[Tile]):  # -> geopandas.GeoDataFrame
        """Return the tiles as a GeoDataFrame (columns name, col, row, geometry) in the grid's CRS."""
        import geopandas as gpd

        tiles = list(tiles)
        return gpd.GeoDataFrame(
            {"name": [t.name for t in tiles], "col": [t.col for t in tiles], "row": [t.row for t in tiles]},
            geometry=[t.geometry for t in tiles],
            crs=self.crs,
        )


def check_name_format(name_format: str, grid_name: str) -> None:
    """Check a tile name format against the rule in the module docstring.

    Raises:
        InvalidCubeConfig: naming the grid and quoting the format, on an unparseable format, an
            unknown field, a conversion, a format spec other than ``0Nd``, a width over
            ``MAX_NAME_FORMAT_WIDTH``, literal text outside ``[A-Za-z0-9_.-]``, ``col`` or ``row``
            missing or repeated, or a rendered name longer than ``MAX_TILE_NAME_LENGTH``.
    """
    where = f"grid {quoted(grid_name)}: tile name format {quoted(name_format)}"
    if not isinstance(name_format, str):
        raise InvalidCubeConfig(f"{where}: must be a string")
    if len(name_format) > MAX_TILE_NAME_LENGTH:
        raise InvalidCubeConfig(f"{where}: longer than {MAX_TILE_NAME_LENGTH} characters")
    try:
        parts = list(string.Formatter().parse(name_format))
    except ValueError as exc:
        raise InvalidCubeConfig(f"{where}: {exc}") from exc
    fields = []
    for literal, field_name, spec, conversion in parts:
        if not _FORMAT_LITERAL.fullmatch(literal):
            raise InvalidCubeConfig(
                f"{where}: literal text {quoted(literal)} may hold only letters, digits, '_', '.' and '-'"
            )
        if field_name is None:
            continue
        if field_name not in ("col", "row"):
            raise InvalidCubeConfig(f"{where}: unknown field {quoted(field_name)} (only {{col}} and {{row}})")
        if conversion is not None:
            raise InvalidCubeConfig(f"{where}: conversion !{conversion} of {{{field_name}}} is not allowed")
        match = _FORMAT_SPEC.fullmatch(spec or "")
        if not match:
            raise InvalidCubeConfig(
                f"{where}: format spec {quoted(spec)} of {{{field_name}}}: give none or a zero-padded width like '03d'"
            )
        if match["width"] and not 1 <= int(match["width"]) <= MAX_NAME_FORMAT_WIDTH:
            raise InvalidCubeConfig(
                f"{where}: width {int(match['width'])} of {{{field_name}}} is not in 1..{MAX_NAME_FORMAT_WIDTH}"
            )
        fields.append(field_name)
    if sorted(fields) != ["col", "row"]:
        raise InvalidCubeConfig(f"{where}: must use {{col}} and {{row}} once each")
    sample = name_format.format(col=0, row=0)
    if len(sample) > MAX_TILE_NAME_LENGTH:
        raise InvalidCubeConfig(f"{where}: renders names of {len(sample)} characters, more than {MAX_TILE_NAME_LENGTH}")


def bdc_grid(size: str = "SM") -> Grid:
    """Return the Brazil Data Cube Albers grid of the given size (``SM``, ``MD`` or ``LG``).

    Raises:
        InvalidCubeConfig: for an unknown size.
    """
    size = size.upper()
    if size not in _BDC_FACTORS:
        raise InvalidCubeConfig(f"BDC grid size {quoted(size)} unknown; expected one of {sorted(_BDC_FACTORS)}")
    factor = _BDC_FACTORS[size]
    crs = CRS.from_proj4(BDC_ALBERS)
    ox, oy = _bdc_origin()
    return Grid(f"BDC_{size}", crs.to_wkt(), ox, oy, _BDC_TILE_PX, _BDC_TILE_PX, 10.0 * factor)


def _bdc_origin() -> tuple[float, float]:
    crs = CRS.from_proj4(BDC_ALBERS)
    outline = _reproject(densify(box(*BRAZIL_BBOX), 256), CRS.from_epsg(4326), crs)
    minx, _, _, maxy = outline.bounds
    return float(math.floor(minx)), float(math.ceil(maxy))


def utm_grid(zone: int, hemisphere: str = "N") -> Grid:
    """Return an MGRS-style grid in one UTM zone: 10980 px tiles at 10 m, origin on 100 km.

    Tiles overlap nothing (unlike MGRS's 4.9 km overlap); names are ``{zone}{N|S}_{col:03d}{row:03d}``.

    Raises:
        InvalidCubeConfig: for a zone outside 1..60 or a hemisphere other than N/S.
    """
    hemisphere = hemisphere.upper()
    if not 1 <= zone <= 60 or hemisphere not in ("N", "S"):
        raise InvalidCubeConfig(
            f"UTM zone {quoted(zone)} {quoted(hemisphere)} is not valid (zones 1..60, hemisphere N or S)"
        )
    epsg = (32600 if hemisphere == "N" else 32700) + zone
    return Grid(
        f"UTM{zone}{hemisphere}",
        CRS.from_epsg(epsg).to_wkt(),
        origin_x=100_000.0,
        origin_y=10_000_000.0,
        tile_width=10980,
        tile_height=10980,
        resolution=10.0,
        name_format=f"{zone}{hemisphere}_{{col:03d}}{{row:03d}}",
    )


def user_grid(
    name: str,
    crs: str | int,
    origin: tuple[float, float],
    tile_size: tuple[int, int],
    resolution: float | tuple[float, float],
    name_format: str = "{col:03d}{row:03d}",
) -> Grid:
    """Return a user-defined grid.

    Args:
        crs: anything ``pyproj.CRS.from_user_input`` accepts (EPSG code, PROJ string, WKT).
        origin: upper-left corner ``(x, y)`` of tile (0, 0) in CRS units.
        tile_size: ``(width, height)`` in pixels.
        resolution: the pixel size, or ``(x, y)``: width and height of non-square pixels.

    Raises:
        InvalidCubeConfig: for an unparseable or geographic CRS, or non-positive sizes.
    """
    resolution_x, resolution_y = resolution if isinstance(resolution, tuple | list) else (resolution, resolution)
    try:
        parsed = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError with a long message
        raise InvalidCubeConfig(f"grid {quoted(name)}: cannot parse CRS {quoted(crs)}: {shortened(str(exc))}") from exc
    return Grid(
        name,
        parsed.to_wkt(),
        float(origin[0]),
        float(origin[1]),
        int(tile_size[0]),
        int(tile_size[1]),
        float(resolution_x),
        name_format,
        None if resolution_y == resolution_x else float(resolution_y),
    )


def densify(geometry: BaseGeometry, points_per_edge: int) -> BaseGeometry:
    """Return ``geometry`` with each polygon edge split into ``points_per_edge`` segments."""
    minx, miny, maxx, maxy = geometry.bounds
    longest = max(maxx - minx, maxy - miny) or 1.0
    return geometry.segmentize(longest / points_per_edge)


def _reproject(geometry: BaseGeometry, src: CRS, dst: CRS) -> BaseGeometry:
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geometry, lambda xy: _stack(transformer.transform(xy[:, 0], xy[:, 1])))


def _stack(xy: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.column_stack(xy)


def _to_4326(geometry: BaseGeometry, src: CRS) -> BaseGeometry:
    return _reproject(geometry, src, CRS.from_epsg(4326))
