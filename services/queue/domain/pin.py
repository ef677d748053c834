"""The birth date a child's personal number encodes (the rules: kezek/pin.py),
as the queue's refusals: a Kazakh IIN must name a date here too, since the
queue ranks and allocates by it."""
from __future__ import annotations

from datetime import date

from kezek import pin as kpin
from services.queue.domain.refusals import Invalid

# kezek.pin's codes, as the queue words them for each country.
_CODES = {
    "KG": {"required": "pin_format_kg", "pin_format": "pin_format_kg", "pin_sex_digit": "pin_format_kg"},
    "KZ": {"required": "pin_format_kz", "pin_format": "pin_format_kz", "iin_century_digit": "pin_century_digit",
           "iin_check_digit": "pin_check_digit"},
}


def birth_date_from_pin(pin: str, country: str = "KG") -> date:
    """KG: sex digit (1 female, 2 male), DDMMYYYY, a 5-digit serial, 14 digits.
    KZ (IIN): YYMMDD, a century/sex digit (1-6), a serial and a mod-11 check
    digit, 12 digits."""
    if country not in _CODES:
        raise Invalid("pin_country_unknown", field="pin", country=country)
    try:
        return kpin.birth_date(pin or "", country)
    except kpin.PinError as e:
        raise Invalid(_CODES[country].get(e.code, "pin_impossible_date"), field="pin") from None
