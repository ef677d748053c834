"""Working days of Kyrgyzstan and Kazakhstan, in local time.

A working day is Monday to Friday, minus the country's public holidays, plus
the weekend days that the law or a decree turns into working days. The
holidays come from the `holidays` package, which follows Kyrgyzstan's 2025
Labour Code (no more weekend transfers) and Kazakhstan's rule that moves a
holiday falling on a weekend to the next working day. One-off government
decrees (an extra day off, a working Saturday) are data:
`kezek/calendar_data/<country>.yaml`.

The convention of SCENARIOS.md: "N working days" from a moment ends at 24:00
local time of the Nth working day after that moment's day; the day itself is
not counted.

Everything here is pure and deterministic (same inputs, same answers), so the
ReferralWorkflow may call it during replay. The holiday tables are computed
once per country and year and cached.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

# Imported eagerly: the package loads country modules lazily, and a lazy
# import must not happen later inside the workflow sandbox.
import holidays
import holidays.countries.kazakhstan
import holidays.countries.kyrgyzstan
import yaml

try:  # the calendar is used inside Temporal workflows, see _deterministic()
    from temporalio import workflow as _workflow
except ImportError:  # pragma: no cover
    _workflow = None

TIMEZONES = {"KG": "Asia/Bishkek", "KZ": "Asia/Almaty"}
DATA_DIR = Path(__file__).with_name("calendar_data")

_HOLIDAY_CLASSES = {
    "KG": holidays.countries.kyrgyzstan.Kyrgyzstan,
    "KZ": holidays.countries.kazakhstan.Kazakhstan,
}


class CalendarError(ValueError):
    """Bad calendar data or an unknown country."""


@dataclass(frozen=True)
class Override:
    day: date
    working: bool      # True: a working day (e.g. a transferred Saturday); False: a day off
    reason: str = ""


@dataclass(frozen=True)
class _Year:
    days_off: frozenset[date]       # public holidays of the year
    working_weekend: frozenset[date]  # Saturdays/Sundays made working days by the law


def load_overrides(path: Path) -> tuple[Override, ...]:
    """Reads an overrides file: `days_off:` and `working_days:`, each a list
    of `{date: YYYY-MM-DD, reason: ...}` (a bare date is accepted too)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise CalendarError(f"{path}: expected a mapping with days_off and working_days")
    unknown = set(raw) - {"country", "days_off", "working_days"}
    if unknown:
        raise CalendarError(f"{path}: unknown keys {sorted(unknown)}")
    out: list[Override] = []
    for key, working in (("days_off", False), ("working_days", True)):
        for item in raw.get(key) or []:
            if isinstance(item, dict):
                day, reason = item.get("date"), str(item.get("reason", ""))
            else:
                day, reason = item, ""
            if isinstance(day, str):
                try:
                    day = date.fromisoformat(day)
                except ValueError:
                    raise CalendarError(f"{path}: {key}: bad date {day!r}") from None
            if not isinstance(day, date) or isinstance(day, datetime):
                raise CalendarError(f"{path}: {key}: bad date {day!r}")
            out.append(Override(day, working, reason))
    seen: dict[date, Override] = {}
    for o in out:
        if o.day in seen and seen[o.day].working != o.working:
            raise CalendarError(f"{path}: {o.day} is both a day off and a working day")
        seen[o.day] = o
    return tuple(out)


@dataclass(eq=False)
class WorkingCalendar:
    """The working days of one country, with its decreed overrides."""

    country: str
    overrides: tuple[Override, ...] = ()
    _years: dict[int, _Year] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.country not in TIMEZONES:
            raise CalendarError(f"unknown country {self.country!r}; known: {', '.join(TIMEZONES)}")
        self.tz = timezone(self.country)
        self._override = {o.day: o.working for o in self.overrides}
        # Cached per instance (not functools on methods, which would keep
        # every calendar alive): deadlines are asked for again and again.
        self._ends: dict[tuple[date, int], date] = {}

    # ------------------------------------------------------------ days

    def _year(self, year: int) -> _Year:
        y = self._years.get(year)
        if y is None:
            with self._lock:
                y = self._years.get(year)
                if y is None:
                    # Neighbouring years too: a holiday observed on another
                    # day may be generated while populating the next year.
                    with _deterministic():
                        h = _HOLIDAY_CLASSES[self.country](years=[year - 1, year, year + 1])
                    y = _Year(
                        days_off=frozenset(d for d in h if d.year == year),
                        working_weekend=frozenset(d for d in h.weekend_workdays if d.year == year),
                    )
                    self._years[year] = y
        return y

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            raise TypeError("is_working_day takes a date; use local_date() for a moment")
        decreed = self._override.get(day)
        if decreed is not None:
            return decreed
        y = self._year(day.year)
        if day in y.working_weekend:
            return True
        return day.weekday() < 5 and day not in y.days_off

    def holiday_name(self, day: date) -> str | None:
        """The public holiday on `day`, if any (for explanations)."""
        for o in self.overrides:
            if o.day == day and not o.working:
                return o.reason or "day off by decree"
        with _deterministic():
            h = _HOLIDAY_CLASSES[self.country](years=[day.year])
        return h.get(day)

    def nth_working_day_after(self, day: date, n: int) -> date:
        """The Nth working day after `day` (`day` itself not counted); n=0 is `day`."""
        if n < 0:
            raise ValueError("n must not be negative")
        key = (day, n)
        found = self._ends.get(key)
        if found is None:
            found, left = day, n
            while left:
                found += timedelta(days=1)
                if self.is_working_day(found):
                    left -= 1
            self._ends[key] = found
        return found

    # --------------------------------------------------------- moments

    def local(self, moment: datetime) -> datetime:
        """The moment in local time; a naive moment is taken to be local already."""
        if moment.tzinfo is None:
            return moment.replace(tzinfo=self.tz)
        return moment.astimezone(self.tz)

    def local_date(self, moment: datetime) -> date:
        return self.local(moment).date()

    def start_of_day(self, day: date) -> datetime:
        """00:00 local time of `day`, as an aware datetime."""
        return datetime.combine(day, time(0), tzinfo=self.tz)

    def window_end(self, moment: datetime, working_days: int) -> datetime:
        """24:00 local time of the Nth working day after the moment's day
        (returned as 00:00 of the next day, aware, in local time)."""
        last = self.nth_working_day_after(self.local_date(moment), working_days)
        return self.start_of_day(last + timedelta(days=1))

    def nth_working_day_before(self, day: date, n: int) -> date:
        """The Nth working day before `day` (`day` itself not counted)."""
        found, left = day, n
        while left:
            found -= timedelta(days=1)
            if self.is_working_day(found):
                left -= 1
        return found

    def last_working_day_before(self, end: datetime) -> date:
        """The last working day that ends by `end` (a window's deadline)."""
        day = self.local(end).date()
        if self.local(end) == self.start_of_day(day):
            day -= timedelta(days=1)
        return day if self.is_working_day(day) else self.nth_working_day_before(day, 1)

    def last_working_day(self, start: datetime, working_days: int) -> date:
        """The last working day of a window opened at `start`."""
        return self.nth_working_day_after(self.local_date(start), working_days)

    def working_day_of_window(self, start: datetime, moment: datetime) -> int | None:
        """Which working day of a window opened at `start` the moment falls on
        (1 = the first working day after the opening day); 0 on the opening
        day itself; None on a day that is not a working day or is before it."""
        first, today = self.local_date(start), self.local_date(moment)
        if today < first:
            return None
        if today == first:
            return 0
        if not self.is_working_day(today):
            return None
        return sum(1 for d in _days(first + timedelta(days=1), today) if self.is_working_day(d))

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in the closed range [start, end]."""
        return sum(1 for d in _days(start, end) if self.is_working_day(d))


def _deterministic():
    """The holidays package sets up gettext (it reads the locale) when it
    computes a year. That is deterministic for our purpose (we use dates,
    not names), but the workflow sandbox forbids the locale call, so a year
    first needed inside a workflow is computed outside the sandbox's checks."""
    if _workflow is not None and _workflow.in_workflow():
        return _workflow.unsafe.sandbox_unrestricted()
    return contextlib.nullcontext()


def _days(first: date, last: date) -> Iterable[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


@functools.lru_cache(maxsize=None)
def _shipped(country: str) -> WorkingCalendar:
    path = DATA_DIR / f"{country.lower()}.yaml"
    overrides = load_overrides(path) if path.exists() else ()
    return WorkingCalendar(country, overrides)


def calendar(country: str = "KG", overrides_file: Path | None = None) -> WorkingCalendar:
    """The country's calendar with the overrides shipped in kezek/calendar_data
    (or those of `overrides_file`, for an analyst's what-if)."""
    if country not in TIMEZONES:
        raise CalendarError(f"unknown country {country!r}; known: {', '.join(TIMEZONES)}")
    if overrides_file is not None:
        return WorkingCalendar(country, load_overrides(overrides_file))
    return _shipped(country)


def timezone(country: str) -> ZoneInfo:
    """The country's time zone: TIMEZONES is the one table of them."""
    if country not in TIMEZONES:
        raise CalendarError(f"unknown country {country!r}; known: {', '.join(TIMEZONES)}")
    return ZoneInfo(TIMEZONES[country])


def is_working_day(day: date, country: str = "KG") -> bool:
    return calendar(country).is_working_day(day)


def window_end(moment: datetime, working_days: int, country: str = "KG") -> datetime:
    """End of the Nth working day after `moment`'s day (see WorkingCalendar.window_end)."""
    return calendar(country).window_end(moment, working_days)


def working_day_of_window(start: datetime, moment: datetime, country: str = "KG") -> int | None:
    return calendar(country).working_day_of_window(start, moment)
