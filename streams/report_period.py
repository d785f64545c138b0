"""The report's periods and changes: which local days a report covers, the previous period it is
compared with, and the change between two values. Pure: `today` is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from streams.errors import ConfigError

# Rolling windows, as WAU and MAU are: a week is the 7 local days ending on the last day, a
# month the 30 (seed 004's /admin_analytics week|month, and seed 000's MAU window).
PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}


@dataclass(frozen=True)
class Period:
    """The local days start…end, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ConfigError(f"the period ends ({self.end}) before it starts ({self.start}): "
                              "swap --from and --to")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - timedelta(days=1)
        return Period(end - timedelta(days=self.days - 1), end)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


def local_today(tz: ZoneInfo, now: datetime) -> date:
    """The app's local day at the instant `now` (aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(tz).date()


def resolve_period(kind: str, today: date, *, end: date | None = None,
                   date_from: date | None = None, date_to: date | None = None) -> Period:
    """`kind` is day, week or month (ending on `end`, default today) or range (`date_from` …
    `date_to`, default today)."""
    if kind == "range":
        if date_from is None:
            raise ConfigError("--to needs --from: give the first day of the range too")
        return Period(date_from, date_to or today)
    if date_from is not None or date_to is not None:
        raise ConfigError("--from/--to cannot be combined with --day, --week or --month")
    last = end or today
    return Period(last - timedelta(days=PERIOD_DAYS[kind] - 1), last)


@dataclass(frozen=True)
class Change:
    current: float
    previous: float
    # current − previous.
    absolute: float
    # Relative change in percent; None when the previous value is 0 and the current is not
    # (growth from nothing has no percentage), 0.0 when both are 0.
    percent: float | None


def change(current: float | None, previous: float | None) -> Change | None:
    """The change from `previous` to `current`; None when either is unknown."""
    if current is None or previous is None:
        return None
    if previous == 0:
        percent = 0.0 if current == 0 else None
    else:
        percent = (current - previous) / abs(previous) * 100
    return Change(current, previous, current - previous, percent)
