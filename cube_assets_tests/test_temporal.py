from datetime import UTC, date, datetime

import pytest

from cube_assets.errors import InvalidCubeConfig
from cube_assets.temporal import Period, TemporalSchema


def test_16_day_periods_restart_every_first_of_january():
    periods = TemporalSchema("16D").periods(date(2023, 12, 1), date(2024, 2, 5))
    assert [p.key for p in periods] == [
        "2023-11-17",
        "2023-12-03",
        "2023-12-19",
        "2024-01-01",
        "2024-01-17",
        "2024-02-02",
    ]
    assert periods[2] == Period(date(2023, 12, 19), date(2024, 1, 1))  # cut at year end: 13 days
    assert periods[2].days == 13


def test_a_year_has_23_sixteen_day_periods_the_last_one_short():
    periods = TemporalSchema("16D").periods(date(2024, 1, 1), date(2024, 12, 31))
    assert len(periods) == 23
    assert periods[-1].start == date(2024, 12, 18) and periods[-1].days == 14  # leap year


def test_monthly_periods_are_calendar_months():
    periods = TemporalSchema("1M").periods(date(2024, 1, 15), date(2024, 3, 1))
    assert [(p.key, p.days) for p in periods] == [("2024-01-01", 31), ("2024-02-01", 29), ("2024-03-01", 31)]


def test_custom_continuous_step_counts_from_the_start_date():
    schema = TemporalSchema("10D", restart="none")
    periods = schema.periods(date(2024, 12, 25), date(2025, 1, 10))
    assert [p.key for p in periods] == ["2024-12-25", "2025-01-04"]


def test_period_of_a_datetime_uses_its_day():
    period = TemporalSchema("16D").period_of(datetime(2024, 1, 17, 23, 59, tzinfo=UTC))
    assert period.key == "2024-01-17" and period.contains(date(2024, 2, 1)) and not period.contains(date(2024, 2, 2))


@pytest.mark.parametrize("step", ["16", "D", "0D", "5M", "16W"])
def test_malformed_steps_are_rejected(step):
    with pytest.raises(InvalidCubeConfig, match=step):
        TemporalSchema(step)
