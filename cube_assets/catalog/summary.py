"""Summaries of image searches, computed by the database: counts, bytes, products, per time interval.

``Image.search()...summary()`` and ``...summary_interval("month")`` call these. Each runs a few
aggregate queries over the search's ``WHERE`` clause; no image row is sent to Python. Bytes are
the sum of the images' known file sizes (``image_files.size_bytes``; unknown sizes count as 0).

Intervals are calendar intervals in UTC: ``year`` (1 January), ``month`` (the 1st), ``week``
(ISO weeks, starting on Monday) and ``day``. The bucket of an image is the interval holding its
``acquired`` (or ``created``/``modified``) timestamp.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, func, literal, select

from cube_assets.catalog import models
from cube_assets.catalog.search import properties as p
from cube_assets.errors import CatalogError

if TYPE_CHECKING:
    from cube_assets.catalog.search import Search

#: Intervals :func:`summarize_intervals` understands.
INTERVALS = ("year", "month", "week", "day")
#: Image timestamps an interval summary can be aggregated on.
DATE_FIELDS = ("acquired", "created", "modified")


@dataclass(frozen=True)
class Summary:
    """What a search matches: ``count`` images holding ``bytes`` bytes of files, of ``products`` (sorted ids)."""

    count: int
    bytes: int
    products: list[str]


@dataclass(frozen=True)
class IntervalSummary:
    """The images of one interval starting at ``interval_start`` (aware, UTC): how many, and their bytes."""

    interval_start: dt.datetime
    count: int
    bytes: int


def summarize(search: Search[Any]) -> Summary:
    """Return the count, total bytes and distinct product ids of the images ``search`` matches.

    ``limit`` and ``sort`` of the search are ignored (a summary describes every match).

    Returns:
        The :class:`Summary`.

    Raises:
        CatalogError: if the search is not over images.
    """
    _require_images(search)
    where = search.where_clause()
    image, files = models.Image, models.ImageFile
    count_query = select(func.count()).select_from(image).where(where)
    bytes_query = (
        select(func.coalesce(func.sum(files.size_bytes), 0)).select_from(image).join(files, files.image_id == image.id).where(where)
    )
    products_query = select(image.product_id).where(where).distinct().order_by(image.product_id)
    with search.catalog.session() as session:
        count = int(session.execute(count_query).scalar_one())
        total = int(session.execute(bytes_query).scalar_one()) if count else 0
        products = list(session.scalars(products_query)) if count else []
    return Summary(count=count, bytes=total, products=products)


def summarize_intervals(
    search: Search[Any],
    *,
    interval: str = "month",
    start_datetime: object = None,
    end_datetime: object = None,
    date_field: str = "acquired",
) -> list[IntervalSummary]:
    """Return, per ``interval``, how many images ``search`` matches and their bytes.

    ``start_datetime`` (inclusive) and ``end_datetime`` (exclusive) restrict the images by
    ``date_field`` (aware datetimes, dates or ISO text as in property expressions). Intervals run
    from the one holding ``start_datetime`` (else the earliest image's) to the one holding the
    latest image (or just before ``end_datetime``); intervals without images are listed with zero
    counts, so the result is a gap-free series.

    Returns:
        The :class:`IntervalSummary` list in time order; empty when nothing matches and no
        bounds are given.

    Raises:
        CatalogError: for an unknown ``interval`` or ``date_field``, bad bounds, ``start`` not
            before ``end``, or a search not over images.
    """
    _require_images(search)
    if interval not in INTERVALS:
        raise CatalogError(f"interval must be one of {INTERVALS}, got {interval!r}")
    if date_field not in DATE_FIELDS:
        raise CatalogError(f"aggregate_date_field must be one of {DATE_FIELDS}, got {date_field!r}")
    from cube_assets.catalog.search import parse_datetime

    start = None if start_datetime is None else parse_datetime("start_datetime", start_datetime)
    end = None if end_datetime is None else parse_datetime("end_datetime", end_datetime)
    if start is not None and end is not None and start >= end:
        raise CatalogError(f"start_datetime {start.isoformat()} must be before end_datetime {end.isoformat()}")
    restricted = search
    if start is not None:
        restricted = restricted.filter(p[date_field] >= start)
    if end is not None:
        restricted = restricted.filter(p[date_field] < end)
    where = restricted.where_clause()
    image, files = models.Image, models.ImageFile
    column = getattr(image, date_field)
    bucket = _bucket(column, interval, search.catalog.dialect).label("bucket")
    counts_query = select(bucket, func.count()).select_from(image).where(where).group_by(bucket)
    bytes_query = (
        select(bucket, func.coalesce(func.sum(files.size_bytes), 0))
        .select_from(image)
        .join(files, files.image_id == image.id)
        .where(where)
        .group_by(bucket)
    )
    with search.catalog.session() as session:
        counts = {_bucket_start(value): int(n) for value, n in session.execute(counts_query)}
        sizes = {_bucket_start(value): int(n) for value, n in session.execute(bytes_query)} if counts else {}
    first = _floor(start, interval) if start is not None else min(counts, default=None)
    if end is not None:
        last = _floor(end - dt.timedelta(microseconds=1), interval)
    else:
        last = max(counts, default=None)
    if first is None or last is None:
        return []
    series = []
    current = first
    while current <= last:
        series.append(IntervalSummary(current, counts.get(current, 0), sizes.get(current, 0)))
        current = _next(current, interval)
    return series


def _require_images(search: Search[Any]) -> None:
    if not getattr(search.object_class, "_spatial", False):
        raise CatalogError("summaries are computed over image searches")


def _bucket(column: Any, interval: str, dialect: str) -> ColumnElement[Any]:
    """SQL for the start of ``column``'s interval, as a UTC timestamp (PostgreSQL) or ISO date text (SQLite)."""
    if dialect == "postgresql":
        return func.date_trunc(interval, func.timezone("UTC", column))
    # SQLite stores UTC timestamps as ISO text; its date functions read it as UTC.
    if interval == "year":
        return func.strftime("%Y-01-01", column)
    if interval == "month":
        return func.strftime("%Y-%m-01", column)
    if interval == "week":
        # 'weekday 0' moves forward to Sunday (or stays); six days back is that week's Monday.
        return func.date(column, literal("weekday 0"), literal("-6 days"))
    return func.date(column)


def _bucket_start(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def _floor(moment: dt.datetime, interval: str) -> dt.datetime:
    day = moment.astimezone(dt.UTC).date()
    if interval == "year":
        day = day.replace(month=1, day=1)
    elif interval == "month":
        day = day.replace(day=1)
    elif interval == "week":
        day = day - dt.timedelta(days=day.weekday())
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _next(moment: dt.datetime, interval: str) -> dt.datetime:
    if interval == "year":
        return moment.replace(year=moment.year + 1)
    if interval == "month":
        return moment.replace(year=moment.year + (moment.month == 12), month=moment.month % 12 + 1)
    if interval == "week":
        return moment + dt.timedelta(days=7)
    return moment + dt.timedelta(days=1)


__all__ = ["DATE_FIELDS", "INTERVALS", "IntervalSummary", "Summary", "summarize", "summarize_intervals"]
