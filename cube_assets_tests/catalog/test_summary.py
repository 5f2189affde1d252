"""Summaries of image searches: count, bytes, products, and per-interval series, as SQL aggregates.

On SQLite and the real PostgreSQL server; expected values come from Python over the same records.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
import shapely.geometry
from sqlalchemy import event, text

from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.repository import upsert_image
from cube_assets.catalog.summary import IntervalSummary, Summary
from cube_assets.client import Catalog, File, Image, Product
from cube_assets.errors import CatalogError
from cube_assets_tests.client.objects_fixtures import LCF, MERGE, RECORDS, SCENES, TILES, catalog, filled  # noqa: F401 - pytest fixtures, found by name

UTC = dt.UTC


def _bytes(record: dict[str, Any]) -> int:
    return sum(file.size_bytes or 0 for file in record["files"].values())


def _summary(predicate: Any) -> Summary:
    chosen = [r for r in RECORDS if predicate(r)]
    return Summary(
        count=len(chosen), bytes=sum(map(_bytes, chosen)), products=sorted({r["product_id"] for r in chosen})
    )


def test_summary_counts_bytes_and_products_of_every_match(filled: Catalog) -> None:
    assert Image.search(filled).summary() == _summary(lambda r: True)
    assert Image.search(filled).summary().count == len(RECORDS)


def test_summary_follows_filters_and_geometry_and_ignores_limit(filled: Catalog) -> None:
    box = TILES["C"]
    search = Image.search(filled).filter(p.cloud_fraction < 0.5).intersects(shapely.geometry.box(*box)).limit(1)

    def inside(r: dict[str, Any]) -> bool:
        return bool(r["geometry"].intersects(shapely.geometry.box(*box)))

    expected = _summary(lambda r: r["cloud_fraction"] is not None and r["cloud_fraction"] < 0.5 and inside(r))
    assert search.summary() == expected
    assert expected.products == [LCF, MERGE, SCENES]


def test_summary_of_nothing_is_zero(filled: Catalog) -> None:
    assert Image.search(filled).filter(p.tile == "Z").summary() == Summary(count=0, bytes=0, products=[])


def test_summary_sends_only_aggregates_from_the_database(filled: Catalog) -> None:
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement.lower())  # noqa: E731 - a one-line SQLAlchemy event listener
    event.listen(filled.engine, "before_cursor_execute", listener)
    try:
        Image.search(filled).filter(p.product_id == MERGE).summary()
        Image.search(filled).summary_interval("month")
    finally:
        event.remove(filled.engine, "before_cursor_execute", listener)

    assert statements and all(("count(" in s or "sum(" in s or "min(" in s) for s in statements)
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
    series = (
        Image.search(filled)
        .filter(p.product_id == MERGE)
        .summary_interval("month", start_datetime="2022-11-01", end_datetime="2023-03-01")
    )

    assert [s.interval_start.date().isoformat() for s in series] == [
        "2022-11-01",
        "2022-12-01",
        "2023-01-01",
        "2023-02-01",
    ]
    assert [s.count for s in series] == [0, 0, 3, 3]
    assert series[2].bytes == sum(
        _bytes(r) for r in RECORDS if r["id"] in ("merge_A_202301", "merge_B_202301", "merge_C_202301")
    )


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
    steps = {(b.interval_start - a.interval_start).days for a, b in itertools.pairwise(series)}
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


# ------------------------------------------------------------------------------ stored byte totals


def test_byte_totals_follow_every_change_of_an_images_files(catalog: Catalog) -> None:
    catalog.products(id="p", name="P").save()
    image = catalog.images(
        id="img", product_id="p", acquired="2024-03-05T10:00:00Z", geometry=shapely.geometry.box(0, 0, 1, 1),
        crs="EPSG:4326", files={"B04": File("/b04.tif", 100), "SCL": File("/scl.tif", None)},
    )  # fmt: skip
    search = Image.search(catalog)

    def stored() -> int:
        with catalog.engine.connect() as connection:
            return int(connection.execute(text("SELECT size_bytes FROM images WHERE id = 'img'")).scalar_one())

    image.save()
    assert stored() == 100 and search.summary().bytes == 100  # an unknown size counts as 0

    image.files["SCL"] = File("/scl.tif", 7)  # in place
    image.files["B08"] = File("/b08.tif", 30)
    image.save()
    assert stored() == 137
    assert search.summary_interval("month") == [IntervalSummary(dt.datetime(2024, 3, 1, tzinfo=UTC), 1, 137)]

    image.files = {"B04": File("/b04.tif", 90)}  # two files gone, one smaller
    image.save()
    assert stored() == 90 and search.summary() == Summary(count=1, bytes=90, products=["p"])

    with catalog.transaction() as session:  # the graph's path: re-materializing upserts the same record
        upsert_image(session, image._records())
        upsert_image(session, replace(image._records(), files=()))
    assert stored() == 0 and search.summary().bytes == 0

    image.reload().delete()
    assert search.summary() == Summary(count=0, bytes=0, products=[])


@pytest.mark.parametrize(
    ("interval", "start", "end"),
    [
        ("month", None, None),
        ("month", "2023-03-17T08:00:00Z", "2023-08-09"),  # bounds inside intervals: both ends clipped
        ("month", "2023-06-10", None),
        ("month", None, "2023-02-20"),
        ("week", "2023-01-01", "2023-04-01"),
        ("day", "2023-05-01", "2023-05-10"),
        ("day", None, None),  # 412 intervals: more than MAX_RANGE_INTERVALS, one grouped pass
        ("year", None, None),
    ],
)
@pytest.mark.parametrize("products", [None, (MERGE, LCF)])
def test_per_interval_ranges_and_one_grouped_pass_give_the_same_series(
    filled: Catalog, interval: str, start: str | None, end: str | None, products: tuple[str, ...] | None
) -> None:
    # Searches of products (or of everything) are summarized interval by interval on PostgreSQL;
    # a filter on another property (here always true) makes it one grouped pass instead.
    search = Image.search(filled) if products is None else Image.search(filled).filter(p.product_id.in_(list(products)))

    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement.lower())  # noqa: E731 - a one-line SQLAlchemy event listener
    event.listen(filled.engine, "before_cursor_execute", listener)
    try:
        by_ranges = search.summary_interval(interval, start_datetime=start, end_datetime=end)
    finally:
        event.remove(filled.engine, "before_cursor_execute", listener)
    grouped = search.filter(p.id != None).summary_interval(interval, start_datetime=start, end_datetime=end)  # noqa: E711 - builds a property expression, not a comparison with None

    assert by_ranges == grouped
    assert any("lateral" in s for s in statements) == (filled.dialect == "postgresql" and len(by_ranges) <= 120)
    low = dt.datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    high = dt.datetime.fromisoformat(end) if end else None
    expected = [
        r for r in RECORDS
        if (products is None or r["product_id"] in products)
        and (low is None or r["acquired"] >= (low if low.tzinfo else low.replace(tzinfo=UTC)))
        and (high is None or r["acquired"] < high.replace(tzinfo=UTC))
    ]  # fmt: skip
    assert sum(s.count for s in by_ranges) == len(expected) > 0
    assert sum(s.bytes for s in by_ranges) == sum(map(_bytes, expected))


def test_which_summaries_go_interval_by_interval() -> None:
    from cube_assets.catalog.summary import _range_aligned

    class FakeCatalog:
        dialect = "postgresql"

    def search(*filters: Any, geometry: Any = None) -> Any:
        return type("S", (), {"catalog": FakeCatalog, "geometry": geometry, "filters": filters})()

    assert _range_aligned(search(), "acquired")
    assert _range_aligned(search((p.product_id == "x") | ~p.product_id.in_(["y", "z"])), "acquired")
    assert not _range_aligned(search(), "created")  # no index on created: one pass
    assert not _range_aligned(search(p.acquired >= "2024"), "acquired")  # bounds go in start_datetime
    assert not _range_aligned(search(p.cloud_fraction < 0.2), "acquired")
    assert not _range_aligned(search(p.properties.product_id == "x"), "acquired")  # a JSON key, not the column
    assert not _range_aligned(search(geometry=shapely.geometry.Point(0, 0)), "acquired")
