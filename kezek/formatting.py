"""Dates and numbers as a reader of one language expects them (Babel, from
CLDR's data), in the country's time zone: the one formatting helper of the
pages. The services speak UTC and ISO 8601; a page shows a parent's local
day and time, in the order and with the separators of the reader's
language (08.03.2027 in Kyrgyz, Russian and Kazakh, 3/8/2027 in English),
always with four digits of year and a 24-hour clock, as both countries
write them.

    fmt = Formats("ru", ZoneInfo("Asia/Bishkek"))
    fmt.day("2027-03-08T18:00:00Z")      # '09.03.2027' (00:00 in Bishkek)
    env.filters.update(fmt.filters())    # date, moment, day, long_day, number, km
"""
from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any

from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.numbers import format_decimal

__all__ = ["Formats", "parse_moment"]

# CLDR's long Russian date ends in "г." (a sentence ending in it gets two
# dots) and parents' letters write "8 марта 2027" anyway.
_LONG_DAY = {"ru": "d MMMM y"}


def parse_moment(value: Any, tz: tzinfo | None = None) -> datetime | date | None:
    """A moment (in `tz` when it carries a zone), a bare day, or None: from a
    datetime, a date or their ISO text as the services' JSON carries them."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if len(text) == 10:
            return moment.date()
    return moment.astimezone(tz) if tz is not None and moment.tzinfo else moment


class Formats:
    """The formats of one language and time zone (None: keep each moment's own)."""

    def __init__(self, lang: str, tz: tzinfo | None = None):
        self.lang, self.tz = lang, tz
        self.locale = Locale.parse(lang.replace("-", "_"))
        self._joined = self.locale.datetime_formats.get("short", "{1} {0}")

    # ------------------------------------------------------------ days and moments

    def date(self, value: Any) -> str:
        """The local day alone: 08.03.2027 (ru/ky/kk), 3/8/2027 (en); "" for nothing."""
        moment = parse_moment(value, self.tz)
        if moment is None:
            return "" if value in (None, "") else str(value)
        day = moment.date() if isinstance(moment, datetime) else moment
        return format_skeleton("yMd", day, locale=self.locale)

    def moment(self, value: Any) -> str:
        """The local day and time (24-hour clock); a bare day stays a day."""
        moment = parse_moment(value, self.tz)
        if not isinstance(moment, datetime):
            return self.date(value)
        clock = format_skeleton("Hm", moment, locale=self.locale)
        return self._joined.replace("{1}", self.date(moment)).replace("{0}", clock)

    def day(self, value: Any) -> str:
        """A day, with its time when the moment is not midnight."""
        moment = parse_moment(value, self.tz)
        if isinstance(moment, datetime) and (moment.hour, moment.minute) != (0, 0):
            return self.moment(moment)
        return self.date(value)

    def long_day(self, value: Any) -> str:
        """A day in words: 8 марта 2027, 8 March 2027."""
        moment = parse_moment(value, self.tz)
        if moment is None:
            return "" if value in (None, "") else str(value)
        day = moment.date() if isinstance(moment, datetime) else moment
        return format_date(day, _LONG_DAY.get(self.lang, "long"), locale=self.locale)

    # ------------------------------------------------------------ numbers

    def number(self, value: Any, digits: int | None = None) -> str:
        """1 234,5 (ru/ky/kk), 1,234.5 (en); `digits`: exactly that many decimals."""
        if value is None or value == "":
            return ""
        pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self.locale)

    def km(self, metres: Any) -> str:
        """A distance in kilometres with one decimal: 1,2 (ru), 1.2 (en)."""
        if metres is None or metres == "":
            return ""
        return self.number(float(metres) / 1000, 1)

    def filters(self) -> dict[str, Any]:
        """Every format as a Jinja2 filter of the same name."""
        return {name: getattr(self, name) for name in
                ("date", "moment", "day", "long_day", "number", "km")}
