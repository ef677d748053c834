"""Dates and numbers on the pages: the reader's language, the country's time zone (kezek/formatting.py)."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from kezek.formatting import Formats, parse_moment
from services.gateway.portal.pages import format_deadline

BISHKEK = ZoneInfo("Asia/Bishkek")


@pytest.mark.parametrize(("lang", "shown"), [("ru", "08.03.2027"), ("ky", "08.03.2027"),
                                              ("kk", "08.03.2027"), ("en", "3/8/2027")])
def test_a_day_is_written_in_the_order_of_the_readers_language_with_four_digits_of_year(lang, shown):
    assert Formats(lang, BISHKEK).date(date(2027, 3, 8)) == shown


def test_a_moment_the_services_send_in_utc_is_shown_on_the_local_day():
    fmt = Formats("ru", BISHKEK)
    # 19:00 UTC on 7 March is 01:00 on 8 March in Bishkek (UTC+6).
    assert fmt.date("2027-03-07T19:00:00Z") == "08.03.2027"
    assert fmt.moment("2027-03-07T19:00:00Z") == "08.03.2027, 01:00"
    assert Formats("ru", ZoneInfo("UTC")).date("2027-03-07T19:00:00Z") == "07.03.2027"


def test_the_clock_is_24_hours_in_every_language():
    moment = datetime(2027, 3, 8, 14, 5, tzinfo=BISHKEK)
    assert Formats("en", BISHKEK).moment(moment) == "3/8/2027, 14:05"
    assert Formats("ky", BISHKEK).moment(moment) == "08.03.2027 14:05"


def test_a_day_shows_its_time_only_when_it_is_not_midnight():
    fmt = Formats("ru", BISHKEK)
    assert fmt.day("2027-03-08T00:00:00+06:00") == "08.03.2027"
    assert fmt.day("2027-03-08T09:30:00+06:00") == "08.03.2027, 09:30"
    assert fmt.day("2027-03-08") == "08.03.2027"


def test_nothing_is_shown_as_nothing_and_an_unreadable_value_as_itself():
    fmt = Formats("kk", BISHKEK)
    assert fmt.date(None) == "" and fmt.day("") == "" and fmt.number(None) == "" and fmt.km(None) == ""
    assert fmt.date("soon") == "soon"


def test_a_long_day_is_in_words_without_the_russian_abbreviation_of_year():
    assert Formats("ru", BISHKEK).long_day(date(2027, 3, 8)) == "8 марта 2027"
    assert Formats("en", BISHKEK).long_day(date(2027, 3, 8)) == "March 8, 2027"


@pytest.mark.parametrize(("lang", "number", "km"), [("ru", "1\xa0234,5", "1,2"), ("en", "1,234.5", "1.2"),
                                                    ("ky", "1\xa0234,5", "1,2")])
def test_numbers_take_the_separators_of_the_readers_language(lang, number, km):
    fmt = Formats(lang, BISHKEK)
    assert fmt.number(1234.5) == number
    assert fmt.km(1234) == km


def test_a_deadline_at_midnight_is_shown_as_the_last_day_of_its_window():
    fmt = Formats("ru", BISHKEK)
    assert format_deadline("2027-03-11T00:00:00+06:00", fmt) == "10.03.2027"
    # 18:00 UTC on 10 March is the same midnight in Bishkek.
    assert format_deadline("2027-03-10T18:00:00Z", fmt) == "10.03.2027"
    assert format_deadline("2027-03-11T12:00:00+06:00", fmt) == "11.03.2027, 12:00"


def test_a_bare_day_is_not_moved_by_the_time_zone():
    assert parse_moment("2027-03-08", ZoneInfo("Pacific/Kiritimati")) == date(2027, 3, 8)
