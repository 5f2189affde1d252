"""SQL for "the image's footprint intersects this geometry", exact and index-assisted on every backend.

:meth:`cube_assets.catalog.search.Search.intersects` compiles to one of three predicates that give
the same answers: those of shapely's and PostGIS's ``intersects`` (footprint and geometry share at
least one point; touching counts). Each pairs an index that finds the candidates whose bounding
boxes meet the geometry's with an exact test of those candidates:

* **PostgreSQL with PostGIS** (migration 0004 added ``images.footprint``, a
  ``geometry(Geometry, 4326)`` filled by a trigger, with a GiST index): ``ST_Intersects``. The
  bounding-box condition over 0003's GiST index is kept next to it, so that index can answer
  "near this tile *and* in these dates" at once (see :data:`POSTGIS_BBOX_PREFILTER`).
* **PostgreSQL without PostGIS**: 0003's GiST index over ``box(...)`` and the time span, then
  :func:`exact_intersects` over the stored GeoJSON.
* **SQLite**: 0004's R*Tree ``images_bbox_rtree``, then :func:`exact_intersects` in SQLite's JSON
  functions.

The exact test without PostGIS is plain SQL over the footprint's GeoJSON (``images.geometry``)
and the query geometry, decomposed in Python into segments and points and bound as JSON
parameters. Two closed sets A (the footprint: polygons) and B (the query: polygons, lines,
points) intersect exactly when

1. an edge of A and a segment of B meet (orientation tests; B's points count as zero-length
   segments), or
2. a vertex of B (the first of each of its rings and lines, and its points) lies inside A
   (even-odd ray crossing over A's edges), or
3. the first vertex of a ring of A lies inside a polygon of B (the same test, per polygon of B).

If no boundaries meet, every ring or line of one lies wholly inside or wholly outside the other,
so one vertex of each decides (2 and 3). All arithmetic is in double precision, as in GEOS; only a
vertex lying within rounding error of the other's boundary could be classified differently.
The cost is proportional to (A's edges × B's segments) per candidate row, after the index has
chosen the candidates: fine for footprints and tiles of tens to hundreds of vertices; PostGIS is
the better tool for query geometries of many thousands.

The SQL refers to the images table by its name (``images.geometry``): searches select from the
unaliased table. One statement holds at most one such predicate (its parameters have fixed names).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnClause, ColumnElement, String, and_, bindparam, func, literal, literal_column, text
from sqlalchemy.sql import column, select, table

from cube_assets.errors import CatalogError

BBox = tuple[float, float, float, float]
"""``(min_lon, min_lat, max_lon, max_lat)`` in EPSG:4326 degrees."""

#: With PostGIS, also require the bounding boxes to meet through 0003's ``box && box``: redundant
#: for the answer, but it lets the planner use the GiST index over bbox × time span for searches
#: that also restrict ``acquired``. Measured with the searches of benchmarks/catalog_search.py at a
#: million images: 3 ms p50 / 8 ms p95 in the database with it, 9 / 18 ms without (the footprint
#: index alone, or with a multi-column GiST over footprint and time span, 7 / 16 ms).
POSTGIS_BBOX_PREFILTER = True

_RTREE = table(
    "images_bbox_rtree", column("id"), column("min_lon"), column("max_lon"), column("min_lat"), column("max_lat")
)
_RTREE_IDS = table("images_bbox_rtree_ids", column("id"), column("image_id"))


@dataclass(frozen=True)
class QueryShape:
    """A query geometry taken apart for :func:`exact_intersects` (coordinates in lon/lat).

    ``segments``: ``[x1, y1, x2, y2]`` for every edge of its polygons' rings and its lines, and
    ``[x, y, x, y]`` for each of its points. ``points``: the first vertex of each ring and line,
    and each point. ``ring_edges``: ``[polygon number, x1, y1, x2, y2]`` for the edges of its
    polygons, to test whether a point is inside one.
    """

    segments: list[list[float]]
    points: list[list[float]]
    ring_edges: list[list[float]]

    @classmethod
    def from_geometry(cls, geometry: BaseGeometry) -> QueryShape:
        """Return the parts of ``geometry`` (any shapely geometry, collections included).

        An invalid polygon (e.g. a bow tie) is first repaired with ``shapely.make_valid``, as the
        even-odd rule would otherwise read it differently from GEOS.

        Returns:
            The :class:`QueryShape`.

        Raises:
            CatalogError: if the geometry is empty.
        """
        if geometry.is_empty:
            raise CatalogError("geometry is empty")
        if not geometry.is_valid:
            geometry = shapely.make_valid(geometry)
        segments: list[list[float]] = []
        points: list[list[float]] = []
        ring_edges: list[list[float]] = []
        polygon_number = 0
        for part in _simple_parts(geometry):
            if part.is_empty:
                continue
            if part.geom_type == "Point":
                x, y = part.coords[0][:2]
                segments.append([x, y, x, y])
                points.append([x, y])
            elif part.geom_type in ("LineString", "LinearRing"):
                coords = [c[:2] for c in part.coords]
                segments.extend([*a, *b] for a, b in zip(coords, coords[1:], strict=False))
                points.append(list(coords[0]))
            elif part.geom_type == "Polygon":
                polygon_number += 1
                for ring in (part.exterior, *part.interiors):
                    coords = [c[:2] for c in ring.coords]
                    edges = [[*a, *b] for a, b in zip(coords, coords[1:], strict=False)]
                    segments.extend(edges)
                    ring_edges.extend([polygon_number, *edge] for edge in edges)
                    points.append(list(coords[0]))
            else:  # pragma: no cover - shapely has no other simple geometry types
                raise CatalogError(f"geometry part of type {part.geom_type} is not supported")
        if not segments:
            raise CatalogError("geometry is empty")
        return cls(
            segments=[[float(v) for v in s] for s in segments],
            points=[[float(v) for v in p] for p in points],
            ring_edges=[[int(r[0]), *(float(v) for v in r[1:])] for r in ring_edges],
        )


def _simple_parts(geometry: BaseGeometry) -> list[BaseGeometry]:
    if hasattr(geometry, "geoms"):
        return [part for member in geometry.geoms for part in _simple_parts(member)]
    return [geometry]


# ----------------------------------------------------------------------------------- SQL text
#
# Written once with placeholders, filled per dialect. {geometry} is the footprint's GeoJSON column.
# Edges come as rows (x1, y1, x2, y2); points as (x, y).

_PG = {
    # Every ring of the footprint, numbered, with its number of positions. A Polygon's coordinates
    # are wrapped so that both types read as a list of polygons.
    "rings": (
        "SELECT polygon.number AS polygon_number, ring.number AS ring_number, ring.value AS ring,"
        " jsonb_array_length(ring.value) AS size"
        " FROM jsonb_array_elements(CASE WHEN {geometry}->>'type' = 'Polygon'"
        " THEN jsonb_build_array({geometry}->'coordinates') ELSE {geometry}->'coordinates' END)"
        " WITH ORDINALITY AS polygon(value, number),"
        " jsonb_array_elements(polygon.value) WITH ORDINALITY AS ring(value, number)"
    ),
    # Each position to the next one (the last to the first: a closed ring's last edge has length 0).
    "edges": (
        "SELECT (point.value->>0)::float8 AS x1, (point.value->>1)::float8 AS y1,"
        " (r.ring->(mod(point.number, r.size)::int)->>0)::float8 AS x2,"
        " (r.ring->(mod(point.number, r.size)::int)->>1)::float8 AS y2"
        " FROM ({rings}) AS r, jsonb_array_elements(r.ring) WITH ORDINALITY AS point(value, number)"
    ),
    "first_points": (
        "SELECT r.polygon_number, r.ring_number, (r.ring->0->>0)::float8 AS x, (r.ring->0->>1)::float8 AS y"
        " FROM ({rings}) AS r"
    ),
    "segments": (
        "SELECT (s.value->>0)::float8 AS x1, (s.value->>1)::float8 AS y1,"
        " (s.value->>2)::float8 AS x2, (s.value->>3)::float8 AS y2"
        " FROM jsonb_array_elements(CAST(:footprint_segments AS jsonb)) AS s(value)"
    ),
    "points": (
        "SELECT (s.value->>0)::float8 AS x, (s.value->>1)::float8 AS y"
        " FROM jsonb_array_elements(CAST(:footprint_points AS jsonb)) AS s(value)"
    ),
    "ring_edges": (
        "SELECT (s.value->>0)::int AS part, (s.value->>1)::float8 AS x1, (s.value->>2)::float8 AS y1,"
        " (s.value->>3)::float8 AS x2, (s.value->>4)::float8 AS y2"
        " FROM jsonb_array_elements(CAST(:footprint_ring_edges AS jsonb)) AS s(value)"
    ),
    "greatest": "greatest",
    "least": "least",
    "odd": "mod({count}, 2) = 1",
}

_SQLITE = {
    "rings": (
        "SELECT polygon.key AS polygon_number, ring.key AS ring_number, ring.value AS ring,"
        " json_array_length(ring.value) AS size"
        " FROM json_each(CASE json_extract({geometry}, '$.type') WHEN 'Polygon'"
        " THEN json_array(json_extract({geometry}, '$.coordinates'))"
        " ELSE json_extract({geometry}, '$.coordinates') END)"
        " AS polygon, json_each(polygon.value) AS ring"
    ),
    "edges": (
        "SELECT json_extract(point.value, '$[0]') AS x1, json_extract(point.value, '$[1]') AS y1,"
        " json_extract(r.ring, '$[' || ((point.key + 1) % r.size) || '][0]') AS x2,"
        " json_extract(r.ring, '$[' || ((point.key + 1) % r.size) || '][1]') AS y2"
        " FROM ({rings}) AS r, json_each(r.ring) AS point"
    ),
    "first_points": (
        "SELECT r.polygon_number, r.ring_number, json_extract(r.ring, '$[0][0]') AS x,"
        " json_extract(r.ring, '$[0][1]') AS y FROM ({rings}) AS r"
    ),
    "segments": (
        "SELECT json_extract(s.value, '$[0]') AS x1, json_extract(s.value, '$[1]') AS y1,"
        " json_extract(s.value, '$[2]') AS x2, json_extract(s.value, '$[3]') AS y2"
        " FROM json_each(:footprint_segments) AS s"
    ),
    "points": (
        "SELECT json_extract(s.value, '$[0]') AS x, json_extract(s.value, '$[1]') AS y"
        " FROM json_each(:footprint_points) AS s"
    ),
    "ring_edges": (
        "SELECT json_extract(s.value, '$[0]') AS part, json_extract(s.value, '$[1]') AS x1,"
        " json_extract(s.value, '$[2]') AS y1, json_extract(s.value, '$[3]') AS x2,"
        " json_extract(s.value, '$[4]') AS y2 FROM json_each(:footprint_ring_edges) AS s"
    ),
    "greatest": "max",
    "least": "min",
    "odd": "{count} % 2 = 1",
}


def _orientation(a: str, b: str, i: str) -> str:
    """SQL for the cross product (a2 - a1) × (b_i - a1): > 0 left of segment a, < 0 right, 0 on its line."""
    return f"(({a}.x2 - {a}.x1) * ({b}.y{i} - {a}.y1) - ({a}.y2 - {a}.y1) * ({b}.x{i} - {a}.x1))"


def _not_same_side(a: str, b: str) -> str:
    """SQL: segment b's ends are not both strictly on one side of segment a's line."""
    o1, o2 = _orientation(a, b, "1"), _orientation(a, b, "2")
    return f"NOT (({o1} > 0 AND {o2} > 0) OR ({o1} < 0 AND {o2} < 0))"


def _segments_meet(sql: dict[str, str], a: str, b: str) -> str:
    """SQL: closed segments a and b share a point (collinear overlaps and zero-length segments too)."""
    greatest, least = sql["greatest"], sql["least"]
    boxes = (
        f"{greatest}({a}.x1, {a}.x2) >= {least}({b}.x1, {b}.x2)"
        f" AND {least}({a}.x1, {a}.x2) <= {greatest}({b}.x1, {b}.x2)"
        f" AND {greatest}({a}.y1, {a}.y2) >= {least}({b}.y1, {b}.y2)"
        f" AND {least}({a}.y1, {a}.y2) <= {greatest}({b}.y1, {b}.y2)"
    )
    return f"{boxes} AND {_not_same_side(a, b)} AND {_not_same_side(b, a)}"


def _ray_crosses(edge: str, point: str) -> str:
    """SQL: the ray from ``point`` towards +x crosses ``edge`` (the even-odd rule's half-open count)."""
    e = f"(({point}.x - {edge}.x1) * ({edge}.y2 - {edge}.y1) - ({point}.y - {edge}.y1) * ({edge}.x2 - {edge}.x1))"
    return (
        f"(({edge}.y1 > {point}.y) <> ({edge}.y2 > {point}.y))"
        f" AND (CASE WHEN {edge}.y2 > {edge}.y1 THEN {e} < 0 ELSE {e} > 0 END)"
    )


def exact_intersects_sql(dialect: str, geometry_column: str = "images.geometry") -> str:
    """Return the SQL text of the exact footprint test for ``dialect`` (``"postgresql"`` or ``"sqlite"``).

    It reads the footprint's GeoJSON from ``geometry_column`` and the query geometry from the
    bound parameters ``footprint_segments``, ``footprint_points`` and ``footprint_ring_edges``
    (JSON text of :class:`QueryShape`'s lists).

    Returns:
        A boolean SQL expression.

    Raises:
        CatalogError: for another dialect.
    """
    if dialect == "postgresql":
        sql = _PG
    elif dialect == "sqlite":
        sql = _SQLITE
    else:
        raise CatalogError(f"footprint search supports sqlite and postgresql, not {dialect!r}")
    rings = sql["rings"].format(geometry=geometry_column)
    edges = sql["edges"].format(rings=rings)
    first_points = sql["first_points"].format(rings=rings)
    # 2. a vertex of the query lies inside the footprint;
    query_vertex_inside = (
        f"EXISTS (SELECT 1 FROM ({sql['points']}) AS q WHERE "
        + sql["odd"].format(count=f"(SELECT count(*) FROM ({edges}) AS a WHERE {_ray_crosses('a', 'q')})")
        + ")"
    )
    # 3. a ring of the footprint starts inside a polygon of the query;
    footprint_vertex_inside = (
        f"EXISTS (SELECT 1 FROM ({first_points}) AS f, ({sql['ring_edges']}) AS b"
        f" WHERE {_ray_crosses('b', 'f')}"
        " GROUP BY f.polygon_number, f.ring_number, b.part HAVING " + sql["odd"].format(count="count(*)") + ")"
    )
    # 1. the boundaries meet.
    boundaries_meet = (
        f"EXISTS (SELECT 1 FROM ({edges}) AS a, ({sql['segments']}) AS b WHERE {_segments_meet(sql, 'a', 'b')})"
    )
    return f"({query_vertex_inside} OR {footprint_vertex_inside} OR {boundaries_meet})"


def exact_intersects(model: Any, geometry: BaseGeometry, dialect: str) -> ColumnElement[bool]:
    """Return the exact "footprint intersects ``geometry``" test as a SQLAlchemy clause (no PostGIS).

    ``model`` is the images model (its table name qualifies the footprint column).

    Returns:
        The boolean clause, its parameters bound.

    Raises:
        CatalogError: for an empty geometry or an unsupported dialect.
    """
    shape = QueryShape.from_geometry(geometry)
    clause = text(exact_intersects_sql(dialect, f"{model.__table__.name}.geometry")).bindparams(
        bindparam("footprint_segments", json.dumps(shape.segments)),
        bindparam("footprint_points", json.dumps(shape.points)),
        bindparam("footprint_ring_edges", json.dumps(shape.ring_edges)),
    )
    return clause  # type: ignore[return-value]  # a boolean SQL text clause stands in a WHERE like a ColumnElement


def postgis_geometry_text(geometry: BaseGeometry) -> str:
    """Return the GeoJSON text :func:`footprint_intersects` binds for ``geometry`` with PostGIS (repaired if invalid).

    Returns:
        The text (lossless for doubles).
    """
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    return json.dumps(shapely.geometry.mapping(geometry))


def postgis_intersects(
    model: Any, geometry: BaseGeometry, schema: str, bind: Callable[[Any, Any], Any] | None = None
) -> ColumnElement[bool]:
    """Return ``ST_Intersects(images.footprint, geometry)``, PostGIS functions qualified with ``schema``.

    ``bind`` (value, type), when given, makes the bound GeoJSON text (a search's named parameter).

    Returns:
        The boolean clause; the geometry is bound as GeoJSON text (lossless for doubles).

    Raises:
        Nothing.
    """
    postgis = getattr(func, schema)
    geojson = postgis_geometry_text(geometry)
    query = postgis.st_setsrid(
        postgis.st_geomfromgeojson(literal(geojson) if bind is None else bind(geojson, String())), 4326
    )
    footprint: ColumnClause[Any] = literal_column(f"{model.__table__.name}.footprint")
    intersects: ColumnElement[bool] = postgis.st_intersects(footprint, query)
    return intersects


def rtree_candidates(model: Any, bbox: BBox) -> ColumnElement[bool]:
    """Return "the image's id is among the R*Tree entries whose boxes meet ``bbox``" (SQLite, 0004).

    The R*Tree stores 32-bit floats rounded outwards, so it may return a few extra candidates,
    never fewer; the exact test that follows decides.

    Returns:
        The boolean clause ``images.id IN (SELECT ...)``.

    Raises:
        Nothing.
    """
    min_lon, min_lat, max_lon, max_lat = bbox
    candidates = (
        select(_RTREE_IDS.c.image_id)
        .select_from(_RTREE.join(_RTREE_IDS, _RTREE_IDS.c.id == _RTREE.c.id))
        .where(
            _RTREE.c.min_lon <= max_lon,
            _RTREE.c.max_lon >= min_lon,
            _RTREE.c.min_lat <= max_lat,
            _RTREE.c.max_lat >= min_lat,
        )
    )
    return model.id.in_(candidates)  # type: ignore[no-any-return]  # the model's id column is typed Any by the mapping


def footprint_intersects(
    model: Any,
    geometry: BaseGeometry,
    bbox_clause: ColumnElement[bool],
    dialect: str,
    postgis_schema: str | None,
    bind: Callable[[Any, Any], Any] | None = None,
) -> ColumnElement[bool]:
    """Return the predicate :meth:`Search.intersects` compiles to for this backend (see the module docstring).

    ``bbox_clause`` is the bounding-box condition PostgreSQL's GiST index of 0003 serves;
    ``bind`` is passed to :func:`postgis_intersects` (the other paths take no ``bind``).

    Returns:
        The boolean clause.

    Raises:
        CatalogError: for an empty geometry or an unsupported dialect.
    """
    if not geometry.is_valid:  # e.g. a bow tie: every path reads the same repaired geometry
        geometry = shapely.make_valid(geometry)
    if dialect == "postgresql":
        if postgis_schema is not None:
            exact = postgis_intersects(model, geometry, postgis_schema, bind)
            return and_(bbox_clause, exact) if POSTGIS_BBOX_PREFILTER else exact
        return and_(bbox_clause, exact_intersects(model, geometry, dialect))
    if dialect == "sqlite":
        bounds = geometry.bounds
        return and_(rtree_candidates(model, bounds), exact_intersects(model, geometry, dialect))
    raise CatalogError(f"footprint search supports sqlite and postgresql, not {dialect!r}")


__all__ = [
    "POSTGIS_BBOX_PREFILTER",
    "QueryShape",
    "exact_intersects",
    "exact_intersects_sql",
    "footprint_intersects",
    "postgis_geometry_text",
    "postgis_intersects",
    "rtree_candidates",
]
