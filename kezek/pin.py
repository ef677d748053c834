"""Personal identification numbers (DOMAIN.md section 2), read in one place.

- Kyrgyzstan, PIN, 14 digits: the sex digit (1 female, 2 male), the birth
  date as DDMMYYYY, a 5-digit serial. No check digit: the sex digit and the
  date are all that can be checked.
- Kazakhstan, IIN, 12 digits: the birth date as YYMMDD, a century/sex digit
  (1-2: 1800s, 3-4: 1900s, 5-6: 2000s; odd male, even female; 0 for some
  foreigners), a 4-digit serial and a mod-11 check digit (weights 1..11; when
  that gives 10, weights 3..11, 1, 2; when that gives 10 too, no such number
  is issued). The check digit decides validity; the date is only a hint.

Pure, standard library only. A refusal is a `PinError` with a stable code
(and parameters) that each service words for its readers: registration as a
field error, the queue as its refusal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Country = Literal["KG", "KZ"]
Sex = Literal["female", "male"]

KG_LENGTH = 14
KZ_LENGTH = 12
EARLIEST_YEAR = 1900        # a KG PIN naming an earlier birth year is refused as impossible

_DIGITS = re.compile(r"[0-9]*")
_SEPARATORS = re.compile(r"[\s-]")
_KG_SEX: dict[str, Sex] = {"1": "female", "2": "male"}
_IIN_WEIGHTS_1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_IIN_WEIGHTS_2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
_IIN_CENTURY: dict[str, tuple[int, Sex]] = {
    "1": (1800, "male"), "2": (1800, "female"), "3": (1900, "male"),
    "4": (1900, "female"), "5": (2000, "male"), "6": (2000, "female"),
}


class PinError(ValueError):
    """The number breaks a rule. `code` is stable: "required", "pin_format"
    (params: length), "pin_sex_digit", "pin_impossible_date",
    "pin_future_date", "iin_century_digit", "iin_check_digit"."""

    def __init__(self, code: str, **params: object):
        self.code, self.params = code, params
        super().__init__(code)


@dataclass(frozen=True)
class PersonalNumber:
    number: str
    country: Country
    birth_date: date | None   # KZ: only a hint (None when the digits name no real, past date)
    sex: Sex | None = field(default=None)


def digits_only(raw: str | None) -> str:
    """The number as typed, without spaces and dashes ("2 0101 2023 00042")."""
    return _SEPARATORS.sub("", raw or "")


def iin_check_digit(first11: str) -> int | None:
    """The mod-11 check digit of an IIN's first 11 digits; None when no digit
    fits (such numbers are never issued)."""
    d = [int(c) for c in first11]
    check = sum(w * x for w, x in zip(_IIN_WEIGHTS_1, d)) % 11
    if check == 10:
        check = sum(w * x for w, x in zip(_IIN_WEIGHTS_2, d)) % 11
    return None if check == 10 else check


def _digits(number: str, length: int) -> str:
    if not number:
        raise PinError("required")
    if len(number) != length or not _DIGITS.fullmatch(number):
        raise PinError("pin_format", length=length)
    return number


def parse_kg_pin(number: str, today: date | None = None) -> PersonalNumber:
    """A Kyrgyz PIN (digits only). With `today`, a birth date in the future
    or before 1900 is refused too."""
    pin = _digits(number, KG_LENGTH)
    sex = _KG_SEX.get(pin[0])
    if sex is None:
        raise PinError("pin_sex_digit")
    try:
        born = date(int(pin[5:9]), int(pin[3:5]), int(pin[1:3]))
    except ValueError:
        raise PinError("pin_impossible_date") from None
    if today is not None:
        if born > today:
            raise PinError("pin_future_date")
        if born.year < EARLIEST_YEAR:
            raise PinError("pin_impossible_date")
    return PersonalNumber(pin, "KG", born, sex)


def parse_kz_iin(number: str, today: date | None = None, *, date_required: bool = False) -> PersonalNumber:
    """A Kazakh IIN (digits only): valid when its check digit holds; the
    birth date is a hint, None when the digits name no real date (or, with
    `today`, a future one). `date_required`: the number must name a birth
    date (a known century digit, checked before the check digit, and a real
    date), for a caller that ranks by it."""
    iin = _digits(number, KZ_LENGTH)
    century = _IIN_CENTURY.get(iin[6])
    if date_required and century is None:
        raise PinError("iin_century_digit")
    if iin_check_digit(iin[:11]) != int(iin[11]):
        raise PinError("iin_check_digit")
    born: date | None = None
    sex: Sex | None = None
    if century is not None:
        year, sex = century
        try:
            born = date(year + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
        except ValueError:
            if date_required:
                raise PinError("pin_impossible_date") from None
        if born is not None and today is not None and born > today:
            born = None
    return PersonalNumber(iin, "KZ", born, sex)


def parse(number: str, country: str, today: date | None = None) -> PersonalNumber:
    """The country's personal number (digits only; see `digits_only`)."""
    if country == "KZ":
        return parse_kz_iin(number, today)
    if country == "KG":
        return parse_kg_pin(number, today)
    raise ValueError(f"unknown country {country!r}")


def birth_date(number: str, country: str) -> date:
    """The birth date a number names, for ranking: a KZ IIN must name one
    too (it is otherwise only a hint). Raises PinError."""
    if country == "KZ":
        born = parse_kz_iin(number, date_required=True).birth_date
        assert born is not None
        return born
    if country == "KG":
        return parse_kg_pin(number).birth_date  # type: ignore[return-value]
    raise ValueError(f"unknown country {country!r}")
