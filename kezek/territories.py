"""The territories of each country, named: regions, districts and
settlements by their codes (SOATE in Kyrgyzstan, 14 digits; KATO in
Kazakhstan, 9), with their names in the country's languages. The reference
data ships with the project (`reference/address_<country>.json`, which also
holds the streets the registration service's address registry knows), so
every service can show a district's name instead of its code."""
from __future__ import annotations

import functools
import json
from pathlib import Path

REFERENCE_DIR = Path(__file__).parent / "reference"
COUNTRIES = ("KG", "KZ")
# A name missing in the reader's language: the nearest one the data has.
FALLBACK = {"ky": ("ru",), "kk": ("ru",), "ru": (), "en": ("ru",)}   # Russian: read in both countries


def reference_file(country: str) -> Path:
    return REFERENCE_DIR / f"address_{country.lower()}.json"


@functools.cache
def reference(country: str) -> dict:
    return json.loads(reference_file(country).read_text(encoding="utf-8"))


def name_in(names: dict[str, str], lang: str) -> str:
    for candidate in (lang, *FALLBACK.get(lang, ()), "ru"):
        if names.get(candidate):
            return names[candidate]
    return next(iter(names.values()), "")


@functools.cache
def _names() -> dict[str, dict[str, str]]:
    """Every region, district and settlement code of every country -> its names."""
    out: dict[str, dict[str, str]] = {}
    for country in COUNTRIES:
        for region in reference(country)["regions"]:
            out.setdefault(region["code"], _langs(region))
            for district in region["districts"]:
                out.setdefault(district["code"], _langs(district))
    return out


def _langs(raw: dict) -> dict[str, str]:
    return {k: raw[k] for k in ("ky", "kk", "ru", "en") if raw.get(k)}


def district_name(code: str | None, lang: str) -> str:
    """The name of a district (or region) in `lang`; the code itself when
    the reference data does not know it (a registry newer than the data)."""
    if not code:
        return ""
    names = _names().get(str(code))
    return name_in(names, lang) if names else str(code)


def districts(country: str) -> list[tuple[str, dict[str, str]]]:
    """(code, names) of every district of a country, region by region."""
    return [(d["code"], _langs(d)) for r in reference(country)["regions"] for d in r["districts"]]
