"""``intersects`` is exact and gives the same answers on SQLite, PostgreSQL, and PostgreSQL with PostGIS.

Each test runs on the three ``footprint_backend`` databases (``conftest.py``): SQLite (R*Tree,
exact SQL test), PostgreSQL migrated with ``postgis=False`` (GiST bbox index, exact SQL test) and
PostgreSQL with PostGIS (``ST_Intersects`` on ``images.footprint``; skipped locally without the
extension files, failing on CI). The oracle is shapely's ``intersects`` on the same geometries.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import shapely
import shapely.affinity
import shapely.geometry
from shapely.geometry.base import BaseGeometry
from sqlalchemy import delete, text

from cube_assets.catalog import models
from cube_assets.catalog.database import upgrade_schema
from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.footprints import QueryShape
from cube_assets.catalog.repository import ImageFileRecord, ImageRecord, upsert_image
from cube_assets.client import Catalog, Image
from cube_assets_tests.catalog.conftest import FootprintBackend

UTC = dt.UTC
PRODUCT = "footprints"
TRIANGLE = shapely.geometry.Polygon([(0, 0), (1, 0), (0, 1)])  # diagonal edge from (1, 0) to (0, 1)


@pytest.fixture
def spatial(footprint_backend: FootprintBackend) -> Iterator[Catalog]:
    """An empty catalog migrated the backend's way, with the product the images belong to."""
    upgrade_schema(footprint_backend.url, postgis=footprint_backend.postgis)
    with Catalog(footprint_backend.url) as catalog:
        assert (catalog.postgis_schema is not None) == footprint_backend.postgis
        catalog.products(id=PRODUCT, name="Footprints").save()
        yield catalog


def _store(catalog: Catalog, footprints: dict[str, BaseGeometry]) -> None:
    with catalog.transaction() as session:
        for number, (image_id, geometry) in enumerate(footprints.items()):
            upsert_image(session, _record(image_id, geometry, number))


def _record(image_id: str, geometry: BaseGeometry, number: int = 0) -> ImageRecord:
    return ImageRecord(
        id=image_id,
        product_id=PRODUCT,
        name=image_id,
        acquired=dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(hours=number),
        geometry=shapely.geometry.mapping(geometry),
        crs="EPSG:4326",
        files=[ImageFileRecord("B04", f"/data/{image_id}.tif", 100)],
    )


def _found(catalog: Catalog, geometry: Any) -> set[str]:
    return {image.id for image in Image.search(catalog).intersects(geometry)}


def _expected(footprints: dict[str, BaseGeometry], geometry: BaseGeometry) -> set[str]:
    return {image_id for image_id, footprint in footprints.items() if footprint.intersects(geometry)}


# ------------------------------------------------------------------------------ exact answers


@pytest.mark.parametrize(
    ("query", "hit"),
    [
        (shapely.geometry.box(0.6, 0.6, 0.9, 0.9), False),  # inside the bbox, beyond the diagonal
        (shapely.geometry.Point(0.8, 0.8), False),
        (shapely.geometry.LineString([(0.7, 1.0), (1.0, 0.7)]), False),  # parallel to the diagonal, outside
        (shapely.geometry.box(0.5, 0.5, 0.9, 0.9), True),  # touches the diagonal at (0.5, 0.5)
        (shapely.geometry.Point(0.5, 0.5), True),  # on the diagonal
        (shapely.geometry.Point(1, 0), True),  # a vertex
        (shapely.geometry.box(0.1, 0.1, 0.2, 0.2), True),  # wholly inside the footprint
        (shapely.geometry.box(-1, -1, 2, 2), True),  # holds the whole footprint
        (shapely.geometry.LineString([(0.2, -1), (0.2, 2)]), True),  # crosses it
        (shapely.geometry.MultiPoint([(0.9, 0.9), (0.1, 0.1)]), True),  # one of two points inside
    ],
    ids=[
        "box-beyond-diagonal",
        "point-beyond",
        "line-beyond",
        "box-touching",
        "point-on-edge",
        "vertex",
        "box-inside",
        "box-around",
        "line-across",
        "multipoint",
    ],  # fmt: skip
)
def test_a_diagonal_footprint_is_matched_exactly_not_by_its_bounding_box(
    spatial: Catalog, query: BaseGeometry, hit: bool
) -> None:
    _store(spatial, {"triangle": TRIANGLE})

    assert _found(spatial, query) == ({"triangle"} if hit else set())
    assert TRIANGLE.intersects(query) is hit  # the oracle agrees


def test_a_query_inside_a_footprints_hole_does_not_match_it(spatial: Catalog) -> None:
    frame = shapely.geometry.box(0, 0, 4, 4).difference(shapely.geometry.box(1, 1, 3, 3))
    _store(
        spatial,
        {"frame": frame, "islands": shapely.geometry.MultiPolygon([TRIANGLE, shapely.geometry.box(5, 5, 6, 6)])},
    )

    assert _found(spatial, shapely.geometry.box(1.5, 1.5, 2.5, 2.5)) == set()  # in the hole
    assert _found(spatial, shapely.geometry.box(2.5, 2.5, 3.5, 3.5)) == {"frame"}
    assert _found(spatial, shapely.geometry.box(0.9, 0.9, 0.95, 0.95)) == {"frame"}  # near the triangle, not in it
    assert _found(spatial, shapely.geometry.Point(5.5, 5.5)) == {"islands"}  # the MultiPolygon's second part


def test_a_query_with_a_hole_around_a_footprint_does_not_match_it(spatial: Catalog) -> None:
    _store(
        spatial, {"small": shapely.geometry.box(1.5, 1.5, 2.5, 2.5), "large": shapely.geometry.box(0.5, 0.5, 3.5, 3.5)}
    )
    ring = shapely.geometry.box(0, 0, 4, 4).difference(shapely.geometry.box(1, 1, 3, 3))

    assert _found(spatial, ring) == {"large"}


def test_an_invalid_query_polygon_is_read_as_its_repair_on_every_backend(spatial: Catalog) -> None:
    bow_tie = shapely.geometry.Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])  # lobes left and right of x = 1
    footprints = {"left": shapely.geometry.box(0.1, 0.9, 0.3, 1.1), "top": shapely.geometry.box(0.9, 1.6, 1.1, 1.8)}
    _store(spatial, footprints)

    assert not bow_tie.is_valid
    assert _found(spatial, bow_tie) == _expected(footprints, shapely.make_valid(bow_tie)) == {"left"}


def _random_polygon(rng: random.Random, grid: bool) -> BaseGeometry:
    """A valid random polygon in [0, 8]²: triangle, convex hull, star, with a hole, or two parts."""

    def coordinate() -> float:
        return rng.randrange(0, 17) / 2 if grid else rng.uniform(0, 8)

    kind = rng.choice(["triangle", "hull", "star", "holed", "multi"])
    if kind == "triangle":
        shape = shapely.geometry.Polygon([(coordinate(), coordinate()) for _ in range(3)])
    elif kind == "hull":
        shape = shapely.geometry.MultiPoint([(coordinate(), coordinate()) for _ in range(7)]).convex_hull
    elif kind == "star":
        cx, cy = coordinate(), coordinate()
        angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(9))
        shape = shapely.geometry.Polygon(
            [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in ((a, rng.uniform(0.3, 2.5)) for a in angles)]
        )
    elif kind == "holed":
        x, y = coordinate(), coordinate()
        shape = shapely.geometry.box(x, y, x + 3, y + 3).difference(shapely.geometry.box(x + 1, y + 1, x + 2, y + 2))
    else:
        x, y = coordinate(), coordinate()
        shape = shapely.geometry.MultiPolygon(
            [shapely.geometry.box(x, y, x + 1, y + 1), shapely.affinity.translate(TRIANGLE, x + 2.5, y + 1.5)]
        )
    if shape.geom_type not in ("Polygon", "MultiPolygon") or shape.is_empty or shape.area < 1e-3 or not shape.is_valid:
        return _random_polygon(rng, grid)
    return shape


def _random_query(rng: random.Random, grid: bool) -> BaseGeometry:
    def coordinate() -> float:
        return rng.randrange(0, 17) / 2 if grid else rng.uniform(0, 8)

    kind = rng.choice(["polygon", "box", "line", "point", "collection"])
    if kind == "polygon":
        return _random_polygon(rng, grid)
    if kind == "box":
        x, y = coordinate(), coordinate()
        return shapely.geometry.box(x, y, x + rng.choice([0.5, 1, 2]), y + rng.choice([0.5, 1, 2]))
    if kind == "line":
        return shapely.geometry.LineString([(coordinate(), coordinate()) for _ in range(rng.randint(2, 4))])
    if kind == "point":
        return shapely.geometry.Point(coordinate(), coordinate())
    return shapely.geometry.GeometryCollection(
        [
            shapely.geometry.Point(coordinate(), coordinate()),
            shapely.geometry.LineString([(coordinate(), coordinate()), (coordinate(), coordinate())]),
        ]
    )


def test_random_footprints_and_queries_match_shapely(spatial: Catalog) -> None:
    rng = random.Random(20261124)
    # Half on a 0.5° lattice, where edges and vertices touch exactly; half anywhere.
    footprints = {f"image_{n:03d}": _random_polygon(rng, grid=n % 2 == 0) for n in range(80)}
    queries = [_random_query(rng, grid=n % 2 == 0) for n in range(60)]
    _store(spatial, footprints)

    # On PostGIS, the same data searched by the portable exact test too (the footprint column ignored).
    portable = Catalog(spatial.engine, migrate=False, postgis=False) if spatial.postgis_schema else None
    bbox_only = 0
    for query in queries:
        expected = _expected(footprints, query)
        assert _found(spatial, query) == expected, query.wkt
        if portable is not None:
            assert _found(portable, query) == expected, query.wkt
        boxes = {
            i
            for i, f in footprints.items()
            if shapely.geometry.box(*f.bounds).intersects(shapely.geometry.box(*query.bounds))
        }
        bbox_only += len(boxes - expected)
    assert bbox_only > 100  # many pairs where a bounding-box test alone would have answered wrongly


def test_count_summary_and_limit_follow_the_exact_test(spatial: Catalog) -> None:
    _store(spatial, {"triangle": TRIANGLE, "square": shapely.geometry.box(0.7, 0.7, 1.0, 1.0)})
    query = shapely.geometry.box(0.6, 0.6, 0.9, 0.9)  # meets both bounding boxes, only the square

    search = Image.search(spatial).intersects(query)

    assert search.count() == 1
    assert search.summary().count == 1 and search.summary().bytes == 100
    assert [image.id for image in search.limit(5)] == ["square"]


def test_an_unclosed_three_dimensional_ring_is_stored_closed_and_searched_in_two_dimensions(spatial: Catalog) -> None:
    unclosed = {"type": "Polygon", "coordinates": [[[0, 0, 5], [1, 0, 5], [0, 1, 5]]]}  # shapely accepts it
    with spatial.transaction() as session:
        upsert_image(session, replace(_record("raw", TRIANGLE), geometry=unclosed))

    assert _found(spatial, shapely.geometry.Point(0.2, 0.2)) == {"raw"}
    assert _found(spatial, shapely.geometry.Point(0.8, 0.8)) == set()
    with spatial.engine.connect() as connection:
        stored = connection.execute(text("SELECT geometry FROM images WHERE id = 'raw'")).scalar_one()
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored["coordinates"][0][0] == stored["coordinates"][0][-1] == [0, 0, 5]


def test_query_shape_lists_segments_vertices_and_polygon_edges() -> None:
    shape = QueryShape.from_geometry(
        shapely.geometry.GeometryCollection([shapely.geometry.Point(5, 5), shapely.geometry.box(0, 0, 1, 1)])
    )

    assert [5.0, 5.0, 5.0, 5.0] in shape.segments and len(shape.segments) == 5
    assert shape.points == [[5.0, 5.0], [1.0, 0.0]]
    assert {edge[0] for edge in shape.ring_edges} == {1} and len(shape.ring_edges) == 4


# ------------------------------------------------------------------------------ indexes in step


def test_spatial_index_follows_inserts_moves_and_deletes(spatial: Catalog) -> None:
    _store(spatial, {"a": shapely.geometry.box(0, 0, 1, 1), "b": shapely.geometry.box(2, 2, 3, 3)})
    moved = shapely.geometry.box(10, 10, 11, 11)

    with spatial.transaction() as session:
        upsert_image(session, _record("a", moved))  # re-materialized with another footprint
        session.execute(delete(models.Image).where(models.Image.id == "b"))

    assert _found(spatial, shapely.geometry.box(0, 0, 3, 3)) == set()
    assert _found(spatial, shapely.geometry.Point(10.5, 10.5)) == {"a"}
    if spatial.dialect == "sqlite":
        with spatial.engine.connect() as connection:
            entries = connection.execute(
                text(
                    "SELECT ids.image_id, r.min_lon, r.max_lon FROM images_bbox_rtree AS r"
                    " JOIN images_bbox_rtree_ids AS ids ON ids.id = r.id"
                )
            ).all()
            keys = connection.execute(text("SELECT image_id FROM images_bbox_rtree_ids")).scalars().all()
        assert [(image_id, round(lo, 4), round(hi, 4)) for image_id, lo, hi in entries] == [("a", 10.0, 11.0)]
        assert keys == ["a"]


@pytest.mark.parametrize("footprint_backend", ["postgresql_postgis"], indirect=True)
def test_postgis_footprint_is_written_on_insert_and_on_a_changed_geometry(spatial: Catalog) -> None:
    schema = spatial.postgis_schema
    assert schema is not None
    _store(spatial, {"a": TRIANGLE})

    def footprint_wkt() -> str:
        with spatial.engine.connect() as connection:
            return str(
                connection.execute(text(f"SELECT {schema}.st_astext(footprint) FROM images WHERE id = 'a'")).scalar()
            )

    assert shapely.from_wkt(footprint_wkt()).equals(TRIANGLE)
    with spatial.transaction() as session:
        upsert_image(session, _record("a", shapely.geometry.box(3, 3, 4, 4)))
    assert shapely.from_wkt(footprint_wkt()).equals(shapely.geometry.box(3, 3, 4, 4))
    with spatial.engine.connect() as connection:
        srid = connection.execute(text(f"SELECT {schema}.st_srid(footprint) FROM images WHERE id = 'a'")).scalar()
    assert srid == 4326


def test_search_plans_use_the_spatial_index(spatial: Catalog) -> None:
    _store(spatial, {f"i{n}": shapely.geometry.box(n, 0, n + 1, 1) for n in range(20)})
    search = (
        Image.search(spatial).intersects(shapely.geometry.box(3.2, 0.2, 3.8, 0.8)).filter(p.acquired >= "2024-01-01")
    )

    with spatial.engine.connect() as connection:
        if spatial.dialect == "sqlite":
            plan = " ".join(str(row) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + search.sql()))
            assert "VIRTUAL TABLE INDEX" in plan and "images_bbox_rtree" in plan
        else:
            connection.execute(text("SET enable_seqscan = off"))  # a tiny table would otherwise be scanned
            plan = "\n".join(row[0] for row in connection.execute(text("EXPLAIN " + search.sql())))
            assert "ix_images_bbox_time_span" in plan or "ix_images_footprint" in plan
            assert ("st_intersects" in plan) == (spatial.postgis_schema is not None)
    assert [image.id for image in search] == ["i3"]
