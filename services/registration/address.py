"""The address registry adapter (DOMAIN.md section 2, step 3).

`AddressRegistry` is the interface; `ReferenceAddressRegistry` answers from
the reference data shipped with the project for the configured country
(kezek/reference/address_kg.json: Kyrgyz regions, Bishkek and Osh streets;
address_kz.json: Astana and Almaty, their districts and streets, in Kazakh
and Russian). A real registry (the state address bureau) is plugged in by
implementing the same methods.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from kezek import territories
from services.registration.domain import Address, FieldError, RegistrationRefused

REFERENCE_FILE = territories.reference_file("KG")
LANGUAGES = ("ky", "kk", "ru", "en")


@dataclass(frozen=True)
class Place:
    code: str
    names: dict[str, str]          # language -> official name
    lat: float | None = None
    lon: float | None = None

    def name(self, lang: str) -> str:
        return territories.name_in(self.names, lang)

    def as_dict(self, lang: str | None = None) -> dict:
        out: dict = {"code": self.code, "names": self.names}
        if lang:
            out["name"] = self.name(lang)
        if self.lat is not None:
            out["lat"], out["lon"] = self.lat, self.lon
        return out


@dataclass(frozen=True)
class ResolvedAddress:
    region: Place
    district: Place
    settlement: Place
    street: Place
    house: str
    flat: str | None

    @property
    def lat(self) -> float | None:
        return self.street.lat if self.street.lat is not None else self.settlement.lat

    @property
    def lon(self) -> float | None:
        return self.street.lon if self.street.lon is not None else self.settlement.lon

    def as_dict(self) -> dict:
        return {
            "region": self.region.code, "district": self.district.code,
            "settlement": self.settlement.code, "street": self.street.code,
            "house": self.house, "flat": self.flat, "lat": self.lat, "lon": self.lon,
            "names": {lang: self.line(lang) for lang in LANGUAGES},
        }

    def line(self, lang: str) -> str:
        parts = [self.region.name(lang), self.district.name(lang), self.settlement.name(lang),
                 self.street.name(lang), self.house]
        if self.flat:
            parts.append(self.flat)
        seen: list[str] = []
        for p in parts:  # "Osh city, Osh city, Osh" reads badly: drop repeats
            if p not in seen:
                seen.append(p)
        return ", ".join(seen)


class AddressRegistry(Protocol):
    def regions(self) -> list[Place]: ...
    def districts(self, region: str) -> list[Place]: ...
    def settlements(self, district: str) -> list[Place]: ...
    def streets(self, settlement: str, query: str = "") -> list[Place]: ...
    def resolve(self, address: Address) -> ResolvedAddress: ...


_STREET_WORDS = re.compile(
    r"\b(ул|улица|пр|пр-т|проспект|проспекти|бульвар|бульвары|б-р|көчөсү|көч|көшесі|көш|даңғылы|даңғ|"
    r"street|st|avenue|ave|boulevard)\b\.?",
    re.IGNORECASE)


def street_key(name: str) -> str:
    """Compares street names the way a person reads them: without "street",
    "улица", "көчөсү" and the like, case and punctuation."""
    s = _STREET_WORDS.sub(" ", name.lower().replace("ё", "е"))
    s = re.sub(r"[^\w]+", " ", s)
    return " ".join(sorted(s.split()))


class ReferenceAddressRegistry:
    def __init__(self, path: Path | None = None, *, country: str = "KG"):
        self.path = path or territories.reference_file(country)

    @cached_property
    def _data(self) -> dict:
        return json.loads(self.path.read_text(encoding="utf-8"))

    @staticmethod
    def _place(raw: dict) -> Place:
        return Place(raw["code"], {k: raw[k] for k in LANGUAGES if k in raw},
                     raw.get("lat"), raw.get("lon"))

    @cached_property
    def _index(self) -> dict:
        regions, districts, settlements, streets = {}, {}, {}, {}
        for r in self._data["regions"]:
            regions[r["code"]] = (self._place(r), [d["code"] for d in r["districts"]])
            for d in r["districts"]:
                districts[d["code"]] = (self._place(d), r["code"], [s["code"] for s in d["settlements"]])
                for s in d["settlements"]:
                    settlements[s["code"]] = (self._place(s), s.get("streets"))
        for key, rows in self._data["streets"].items():
            streets[key] = [self._place(row) for row in rows]
        return {"regions": regions, "districts": districts, "settlements": settlements, "streets": streets}

    def regions(self) -> list[Place]:
        return [p for p, _ in self._index["regions"].values()]

    def districts(self, region: str) -> list[Place]:
        entry = self._index["regions"].get(region)
        return [self._index["districts"][c][0] for c in entry[1]] if entry else []

    def settlements(self, district: str) -> list[Place]:
        entry = self._index["districts"].get(district)
        return [self._index["settlements"][c][0] for c in entry[2]] if entry else []

    def streets(self, settlement: str, query: str = "") -> list[Place]:
        entry = self._index["settlements"].get(settlement)
        if not entry or not entry[1]:
            return []
        rows = self._index["streets"].get(entry[1], [])
        q = query.strip().lower()
        return [s for s in rows if not q or any(q in n.lower() for n in s.names.values())]

    def _find_street(self, settlement: str, given: str) -> Place | None:
        rows = self.streets(settlement)
        for s in rows:
            if s.code == given:
                return s
        key = street_key(given)
        for s in rows:
            if key and any(street_key(n) == key for n in s.names.values()):
                return s
        return None

    def resolve(self, address: Address) -> ResolvedAddress:
        idx = self._index
        region = idx["regions"].get(address.region)
        if region is None:
            raise RegistrationRefused([FieldError("address.region", "address_unknown_region")])
        district = idx["districts"].get(address.district)
        if district is None or district[1] != address.region:
            raise RegistrationRefused([FieldError("address.district", "address_unknown_district")])
        if address.settlement not in district[2]:
            raise RegistrationRefused([FieldError("address.settlement", "address_unknown_settlement")])
        settlement = idx["settlements"][address.settlement][0]
        street = self._find_street(address.settlement, address.street)
        if street is None:
            # The Balalyk instructions: a street the registry does not know is
            # most often named differently there; the parent should check its
            # official name at a public service centre.
            raise RegistrationRefused([FieldError("address.street", "address_unknown_street")])
        return ResolvedAddress(region[0], district[0], settlement, street, address.house, address.flat)
