"""The report's period and change arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from streams.errors import ConfigError
from streams.report_period import Period, change, local_today, resolve_period

MOSCOW = ZoneInfo("Europe/Moscow")


def test_day_week_and_month_end_on_the_given_day() -> None:
    today = date(2024, 3, 15)
    assert resolve_period("day", today) == Period(today, today)
    assert resolve_period("week", today) == Period(date(2024, 3, 9), today)
    assert resolve_period("month", today) == Period(date(2024, 2, 15), today)
    assert resolve_period("week", today, end=date(2024, 1, 7)) == Period(
        date(2024, 1, 1), date(2024, 1, 7))


def test_previous_period_has_the_same_length_and_ends_the_day_before() -> None:
    assert Period(date(2024, 3, 9), date(2024, 3, 15)).previous() == Period(
        date(2024, 3, 2), date(2024, 3, 8))
    # A month crossing February of a leap year: 30 days back, 29 February included.
    month = resolve_period("month", date(2024, 3, 15))
    assert month.days == 30
    assert month.previous() == Period(date(2024, 1, 16), date(2024, 2, 14))
    assert month.previous().days == 30
    single = Period(date(2024, 1, 1), date(2024, 1, 1))
    assert single.previous() == Period(date(2023, 12, 31), date(2023, 12, 31))
    custom = resolve_period("range", date(2024, 5, 1), date_from=date(2024, 4, 10),
                            date_to=date(2024, 4, 12))
    assert (custom.days, custom.previous()) == (3, Period(date(2024, 4, 7), date(2024, 4, 9)))


def test_range_defaults_to_today_and_rejects_bad_combinations() -> None:
    today = date(2024, 5, 1)
    assert resolve_period("range", today, date_from=date(2024, 4, 29)) == Period(
        date(2024, 4, 29), today)
    with pytest.raises(ConfigError, match="--to needs --from"):
        resolve_period("range", today, date_to=date(2024, 4, 29))
    with pytest.raises(ConfigError, match="swap --from and --to"):
        resolve_period("range", today, date_from=date(2024, 4, 29), date_to=date(2024, 4, 1))
    with pytest.raises(ConfigError, match="cannot be combined"):
        resolve_period("week", today, date_from=date(2024, 4, 1))


def test_today_and_week_follow_the_apps_time_zone() -> None:
    # 21:30 UTC on 31 March is already 1 April in Moscow (UTC+3): the week ends on 1 April.
    instant = datetime(2024, 3, 31, 21, 30, tzinfo=UTC)
    assert local_today(MOSCOW, instant) == date(2024, 4, 1)
    assert local_today(ZoneInfo("UTC"), instant) == date(2024, 3, 31)
    assert resolve_period("week", local_today(MOSCOW, instant)) == Period(
        date(2024, 3, 26), date(2024, 4, 1))
    # New York at 02:00 UTC on 1 January is still 31 December: the month is December's.
    new_year = datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
    month = resolve_period("month", local_today(ZoneInfo("America/New_York"), new_year))
    assert month == Period(date(2023, 12, 2), date(2023, 12, 31))
    with pytest.raises(ValueError, match="timezone-aware"):
        local_today(MOSCOW, datetime(2024, 1, 1))  # noqa: DTZ001 - the naive input under test


def test_membership() -> None:
    week = Period(date(2024, 1, 1), date(2024, 1, 7))
    assert date(2024, 1, 7) in week
    assert date(2024, 1, 8) not in week
    assert "2024-01-03" not in week


def test_change_absolute_and_percent() -> None:
    up = change(120, 100)
    assert up is not None and (up.absolute, up.percent) == (20, 20.0)
    down = change(75.0, 100.0)
    assert down is not None and (down.absolute, down.percent) == (-25.0, -25.0)
    same = change(3, 3)
    assert same is not None and same.percent == 0.0
    # A negative base (never for counts, possible for a difference) still reads as a change.
    negative = change(-5.0, -10.0)
    assert negative is not None and negative.percent == 50.0


def test_change_from_zero_has_no_percentage() -> None:
    grown = change(7, 0)
    assert grown is not None and (grown.absolute, grown.percent) == (7, None)
    both = change(0, 0)
    assert both is not None and (both.absolute, both.percent) == (0, 0.0)
    fallen = change(0, 4)
    assert fallen is not None and fallen.percent == -100.0
    assert change(None, 4) is None
    assert change(4, None) is None
