"""Working days of Kyrgyzstan and Kazakhstan on real dates (kezek/calendar.py)."""
from datetime import date, datetime, timedelta, timezone

import pytest

from kezek import calendar as cal
from kezek.calendar import CalendarError, WorkingCalendar, load_overrides

KG = cal.calendar("KG")
KZ = cal.calendar("KZ")


def test_weekends_are_not_working_days():
    assert KG.is_working_day(date(2027, 3, 5))       # Friday
    assert not KG.is_working_day(date(2027, 3, 6))   # Saturday
    assert not KZ.is_working_day(date(2027, 3, 7))   # Sunday


def test_nooruz_21_march_is_a_day_off_in_both_countries():
    assert not KG.is_working_day(date(2024, 3, 21))  # Thursday
    assert not KZ.is_working_day(date(2024, 3, 21))


def test_kyrgyz_2025_labour_code_does_not_move_a_holiday_that_falls_on_a_weekend():
    # Nooruz 2027 is a Sunday; Monday 22 March is an ordinary working day in Kyrgyzstan.
    assert KG.is_working_day(date(2027, 3, 22))


def test_kazakh_holiday_on_a_weekend_moves_to_the_next_working_day():
    # Nauryz 2027: 21 (Sun), 22, 23 March; the Sunday is made up on Wednesday 24.
    assert not KZ.is_working_day(date(2027, 3, 22))
    assert not KZ.is_working_day(date(2027, 3, 24))
    assert KZ.is_working_day(date(2027, 3, 25))
    # Victory Day 2027 is a Sunday: Monday 10 May is off.
    assert not KZ.is_working_day(date(2027, 5, 10))


def test_transferred_saturday_is_a_working_day():
    # Kyrgyzstan 2024 worked on Saturday 2 March for a day off elsewhere; Kazakhstan on 4 May.
    assert KG.is_working_day(date(2024, 3, 2))
    assert KZ.is_working_day(date(2024, 5, 4))


def test_window_ends_at_midnight_after_the_nth_working_day_not_counting_the_first_day():
    # Monday 1 March 2027, 10:00; 8 March is Women's Day and 9 March Eid al-Fitr
    # (estimated) in Kyrgyzstan.
    end = KG.window_end(datetime(2027, 3, 1, 10, 0), 5)
    # Tue 2, Wed 3, Thu 4, Fri 5, (6-7 weekend, 8-9 holidays) Wed 10.
    assert end == datetime(2027, 3, 11, 0, 0, tzinfo=KG.tz)


def test_window_skips_kyrgyz_may_holidays():
    # 1-9 May 2026 are all days off in Kyrgyzstan.
    end = KG.window_end(datetime(2026, 4, 30, 10, 0), 5)
    assert end == datetime(2026, 5, 16, 0, 0, tzinfo=KG.tz)


def test_window_around_nooruz_differs_between_the_countries():
    issued = datetime(2026, 3, 20, 10, 0)  # Friday
    # Kyrgyzstan: Nooruz on Saturday 21 is not moved; Mon 23 .. Fri 27.
    assert KG.window_end(issued, 5) == datetime(2026, 3, 28, 0, 0, tzinfo=KG.tz)
    # Kazakhstan: 21-23 March plus two days made up (24, 25); Thu 26 .. Wed 1 April.
    assert KZ.window_end(issued, 5) == datetime(2026, 4, 2, 0, 0, tzinfo=KZ.tz)


def test_window_is_counted_in_local_time():
    # 23:30 UTC on 1 March is already 2 March in Bishkek (UTC+6) and Almaty (UTC+5).
    moment = datetime(2027, 3, 1, 23, 30, tzinfo=timezone.utc)
    assert KG.local_date(moment) == date(2027, 3, 2)
    assert KG.window_end(moment, 1) == datetime(2027, 3, 4, 0, 0, tzinfo=KG.tz)
    assert KZ.window_end(moment, 1) == datetime(2027, 3, 4, 0, 0, tzinfo=KZ.tz)
    assert KZ.window_end(moment, 1).utcoffset() == timedelta(hours=5)


def test_window_opened_on_a_holiday_counts_from_the_next_working_day():
    # Opened on Nooruz 2024 (Thursday; Friday 22 is a day off too).
    assert KG.window_end(datetime(2024, 3, 21, 9, 0), 1) == datetime(2024, 3, 26, 0, 0, tzinfo=KG.tz)


def test_zero_working_days_ends_the_same_day():
    assert KG.window_end(datetime(2027, 3, 1, 10), 0) == datetime(2027, 3, 2, tzinfo=KG.tz)


def test_working_day_of_window_numbers_working_days_after_the_opening_day():
    opened = datetime(2026, 3, 20, 10, 0)
    days = {d: KG.working_day_of_window(opened, datetime(2026, 3, d, 12)) for d in range(19, 30)}
    assert days == {19: None, 20: 0, 21: None, 22: None, 23: 1, 24: 2, 25: 3, 26: 4, 27: 5,
                    28: None, 29: None}
    assert KG.last_working_day(opened, 5) == date(2026, 3, 27)


def test_overrides_add_a_decreed_day_off_and_a_working_saturday(tmp_path):
    f = tmp_path / "kg.yaml"
    f.write_text(
        "days_off:\n  - {date: 2027-12-31, reason: decree}\n"
        "working_days:\n  - {date: 2027-12-25, reason: worked for 31 December}\n  - 2027-12-26\n"
    )
    c = cal.calendar("KG", overrides_file=f)
    assert not c.is_working_day(date(2027, 12, 31))
    assert c.is_working_day(date(2027, 12, 25))
    assert c.is_working_day(date(2027, 12, 26))
    assert c.holiday_name(date(2027, 12, 31)) == "decree"
    # The shipped calendar is not touched.
    assert KG.is_working_day(date(2027, 12, 31))
    # Friday 24 Dec + 1 working day: the decreed Saturday 25 works.
    assert c.window_end(datetime(2027, 12, 24, 10), 1) == datetime(2027, 12, 26, tzinfo=c.tz)
    # Thursday 30 Dec + 1 working day: the decreed Friday 31 is off, and so are the New Year days.
    assert KG.window_end(datetime(2027, 12, 30, 10), 1) == datetime(2028, 1, 1, tzinfo=c.tz)
    assert c.window_end(datetime(2027, 12, 30, 10), 1) > datetime(2028, 1, 1, tzinfo=c.tz)


def test_overrides_refuse_a_day_that_is_both_off_and_working(tmp_path):
    f = tmp_path / "kz.yaml"
    f.write_text("days_off: [2027-06-01]\nworking_days: [2027-06-01]\n")
    with pytest.raises(CalendarError, match="both"):
        load_overrides(f)


def test_overrides_refuse_a_bad_date(tmp_path):
    f = tmp_path / "kz.yaml"
    f.write_text("days_off: ['2027-02-30']\n")
    with pytest.raises(CalendarError, match="bad date"):
        load_overrides(f)


def test_shipped_override_files_load():
    for country in ("KG", "KZ"):
        assert isinstance(cal.calendar(country), WorkingCalendar)
        load_overrides(cal.DATA_DIR / f"{country.lower()}.yaml")


def test_unknown_country_is_refused():
    with pytest.raises(CalendarError):
        cal.calendar("UZ")
