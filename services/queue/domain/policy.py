"""The policy: the rules an administrator may change without a code change
(categories with their rank and whether a caseworker confirms them, the
minimum age and school age, the referral windows, the stop-list, the country)."""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kezek import categories as kcat
from services.queue.domain.refusals import Invalid, UnknownCategory
from workflows.rules import DEFAULTS as WINDOWS

GENERAL = kcat.GENERAL
EXTRAORDINARY = kcat.EXTRAORDINARY


@dataclass(frozen=True)
class Category:
    code: str
    rank: int                       # lower ranks first; extraordinary right first, general last
    needs_confirmation: bool = False  # a caseworker must confirm the privilege


DEFAULT_CATEGORIES: tuple[Category, ...] = tuple(Category(*c) for c in kcat.DEFAULT_RANKING)

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_DAYS = ("confirm_working_days", "enrol_working_days", "certificate_valid_days", "extension_days", "stoplist_days")


def _invalid(code: str, name: str, **params: Any) -> Invalid:
    return Invalid(code, field=f"policy.{name}", name=name, **params)


@dataclass(frozen=True)
class Policy:
    """The rules an administrator may change without a code change."""

    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    min_age_years: int = 2
    # The referral's windows (defaults: workflows/rules.py).
    confirm_working_days: int = WINDOWS.confirm_working_days
    enrol_working_days: int = WINDOWS.enrol_working_days
    certificate_valid_days: int = WINDOWS.certificate_valid_days
    extension_days: int = WINDOWS.extension_days
    stoplist_days: int = WINDOWS.stoplist_days
    # A waiting child leaves the queue at 00:00 of this birthday (domain/ageing.py).
    school_age_years: int = WINDOWS.school_age_years
    country: str = "KG"

    def __post_init__(self) -> None:
        cats = _categories(self.categories)
        object.__setattr__(self, "categories", cats)
        codes = [c.code for c in cats]
        if len(set(codes)) != len(codes):
            raise _invalid("policy_category_codes_repeated", "categories")
        for c in cats:
            if not _CODE.match(c.code):
                raise _invalid("policy_category_code_bad", "categories", code=c.code)
        if GENERAL not in codes:
            # A rejected privilege sends the child back to the general queue,
            # so that category must always exist.
            raise _invalid("policy_general_missing", "categories")
        general_rank = next(c.rank for c in cats if c.code == GENERAL)
        if any(c.rank > general_rank for c in cats):
            raise _invalid("policy_general_not_last", "categories")
        if not _whole(self.min_age_years) or not 0 <= self.min_age_years <= 7:
            raise _invalid("policy_min_age_out_of_range", "min_age_years")
        if not _whole(self.school_age_years) or not self.min_age_years < self.school_age_years <= 10:
            raise _invalid("policy_school_age_out_of_range", "school_age_years", min_age_years=self.min_age_years)
        for name in _DAYS:
            value = getattr(self, name)
            if not _whole(value) or value < 0 or value > 366:
                raise _invalid("policy_days_out_of_range", name)
        if not isinstance(self.country, str) or self.country not in ("KG", "KZ"):
            raise _invalid("policy_country_unknown", "country")

    def category(self, code: str, *, field: str = "category") -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise UnknownCategory(code, self.codes(), field=field)

    def codes(self) -> list[str]:
        return [c.code for c in sorted(self.categories, key=lambda c: (c.rank, c.code))]

    def ranks(self) -> dict[str, int]:
        return {c.code: c.rank for c in self.categories}

    def replace(self, **overrides: Any) -> "Policy":
        """A copy with some fields changed (a scenario's `policy:` block, an
        administrator's change); unknown names are refused."""
        known = {f.name for f in dataclasses.fields(self)}
        for name in overrides:
            if name not in known:
                raise _invalid("policy_field_unknown", name, known=", ".join(sorted(known)))
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["categories"] = [dataclasses.asdict(c) for c in self.categories]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Policy":
        return cls().replace(**dict(data))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(given: Any) -> tuple[Category, ...]:
    """Categories as given by an administrator (or stored): each a code, a
    whole-number rank and whether a caseworker confirms it."""
    try:
        cats = tuple(c if isinstance(c, Category) else Category(**c) for c in given)
    except TypeError:
        raise _invalid("policy_category_bad", "categories") from None
    for c in cats:
        if not isinstance(c.code, str) or not _whole(c.rank) or not 0 <= c.rank <= 1_000_000 \
                or not isinstance(c.needs_confirmation, bool):
            raise _invalid("policy_category_bad", "categories")
    return cats


DEFAULT_POLICY = Policy()
