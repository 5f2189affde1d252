"""Temporal schemas: how a cube's time axis is cut into compositing periods.

A period's key is its start date (ISO ``YYYY-MM-DD``); its end is exclusive.

* ``16D`` (or any ``{n}D`` with ``restart: yearly``): periods of n days restarting every
  1 January; the last period of a year is cut at 31 December (so 2024 has 23 periods,
  the last from 2024-12-18 to 2024-12-31 inclusive).
* ``1M`` (or ``{n}M``): calendar months (or n-month blocks starting in January).
* ``{n}D`` with ``restart: none``: a continuous step of n days from the cube's start date.

A day step is at most ``MAX_DAY_STEP`` days; a month step divides 12.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cube_assets.errors import InvalidCubeConfig
from cube_assets.quoting import quoted

_STEP = re.compile(r"^(?P<n>[1-9]\d{0,5})(?P<unit>[DM])$")
MAX_DAY_STEP = 366


@dataclass(frozen=True, order=True)
class Period:
    """A compositing period ``[start, end)``."""

    start: date
    end: date

    @property
    def key(self) -> str:
        """The period's partition key: its start date in ISO format."""
        return self.start.isoformat()

    @property
    def days(self) -> int:
        """The number of days in the period."""
        return (self.end - self.start).days

    def contains(self, moment: date | datetime) -> bool:
        """Return whether the day of ``moment`` falls in this period."""
        day = moment.date() if isinstance(moment, datetime) else moment
        return self.start <= day < self.end

    def dates(self) -> list[date]:
        """Return every day of the period."""
        return [self.start + timedelta(days=i) for i in range(self.days)]


@dataclass(frozen=True)
class TemporalSchema:
    """How periods are cut: a step (``16D``, ``1M``, ``8D``…) and whether it restarts yearly."""

    step: str = "16D"
    restart: str = "yearly"

    def __post_init__(self) -> None:
        if not isinstance(self.step, str) or not _STEP.fullmatch(self.step):
            raise InvalidCubeConfig(
                f"temporal schema step {quoted(self.step)}: expected a count and a unit, like '16D' or '1M'"
            )
        if self.restart not in ("yearly", "none"):
            raise InvalidCubeConfig(f"temporal schema restart {quoted(self.restart)}: expected 'yearly' or 'none'")
        if self.unit == "M" and 12 % self.count:
            raise InvalidCubeConfig(f"temporal schema step {quoted(self.step)}: month steps must divide 12")
        if self.unit == "D" and self.count > MAX_DAY_STEP:
            raise InvalidCubeConfig(
                f"temporal schema step {quoted(self.step)}: day steps are at most {MAX_DAY_STEP} days"
            )

    @property
    def count(self) -> int:
        """The step's count (16 in ``16D``)."""
        return int(_STEP.fullmatch(self.step)["n"])  # type: ignore[index]  # the step was matched against _STEP when the schema was made

    @property
    def unit(self) -> str:
        """The step's unit, ``D`` or ``M``."""
        return _STEP.fullmatch(self.step)["unit"]  # type: ignore[index]  # the step was matched against _STEP when the schema was made

    def period_of(self, moment: date | datetime, anchor: date | None = None) -> Period:
        """Return the period containing ``moment``.

        ``anchor`` is the first day of the continuous schema (``restart: none``); it is
        required there and ignored otherwise.

        Raises:
            InvalidCubeConfig: if a continuous schema has no anchor or the day precedes it.
        """
        day = moment.date() if isinstance(moment, datetime) else moment
        n = self.count
        if self.unit == "M":
            month0 = ((day.month - 1) // n) * n + 1
            start = date(day.year, month0, 1)
            end_month = month0 + n
            end = date(day.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1)
            return Period(start, end)
        if self.restart == "yearly":
            year_start = date(day.year, 1, 1)
            offset = ((day - year_start).days // n) * n
            start = year_start + timedelta(days=offset)
            end = min(start + timedelta(days=n), date(day.year + 1, 1, 1))
            return Period(start, end)
        if anchor is None:
            raise InvalidCubeConfig(f"temporal schema {self.step} with restart 'none' needs a start date")
        if day < anchor:
            raise InvalidCubeConfig(f"{day} precedes the schema's start date {anchor}")
        offset = ((day - anchor).days // n) * n
        start = anchor + timedelta(days=offset)
        return Period(start, start + timedelta(days=n))

    def periods(self, start: date, end: date) -> list[Period]:
        """Return every period that overlaps ``[start, end]`` (both inclusive), in order."""
        return list(self._iter(start, end))

    def _iter(self, start: date, end: date) -> Iterator[Period]:
        anchor = start
        period = self.period_of(start, anchor)
        while period.start <= end:
            yield period
            period = self.period_of(period.end, anchor)
