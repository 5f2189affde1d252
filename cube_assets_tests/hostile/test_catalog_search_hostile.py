"""Hostile catalog searches: values, keys, nesting, limits and interval summaries beyond what the catalog holds.

Every test runs on SQLite and on the real PostgreSQL test server (``filled``: SQLite, PostgreSQL
and PostgreSQL without PostGIS; ``catalog``: SQLite and PostgreSQL). Each refusal must be the
catalog's own ``CatalogError`` naming the argument, quoting at most ~200 characters, holding no
SQL, raised before any statement reaches the database (so no ``sqlite3``/``psycopg`` error can
escape), and the catalog must answer a plain search correctly afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import operator
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import shapely.geometry
from sqlalchemy import event

from cube_assets.catalog.expressions import (
    MAX_EXPRESSION_DEPTH,
    MAX_LIMIT,
    MAX_SEARCH_TERMS,
    Expression,
)
from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.repository import search_images
from cube_assets.catalog.summary import MAX_INTERVALS
from cube_assets.client import Catalog, File, Image
from cube_assets.errors import CatalogError
from cube_assets_tests.catalog.conftest import catalog_url  # noqa: F401 - fixture of ``catalog``
from cube_assets_tests.client.objects_fixtures import (  # noqa: F401 - fixtures
    RECORDS,
    catalog,
    expected_ids,
    filled,
)

UTC = dt.UTC
MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
SQL_WORDS = ("SELECT", "WHERE", "json_extract", "json_type", "jsonb", "FROM images")


@contextlib.contextmanager
def statements(catalog: Catalog) -> Iterator[list[str]]:
    """Record every SQL statement sent to ``catalog``'s database."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(statement)

    event.listen(catalog.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(catalog.engine, "before_cursor_execute", record)


def assert_catalog_refusal(error: pytest.ExceptionInfo[BaseException], named: str) -> str:
    """Check the refusal is a plain CatalogError naming ``named``, short, without SQL or a driver error."""
    assert type(error.value) is CatalogError
    message = str(error.value)
    assert named in message
    assert len(message) < 600
    assert not any(word.lower() in message.lower() for word in SQL_WORDS)
    cause: BaseException | None = error.value
    while cause is not None:
        assert not isinstance(cause, sqlite3.Error | psycopg.Error | RecursionError), repr(cause)
        cause = cause.__cause__ or cause.__context__
    return message


def assert_still_usable(catalog: Catalog) -> None:
    """A plain search gives the oracle's answer."""
    found = [image.id for image in Image.search(catalog).filter(p.tile == "B").filter(p.cloud_fraction < 0.5)]
    assert found == expected_ids(
        lambda r: r["tile"] == "B" and r["cloud_fraction"] is not None and r["cloud_fraction"] < 0.5
    )
    assert found


# ------------------------------------------------------------------------------------- values

HOSTILE_VALUES: list[tuple[str, Callable[[], Expression], str]] = [
    ("int beyond 64 bits", lambda: p.cloud_fraction < 2**70, "'cloud_fraction'"),
    ("int beyond float64", lambda: p.cloud_fraction < 10**400, "'cloud_fraction'"),
    ("negative int beyond 64 bits", lambda: p.width > -(2**64), "'width'"),
    ("infinite float", lambda: p.cloud_fraction < float("inf"), "'cloud_fraction'"),
    ("nan", lambda: p.fill_fraction == float("nan"), "'fill_fraction'"),
    ("json int beyond 64 bits", lambda: p.properties.efficacy > 2**70, "'properties.efficacy'"),
    ("in_ int beyond 64 bits", lambda: p.width.in_([1, 2**63]), "'width'"),
    ("text datetime before year 1 in UTC", lambda: p.acquired < "0001-01-01T00:00:00+05:00", "'acquired'"),
    ("text datetime after year 9999 in UTC", lambda: p.acquired_end >= "9999-12-31T23:30:00-01:00", "'acquired_end'"),
    (
        "aware datetime after year 9999 in UTC",
        lambda: p.acquired > dt.datetime(9999, 12, 31, 23, tzinfo=MINUS_5),
        "'acquired'",
    ),
    ("lone surrogate", lambda: p.tile == "\ud800", "'tile'"),
    ("lone surrogate in json text", lambda: p.properties.sensor == "MSI\udfff", "'properties.sensor'"),
    ("lone surrogate in prefix", lambda: p.id.prefix("merge\ud800"), "'id'"),
    ("lone surrogate in in_", lambda: p.provider.in_(["cdse", "\udc80"]), "'provider'"),
    ("lone surrogate in a date", lambda: p.period_start == "2023-\ud800", "'period_start'"),
    ("NUL character", lambda: p.tile == "A\x00B", "'tile'"),
    ("text of 5000 characters", lambda: p.tile == "A" * 5000, "'tile'"),
]


@pytest.mark.parametrize(("case", "build", "named"), HOSTILE_VALUES, ids=[case for case, _, _ in HOSTILE_VALUES])
def test_value_no_column_can_hold_is_refused_naming_the_property(
    filled: Catalog, case: str, build: Callable[[], Expression], named: str
) -> None:
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        Image.search(filled).filter(build()).count()

    assert_catalog_refusal(error, named)
    assert sent == []
    assert_still_usable(filled)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: p.width < 2**63 - 1, lambda r: r["tile"] is not None),
        (lambda: p.width > -(2**63), lambda r: r["tile"] is not None),
        (lambda: p.width <= 100.5, lambda r: r["tile"] is not None),
        (lambda: p.width.in_([100, 2**40]), lambda r: r["tile"] is not None),
        (lambda: p.acquired >= "0001-01-01T00:00:00Z", lambda r: True),
        (lambda: p.acquired < "9999-12-31T23:59:59.999999Z", lambda r: True),
        (lambda: p.acquired < "9999-12-31T23:00:00-00:59", lambda r: True),
        (lambda: p.properties.sensor == "MSI", lambda r: r["properties"].get("sensor") == "MSI"),
        (lambda: p.tile != "A" * 4096, lambda r: r["tile"] is not None),
    ],
    ids=[
        "int64 max",
        "int64 min",
        "fraction on an integer column",
        "in_ beyond 32 bits",
        "year 1",
        "end of year 9999",
        "year 9999 with an offset",
        "json text",
        "longest text",
    ],
)
def test_boundary_values_still_search_like_python(
    filled: Catalog, build: Callable[[], Expression], expected: Callable[[dict[str, Any]], bool]
) -> None:
    assert [image.id for image in Image.search(filled).filter(build())] == expected_ids(expected)


# ---------------------------------------------------------------------- names and JSON keys

HOSTILE_KEYS = [
    'a"b',
    "a'b",
    "a\\b",
    "$.a",
    "a[0]",
    "a]",
    "a\x00",
    "café",
    "ｎｉｒ",
    " lead",
    "trail ",
    "a\nb",
    "*",
    "k" * 65,
    "\ud800",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=[repr(k)[:20] for k in HOSTILE_KEYS])
@pytest.mark.parametrize("access", ["item", "attribute"])
def test_json_key_that_could_reach_a_json_path_is_refused(filled: Catalog, key: str, access: str) -> None:
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        prop = p.properties[key] if access == "item" else getattr(p.properties, key)
        Image.search(filled).filter(prop == 1).count()

    message = assert_catalog_refusal(error, "'properties'")
    assert repr(key)[:150] in message
    assert sent == []
    assert_still_usable(filled)


@pytest.mark.parametrize(
    ("attempt", "named"),
    [
        (lambda: p['cloud_fraction" OR 1=1 --'], "property name"),
        (lambda: p["x" * 100_000], "property name"),
        (lambda: p.properties.a.b.c.d.e.f.g.h.i, "'properties'"),
    ],
    ids=["quote in a name", "100000-character name", "9-key JSON path"],
)
def test_property_name_or_path_beyond_the_rule_is_refused(
    filled: Catalog, attempt: Callable[[], Any], named: str
) -> None:
    with pytest.raises(CatalogError) as error:
        Image.search(filled).filter(attempt() == 1)

    assert_catalog_refusal(error, named)
    assert_still_usable(filled)


@pytest.mark.parametrize("field", ['acquired" DESC; --', "-" + "x" * 10_000, "ａcquired"])
def test_sort_by_a_name_that_is_not_an_identifier_is_refused(filled: Catalog, field: str) -> None:
    with pytest.raises(CatalogError) as error:
        Image.search(filled).sort(field)

    assert_catalog_refusal(error, "sort")
    assert_still_usable(filled)


def test_json_keys_of_the_allowed_styles_find_their_image(catalog: Catalog) -> None:
    catalog.products(id="cube-LCF", name="Composites").save()
    keys = {"eo:cloud_cover": 12, "key with spaces": 3, "a.b": 4, "proj-code": 5, "_private": 6}
    Image(catalog=catalog, id="img-1", product_id="cube-LCF", acquired=dt.datetime(2024, 1, 1, tzinfo=UTC),
          geometry=shapely.geometry.box(-45, -10, -44, -9), crs="EPSG:32723",
          files={"B04": File("/data/img-1_B04.tif", 1234)}, properties=keys).save()  # fmt: skip

    for key, value in keys.items():
        assert [image.id for image in Image.search(catalog).filter(p.properties[key] == value)] == ["img-1"], key
        assert Image.search(catalog).filter(p.properties[key] == value + 1).count() == 0, key


# -------------------------------------------------------------------------- nesting and size


def _chain(combine: Callable[[Expression, Expression], Expression], count: int) -> Expression:
    expression: Expression = p.tile == "A"
    for index in range(count):
        expression = combine(expression, p.properties.efficacy == index)
    return expression


def _alternating(count: int) -> Expression:
    expression: Expression = p.tile == "A"
    for index in range(count):
        expression = (expression & (p.tile == "B")) if index % 2 else (expression | (p.tile == "C"))
    return expression


HOSTILE_TREES: list[tuple[str, Callable[[], Expression], str]] = [
    ("10000-term & chain", lambda: _chain(operator.and_, 10_000), "&"),
    ("10000-term | chain", lambda: _chain(operator.or_, 10_000), "|"),
    (
        "10000-term right-nested &",
        lambda: functools.reduce(lambda a, b: b & a, [p.tile == str(i) for i in range(10_000)]),
        "&",
    ),
    ("3000 nested ~", lambda: functools.reduce(lambda e, _: ~e, range(3000), p.tile == "A"), "~"),
    ("10000 alternating & and |", lambda: _alternating(10_000), "nests"),
    ("10000-value in_", lambda: p.tile.in_(str(i) for i in range(10_000)), "in_"),
]


@pytest.mark.parametrize(("case", "build", "named"), HOSTILE_TREES, ids=[case for case, _, _ in HOSTILE_TREES])
def test_oversized_expression_is_refused_while_it_is_built(
    filled: Catalog, case: str, build: Callable[[], Expression], named: str
) -> None:
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        Image.search(filled).filter(build())

    message = assert_catalog_refusal(error, named)
    assert str(MAX_SEARCH_TERMS) in message or str(MAX_EXPRESSION_DEPTH) in message
    assert sent == []
    assert_still_usable(filled)


def test_filters_beyond_the_comparison_limit_are_refused(filled: Catalog) -> None:
    search = Image.search(filled)
    for index in range(MAX_SEARCH_TERMS):
        search = search.filter(p.width != -index - 1)
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        search.filter(p.width != 0)

    assert_catalog_refusal(error, "filter")
    assert sent == []
    assert search.count() == len(expected_ids(lambda r: r["tile"] is not None))


def test_thirty_term_expression_matches_python(filled: Catalog) -> None:
    expression = functools.reduce(operator.or_, [p.properties.efficacy == value for value in range(30)])

    found = [image.id for image in Image.search(filled).filter(expression)]

    assert found == expected_ids(lambda r: r["properties"].get("efficacy") in range(30))
    assert len(found) == 9  # months 1 to 3 of the three tiles' merges


def test_expression_at_the_comparison_limit_matches_python(filled: Catalog) -> None:
    wanted = [r["id"] for r in RECORDS][:MAX_SEARCH_TERMS]
    expression = functools.reduce(operator.or_, [p.id == value for value in wanted[:-1]] + [p.tags == "scene"])

    found = [image.id for image in Image.search(filled).filter(expression)]

    assert expression._terms == len(wanted) <= MAX_SEARCH_TERMS
    assert found == expected_ids(lambda r: r["id"] in wanted[:-1] or "scene" in r["tags"])


def test_negation_at_the_depth_limit_matches_python(filled: Catalog) -> None:
    expression = p.tile == "A"
    for _ in range(MAX_EXPRESSION_DEPTH - 1):
        expression = ~expression

    found = [image.id for image in Image.search(filled).filter(expression)]

    assert expression._depth == MAX_EXPRESSION_DEPTH
    # An odd number of ~ (63) is "tile A is not true": other tiles and unknown tiles.
    assert found == expected_ids(lambda r: r["tile"] != "A")


def _alternating_oracle(count: int) -> Callable[[dict[str, Any]], bool]:
    def matches(r: dict[str, Any]) -> bool:
        result = r["acquired"] < dt.datetime(2023, 3, 1, tzinfo=UTC)
        for index in range(count):
            if index % 2:
                result = result and r["properties"].get("sensor") == "MSI"
            else:
                result = result or r["tile"] == "C"
        return result

    return matches


@pytest.mark.parametrize("spatial", [False, True], ids=["no geometry", "with geometry"])
def test_alternating_and_or_at_the_depth_limit_matches_python(filled: Catalog, spatial: bool) -> None:
    expression: Expression = p.acquired < "2023-03-01"
    for index in range(MAX_EXPRESSION_DEPTH - 3):
        expression = (expression & (p.properties.sensor == "MSI")) if index % 2 else (expression | (p.tile == "C"))
    search = Image.search(filled).filter(~~expression)
    if spatial:
        search = search.intersects(shapely.geometry.box(-47, -11, -42, -8))

    found = [image.id for image in search]

    assert (~~expression)._depth == MAX_EXPRESSION_DEPTH
    oracle = _alternating_oracle(MAX_EXPRESSION_DEPTH - 3)
    assert found == expected_ids(
        lambda r: oracle(r) and (not spatial or r["geometry"].intersects(shapely.geometry.box(-47, -11, -42, -8)))
    )
    assert found


# ----------------------------------------------------------------------------------- limit


@pytest.mark.parametrize("count", [10**30, 2**63, MAX_LIMIT + 1])
def test_limit_beyond_64_bits_is_refused_naming_limit(filled: Catalog, count: int) -> None:
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        list(Image.search(filled).limit(count))

    assert_catalog_refusal(error, "limit")
    assert sent == []
    assert_still_usable(filled)


@pytest.mark.parametrize("count", [1, 1000, MAX_LIMIT])
def test_limit_within_range_returns_that_many(filled: Catalog, count: int) -> None:
    found = [image.id for image in Image.search(filled).limit(count)]

    assert found == expected_ids(lambda r: True)[:count]


# ----------------------------------------------------------------------- interval summaries


@pytest.mark.parametrize(
    ("interval", "intervals"),
    [("day", 3_652_059), ("week", 521_723), ("month", 119_988)],
)
def test_interval_summary_over_the_whole_calendar_is_refused_before_any_query(
    filled: Catalog, interval: str, intervals: int
) -> None:
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        Image.search(filled).summary_interval(interval, "0001-01-01", "9999-12-31T23:59:59.999999Z")

    message = assert_catalog_refusal(error, "summary_interval")
    assert f"{intervals} {interval} intervals" in message and str(MAX_INTERVALS) in message
    assert sent == []
    assert_still_usable(filled)


def test_open_ended_interval_summary_from_year_1_is_refused(filled: Catalog) -> None:
    with pytest.raises(CatalogError) as error:
        Image.search(filled).summary_interval("day", start_datetime="0001-01-01")

    assert_catalog_refusal(error, str(MAX_INTERVALS))
    assert_still_usable(filled)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"start_datetime": "0001-01-01T00:00:00+01:00"}, "start_datetime"),
        ({"end_datetime": "9999-12-31T23:59:59-01:00"}, "end_datetime"),
        ({"interval": "\ud800"}, "interval"),
        ({"interval": "x" * 100_000}, "interval"),
        ({"aggregate_date_field": "acquired\ud800"}, "aggregate_date_field"),
    ],
    ids=[
        "start before year 1 in UTC",
        "end after 9999 in UTC",
        "surrogate interval",
        "huge interval",
        "surrogate date field",
    ],
)
def test_interval_summary_argument_out_of_range_is_refused_naming_it(
    filled: Catalog, arguments: dict[str, Any], named: str
) -> None:
    with statements(filled) as sent, pytest.raises(CatalogError) as error:
        Image.search(filled).summary_interval(**arguments)

    assert_catalog_refusal(error, named)
    assert sent == []


def test_yearly_summary_to_the_end_of_year_9999_counts_every_image(filled: Catalog) -> None:
    series = Image.search(filled).summary_interval("year", "0001-01-01", "9999-12-31T23:59:59.999999Z")

    assert len(series) == 9999
    assert series[-1].interval_start == dt.datetime(9999, 1, 1, tzinfo=UTC)
    assert sum(entry.count for entry in series) == len(RECORDS)
    assert {entry.interval_start.year for entry in series if entry.count} == {2023, 2024}


def test_daily_summary_of_exactly_the_interval_limit_is_listed(filled: Catalog) -> None:
    start = dt.date(2000, 1, 1)
    series = Image.search(filled).summary_interval("day", start, start + dt.timedelta(days=MAX_INTERVALS))

    assert len(series) == MAX_INTERVALS
    assert sum(entry.count for entry in series) == len(RECORDS)


# ------------------------------------------------------------------ the repository's search


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"limit": 10**30}, "limit"),
        ({"limit": 2**63}, "limit"),
        ({"tile": "\ud800"}, "tile"),
        ({"product_id": "cube\x00merge"}, "product_id"),
    ],
    ids=["limit 10**30", "limit 2**63", "surrogate tile", "NUL in product_id"],
)
def test_repository_search_refuses_arguments_no_database_takes(
    filled: Catalog, arguments: dict[str, Any], named: str
) -> None:
    with filled.session() as session, statements(filled) as sent, pytest.raises(CatalogError) as error:
        search_images(session, **arguments)

    assert_catalog_refusal(error, named)
    assert sent == []
    with filled.session() as session:
        assert [image.id for image in search_images(session, tile="B", limit=1000)] == expected_ids(
            lambda r: r["tile"] == "B"
        )
