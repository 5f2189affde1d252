"""Summaries of image searches: count, bytes, products, and per-interval series, as SQL aggregates.

On SQLite and the real PostgreSQL server; expected values come from Python over the same records.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import event

from cube_assets.catalog.objects import Catalog, Image, Product
from cube_assets.catalog.search import properties as p
from cube_assets.catalog.summary import IntervalSummary, Summary
from cube_assets.errors import CatalogError
from cube_assets_tests.catalog.objects_fixtures import LCF, MERGE, RECORDS, SCENES, TILES, filled  # noqa: F401

UTC = dt.UTC


def _bytes(record: dict[str, Any]) -> int:
    return sum(file.size_bytes or 0 for file in record["files"].values())


def _summary(predicate: Any) -> Summary:
    chosen = [r for r in RECORDS if predicate(r)]
    return Summary(count=len(chosen), bytes=sum(map(_bytes, chosen)), products=sorted({r["product_id"] for r in chosen}))


def test_summary_counts_bytes_and_products_of_every_match(filled: Catalog) -> None:
    assert Image.search(filled).summary() == _summary(lambda r: True)
    assert Image.search(filled).summary().count == len(RECORDS)


def test_summary_follows_filters_and_geometry_and_ignores_limit(filled: Catalog) -> None:
    box = TILES["C"]
    search = Image.search(filled).filter(p.cloud_fraction < 0.5).intersects(shapely.geometry.box(*box)).limit(1)

    def inside(r: dict[str, Any]) -> bool:
        min_lon, min_lat, max_lon, max_lat = r["geometry"].bounds
        return min_lon <= box[2] and max_lon >= box[0] and min_lat <= box[3] and max_lat >= box[1]

    expected = _summary(lambda r: r["cloud_fraction"] is not None and r["cloud_fraction"] < 0.5 and inside(r))
    assert search.summary() == expected
    assert expected.products == [LCF, MERGE, SCENES]


def test_summary_of_nothing_is_zero(filled: Catalog) -> None:
    assert Image.search(filled).filter(p.tile == "Z").summary() == Summary(count=0, bytes=0, products=[])


def test_summary_sends_only_aggregates_from_the_database(filled: Catalog) -> None:
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement.lower())  # noqa: E731
    event.listen(filled.engine, "before_cursor_execute", listener)
    try:
        Image.search(filled).filter(p.product_id == MERGE).summary()
        Image.search(filled).summary_interval("month")
    finally:
        event.remove(filled.engine, "before_cursor_execute", listener)

    assert statements and all(("count(" in s or "sum(" in s or "distinct" in s) for s in statements)
    assert not any("images.geometry" in s for s in statements)


def _months(predicate: Any) -> dict[dt.datetime, tuple[int, int]]:
    counts: dict[dt.datetime, list[int]] = defaultdict(lambda: [0, 0])
    for record in RECORDS:
        if predicate(record):
            key = dt.datetime(record["acquired"].year, record["acquired"].month, 1, tzinfo=UTC)
            counts[key][0] += 1
            counts[key][1] += _bytes(record)
    return {key: (c, b) for key, (c, b) in counts.items()}


def test_summary_interval_month_is_a_gap_free_series(filled: Catalog) -> None:
    series = Image.search(filled).summary_interval("month")
    expected = _months(lambda r: True)

    assert [s.interval_start for s in series][0] == dt.datetime(2023, 1, 1, tzinfo=UTC)
    assert [s.interval_start for s in series][-1] == dt.datetime(2024, 2, 1, tzinfo=UTC)
    assert len(series) == 14  # 2023-01 .. 2024-02, January 2024 empty
    assert {s.interval_start: (s.count, s.bytes) for s in series if s.count} == expected
    assert next(s for s in series if s.interval_start == dt.datetime(2024, 1, 1, tzinfo=UTC)) == IntervalSummary(
        dt.datetime(2024, 1, 1, tzinfo=UTC), 0, 0
    )


def test_summary_interval_bounds_restrict_and_frame_the_series(filled: Catalog) -> None:
    series = Image.search(filled).filter(p.product_id == MERGE).summary_interval(
        "month", start_datetime="2022-11-01", end_datetime="2023-03-01"
    )

    assert [s.interval_start.date().isoformat() for s in series] == ["2022-11-01", "2022-12-01", "2023-01-01", "2023-02-01"]
    assert [s.count for s in series] == [0, 0, 3, 3]
    assert series[2].bytes == sum(_bytes(r) for r in RECORDS if r["id"] in ("merge_A_202301", "merge_B_202301", "merge_C_202301"))


@pytest.mark.parametrize(
    ("interval", "key"),
    [
        ("year", lambda t: dt.datetime(t.year, 1, 1, tzinfo=UTC)),
        ("day", lambda t: dt.datetime(t.year, t.month, t.day, tzinfo=UTC)),
        ("week", lambda t: dt.datetime.combine(t.date() - dt.timedelta(days=t.weekday()), dt.time(), tzinfo=UTC)),
    ],
)
def test_summary_interval_year_week_day_match_python(filled: Catalog, interval: str, key: Any) -> None:
    series = Image.search(filled).summary_interval(interval)

    expected: dict[dt.datetime, int] = defaultdict(int)
    for record in RECORDS:
        expected[key(record["acquired"])] += 1
    assert {s.interval_start: s.count for s in series if s.count} == dict(expected)
    assert sum(s.count for s in series) == len(RECORDS)
    steps = {(b.interval_start - a.interval_start).days for a, b in zip(series, series[1:])}
    assert steps <= {365, 366} if interval == "year" else steps == ({7} if interval == "week" else {1})


def test_weeks_start_on_monday(filled: Catalog) -> None:
    # 2023-01-05 13:00 UTC is a Thursday; its ISO week starts on Monday 2023-01-02.
    series = Image.search(filled).filter(p.id == "merge_A_202301").summary_interval("week")

    assert series == [IntervalSummary(dt.datetime(2023, 1, 2, tzinfo=UTC), 1, 1000 + 2000)]


def test_summary_interval_by_created(filled: Catalog) -> None:
    series = Image.search(filled).summary_interval("year", aggregate_date_field="created")

    assert sum(s.count for s in series) == len(RECORDS)
    assert series[-1].interval_start.year == dt.datetime.now(UTC).year


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"interval": "fortnight"}, "interval must be one of"),
        ({"interval": "month", "aggregate_date_field": "acquired_end"}, "aggregate_date_field must be one of"),
        ({"interval": "month", "start_datetime": "2024-01-01", "end_datetime": "2023-01-01"}, "must be before"),
        ({"interval": "month", "start_datetime": "tomorrow"}, "start_datetime: 'tomorrow' is not an ISO 8601"),
    ],
)
def test_bad_summary_arguments_are_refused(filled: Catalog, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Image.search(filled).summary_interval(**arguments)


def test_summaries_are_for_image_searches(filled: Catalog) -> None:
    with pytest.raises(CatalogError, match="image searches"):
        Product.search(filled).summary()
