"""Personal identification numbers (kezek/pin.py): the Kyrgyz PIN and the
Kazakh IIN, read once for registration and the queue."""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, strategies as st

from kezek import pin
from kezek.pin import PinError

TODAY = date(2026, 11, 23)


def code(number: str, country: str = "KG", today: date | None = TODAY) -> str:
    with pytest.raises(PinError) as exc:
        pin.parse(number, country, today)
    return exc.value.code


# --- Kyrgyz PIN ----------------------------------------------------------------

def test_kg_pin_gives_birth_date_and_sex():
    girl = pin.parse_kg_pin("11506202400011", TODAY)
    assert girl.birth_date == date(2024, 6, 15) and girl.sex == "female"
    boy = pin.parse_kg_pin(pin.digits_only("2 0101 2023 00042"), TODAY)
    assert boy.birth_date == date(2023, 1, 1) and boy.sex == "male" and boy.number == "20101202300042"


@pytest.mark.parametrize("number", ["1150620240001", "115062024000111", "1150620240001a", "1150620240001٣"])
def test_kg_pin_must_be_14_ascii_digits(number):
    assert code(number) == "pin_format"


def test_kg_pin_is_required():
    assert code("") == "required"


def test_kg_pin_sex_digit_is_1_or_2():
    assert code("31506202400011") == "pin_sex_digit"


@pytest.mark.parametrize("number", ["13002202400011", "13204202400011", "12913202400011", "12902202300011"])
def test_kg_pin_with_impossible_date_refused(number):
    assert code(number) == "pin_impossible_date"


def test_kg_pin_leap_day_accepted_in_leap_year():
    assert pin.parse_kg_pin("22902202400011", TODAY).birth_date == date(2024, 2, 29)


def test_kg_pin_with_future_birth_date_refused_when_today_is_known():
    assert code("12411202600011") == "pin_future_date"
    assert pin.birth_date("12411202600011", "KG") == date(2026, 11, 24)


def test_kg_pin_before_1900_is_impossible_for_a_person_registering():
    assert code("10101189900011") == "pin_impossible_date"


@given(st.dates(min_value=date(1950, 1, 1), max_value=TODAY), st.sampled_from("12"), st.integers(0, 99999))
def test_kg_pin_round_trips_any_real_date(born, sex, serial):
    number = f"{sex}{born:%d%m%Y}{serial:05d}"
    info = pin.parse_kg_pin(number, TODAY)
    assert info.birth_date == born == pin.birth_date(number, "KG")
    assert info.sex == ("female" if sex == "1" else "male")


# --- Kazakh IIN ----------------------------------------------------------------

def make_iin(first11: str) -> str:
    check = pin.iin_check_digit(first11)
    assert check is not None
    return first11 + str(check)


def test_kz_iin_check_digit_uses_first_weights():
    # 950101 3 0123 ?: 9+10+0+4+0+6+21+0+9+20+33 = 112 -> 112 % 11 = 2
    assert pin.iin_check_digit("95010130123") == 2
    info = pin.parse_kz_iin("950101301232", TODAY)
    assert info.birth_date == date(1995, 1, 1) and info.sex == "male"


def test_kz_iin_check_digit_falls_back_to_second_weights():
    # A number whose first sum is 10 mod 11 is checked with 3,4,...,11,1,2.
    found = next(f"2305155{serial:04d}" for serial in range(10000)
                 if sum(w * int(c) for w, c in zip(range(1, 12), f"2305155{serial:04d}")) % 11 == 10)
    d2 = sum(w * int(c) for w, c in zip((3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2), found)) % 11
    assert pin.iin_check_digit(found) == (None if d2 == 10 else d2)


@given(st.text("0123456789", min_size=11, max_size=11))
def test_kz_iin_with_any_other_last_digit_is_refused(first11):
    check = pin.iin_check_digit(first11)
    for last in "0123456789":
        if check is not None and int(last) == check:
            pin.parse_kz_iin(first11 + last)
        else:
            with pytest.raises(PinError, match="iin_check_digit"):
                pin.parse_kz_iin(first11 + last)


def test_kz_iin_decodes_century_and_sex():
    info = pin.parse_kz_iin(make_iin("23051560001"), TODAY)
    assert info.birth_date == date(2023, 5, 15) and info.sex == "female"


def test_kz_iin_date_is_only_a_hint():
    # 31 February: the check digit holds, so the IIN stands, without a date.
    info = pin.parse_kz_iin(make_iin("23023150001"), TODAY)
    assert info.birth_date is None
    # A date after today is no hint either.
    assert pin.parse_kz_iin(make_iin("27010150001"), TODAY).birth_date is None


def test_kz_iin_must_be_12_digits():
    assert code("1234567890", "KZ") == "pin_format"


def test_ranking_needs_the_date_an_iin_names():
    assert pin.birth_date(make_iin("23051560001"), "KZ") == date(2023, 5, 15)
    with pytest.raises(PinError, match="pin_impossible_date"):
        pin.birth_date(make_iin("23023150001"), "KZ")
    # The century digit is checked before the check digit.
    with pytest.raises(PinError, match="iin_century_digit"):
        pin.birth_date("230515700010", "KZ")


def test_unknown_country_is_refused():
    with pytest.raises(ValueError):
        pin.parse("11506202400011", "UZ")
