"""Statement templates: searches of one shape share one statement and run with their own values.

A search whose filters (and PostGIS geometry) bind every value through named parameters runs the
statement cached for its shape (``Search._template``); these tests check that two searches of the
same shape find their own images (no value leaks from the search that built the statement), that
a template with a search's values is the SQL :meth:`Search.sql` gives, and that shapes whose SQL
holds other values run their own statement. Every test runs on each filled backend (SQLite,
PostgreSQL with PostGIS, PostgreSQL without); expected results come from the same records in Python.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import Select

from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.expressions import template_parameters
from cube_assets.client import Catalog, Image
from cube_assets.client.search import ObjectSearch
from cube_assets.errors import CatalogError
from cube_assets_tests.client.objects_fixtures import (  # noqa: F401 - fixtures
    LCF,
    MERGE,
    TILES,
    expected_ids,
    filled,
)

UTC = dt.UTC


def _ids(search: Any) -> list[str]:
    return [image.id for image in search]


def _template(search: ObjectSearch[Image]) -> tuple[Select[Any], dict[str, Any]]:
    template = search._template()
    assert template is not None, f"{search!r} has no template"
    return template


def _between(low: float, high: float, start: dt.datetime, end: dt.datetime) -> Any:
    return (
        (p.cloud_fraction >= low)
        & (p.cloud_fraction < high)
        & (p.acquired >= start)
        & (p.acquired <= end)
        & p.product_id.in_([MERGE, LCF])
    )


def test_two_searches_of_one_shape_share_a_statement_and_find_their_own_images(filled: Catalog) -> None:
    first = Image.search(filled).filter(
        _between(0.0, 0.35, dt.datetime(2023, 1, 1, tzinfo=UTC), dt.datetime(2023, 6, 30, tzinfo=UTC))
    )
    second = Image.search(filled).filter(
        _between(0.35, 0.8, dt.datetime(2023, 5, 1, tzinfo=UTC), dt.datetime(2023, 12, 31, tzinfo=UTC))
    )

    found_first, found_second = _ids(first), _ids(second)

    assert _template(first)[0] is _template(second)[0]
    assert _template(first)[1] != _template(second)[1]

    def expected(low: float, high: float, start: dt.datetime, end: dt.datetime) -> list[str]:
        return expected_ids(
            lambda r: (
                r["cloud_fraction"] is not None
                and low <= r["cloud_fraction"] < high
                and start <= r["acquired"] <= end
                and r["product_id"] in (MERGE, LCF)
            )
        )

    assert found_first == expected(0.0, 0.35, dt.datetime(2023, 1, 1, tzinfo=UTC), dt.datetime(2023, 6, 30, tzinfo=UTC))
    assert found_second == expected(
        0.35, 0.8, dt.datetime(2023, 5, 1, tzinfo=UTC), dt.datetime(2023, 12, 31, tzinfo=UTC)
    )
    assert found_first and found_second and not set(found_first) & set(found_second)
    # The first search again, after the second ran the shared statement: its own images still.
    assert _ids(first) == found_first


def test_geometry_searches_of_one_shape_find_the_images_of_their_own_area(filled: Catalog) -> None:
    searches = {
        tile: Image.search(filled)
        .intersects(shapely.geometry.box(*(v + d for v, d in zip(bounds, (0.2, 0.2, -0.2, -0.2), strict=True))))
        .filter(p.product_id == MERGE)
        .limit(5)
        for tile, bounds in TILES.items()
    }

    for tile, search in searches.items():
        assert _ids(search) == expected_ids(lambda r, tile=tile: r["product_id"] == MERGE and r["tile"] == tile)[:5]
    if filled.postgis_schema is not None:  # only PostGIS binds a geometry as one value
        statements = {id(_template(search)[0]) for search in searches.values()}
        assert len(statements) == 1
    else:
        assert all(search._template() is None for search in searches.values())


@pytest.mark.parametrize(
    "expression",
    [
        p.cloud_fraction < 0.2,
        (p.cloud_fraction == None) | (p.fill_fraction >= 0.95),  # noqa: E711 - builds IS NULL
        ~(p.cloud_fraction > 0.5),
        p.acquired == dt.datetime(2023, 3, 5, 13, tzinfo=UTC),
        p.acquired != dt.datetime(2023, 3, 5, 13, tzinfo=UTC),
        (p.acquired > "2023-04-01") & (p.acquired <= "2023-09-01"),
        p.period_start >= dt.date(2023, 5, 1),
        p.tile.in_(["A", "C"]),
        p.width > 100,
        p.width <= 1.5,
        p.id > "merge_B",
    ],
    ids=repr,
)
def test_a_template_with_the_search_values_is_the_search_sql(filled: Catalog, expression: Any) -> None:
    search = Image.search(filled).filter(expression).sort("cloud_fraction").limit(7)
    statement, values = _template(search)

    rendered = statement.params(values).compile(dialect=filled.engine.dialect, compile_kwargs={"literal_binds": True})

    assert str(rendered) == search.sql()
    with filled.session() as session:  # the statement built for this search alone, values inline
        alone = [image.id for image in Image._load(filled, session, search.statement())]
    assert _ids(search) == alone


# The geometry is one parameter of the statement with PostGIS only (the other backends keep their own statement).
@pytest.mark.parametrize("filled", ["postgresql"], indirect=True)
def test_postgis_geometry_template_is_the_search_sql(filled: Catalog) -> None:
    assert filled.postgis_schema is not None
    area = shapely.geometry.Polygon([(-45.5, -9.5), (-44.5, -9.7), (-44.6, -9.2), (-45.5, -9.5)])
    search = Image.search(filled).intersects(area).filter(p.acquired >= "2023-06-01").limit(100)
    statement, values = _template(search)

    rendered = statement.params(values).compile(dialect=filled.engine.dialect, compile_kwargs={"literal_binds": True})

    assert str(rendered) == search.sql()
    assert _ids(search) == expected_ids(
        lambda r: r["geometry"].intersects(area) and r["acquired"] >= dt.datetime(2023, 6, 1, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("expression", "predicate"),
    [
        (p.tags == "winter", lambda r: "winter" in r["tags"]),
        (p.tags != "scene", lambda r: "scene" not in r["tags"]),
        (p.properties.sensor == "OLI", lambda r: r["properties"].get("sensor") == "OLI"),
        (p.id.prefix("lcf_A"), lambda r: r["id"].startswith("lcf_A")),
    ],
    ids=["tags", "not-tags", "json-key", "prefix"],
)
def test_shapes_binding_values_otherwise_run_their_own_statement(
    filled: Catalog, expression: Any, predicate: Any
) -> None:
    search = Image.search(filled).filter(p.cloud_fraction < 0.9).filter(expression)

    assert template_parameters(expression, Image._search_field, "postgresql") is None
    assert search._template() is None
    assert _ids(search) == expected_ids(
        lambda r: r["cloud_fraction"] is not None and r["cloud_fraction"] < 0.9 and predicate(r)
    )


def test_bad_values_are_refused_when_filtering_as_before(filled: Catalog) -> None:
    with pytest.raises(CatalogError, match="cloud_fraction"):
        Image.search(filled).filter(p.cloud_fraction < "cloudy")
    with pytest.raises(CatalogError, match="nosuch"):
        Image.search(filled).filter(p.nosuch == 1)
