"""The queue's rules (DOMAIN.md sections 3 and 6): ranking, eligibility,
allocation and positions. Pure functions and dataclasses, no I/O; besides
the standard library only the shared pure rules (kezek.pin, kezek.categories,
workflows.rules): the queue service, the scenario runner, the import and the
benchmark all decide with this code.

Allocation is serial dictatorship over one common ranking: children are
taken in rank order and each gets the best of its preferred kindergartens
that still has a free place of its cohort and language. It is deterministic,
strategy-proof (listing true preferences is always best) and explainable:
every allocation carries the inputs that decided it.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from kezek import categories as kcat
from kezek import pin as kpin
from workflows.rules import DEFAULTS as WINDOWS


class DomainError(ValueError):
    """A request the rules do not allow; the message says why."""


class UnknownCategory(DomainError, KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of the args
        return self.args[0] if self.args else "unknown category"


GENERAL = kcat.GENERAL
MAX_PREFERENCES = 3  # kindergartens a parent may list (the Balalyk form has three)
EXTRAORDINARY = kcat.EXTRAORDINARY


# ---------------------------------------------------------------- policy


@dataclass(frozen=True)
class Category:
    code: str
    rank: int                       # lower ranks first; extraordinary right first, general last
    needs_confirmation: bool = False  # a caseworker must confirm the privilege


DEFAULT_CATEGORIES: tuple[Category, ...] = tuple(Category(*c) for c in kcat.DEFAULT_RANKING)

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


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
    country: str = "KG"

    def __post_init__(self) -> None:
        cats = tuple(c if isinstance(c, Category) else Category(**c) for c in self.categories)
        object.__setattr__(self, "categories", cats)
        codes = [c.code for c in cats]
        if len(set(codes)) != len(codes):
            raise DomainError("policy.categories: category codes must be unique")
        for c in cats:
            if not _CODE.match(c.code):
                raise DomainError(f"policy.categories: bad category code {c.code!r}")
        if GENERAL not in codes:
            # A rejected privilege sends the child back to the general queue,
            # so that category must always exist.
            raise DomainError("policy.categories: the 'general' category is required")
        general_rank = next(c.rank for c in cats if c.code == GENERAL)
        if any(c.rank > general_rank for c in cats):
            raise DomainError("policy.categories: no category may rank after 'general'")
        if self.min_age_years < 0 or self.min_age_years > 7:
            raise DomainError("policy.min_age_years: must be between 0 and 7")
        for name in ("confirm_working_days", "enrol_working_days", "certificate_valid_days",
                     "extension_days", "stoplist_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 366:
                raise DomainError(f"policy.{name}: must be a whole number of days between 0 and 366")
        if self.country not in ("KG", "KZ"):
            raise DomainError("policy.country: must be KG or KZ")

    def category(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise UnknownCategory(f"unknown category {code!r}; known: {', '.join(self.codes())}")

    def codes(self) -> list[str]:
        return [c.code for c in sorted(self.categories, key=lambda c: (c.rank, c.code))]

    def replace(self, **overrides: Any) -> "Policy":
        """A copy with some fields changed (a scenario's `policy:` block, an
        administrator's change); unknown names are refused."""
        known = {f.name for f in dataclasses.fields(self)}
        for name in overrides:
            if name not in known:
                raise DomainError(f"policy.{name}: unknown policy field; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["categories"] = [dataclasses.asdict(c) for c in self.categories]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Policy":
        return cls().replace(**dict(data))


DEFAULT_POLICY = Policy()


# ------------------------------------------------------------- applicants


class PlaceKey(NamedTuple):
    """Places belong to a kindergarten, a cohort and a language. A tuple:
    hashed and compared in C, since a national run looks up millions."""

    kindergarten: str
    cohort: int          # birth year
    language: str

    def __str__(self) -> str:
        return f"{self.kindergarten}/{self.cohort}/{self.language}"


@dataclass(frozen=True, slots=True)
class Applicant:
    """A child waiting in the queue, as the allocation sees it."""

    child_id: str
    birth_date: date
    category: str
    queue_date: datetime          # moment of submission, kept forever
    language: str
    preferences: tuple[str, ...]  # kindergarten ids, best first

    @property
    def cohort(self) -> int:
        return self.birth_date.year


def rank_key(a: Applicant, policy: Policy) -> tuple:
    """Category rank, then queue date, then the child id as a stable tie-break."""
    return (policy.category(a.category).rank, a.queue_date, a.child_id)


def min_age_date(birth_date: date, policy: Policy) -> date:
    """The first day on which the child has `min_age_years` full years.

    Born on 29 February: CIS civil codes end a term in years that falls in a
    month without the corresponding day on that month's last day, so in a
    common year the birthday counts as 28 February."""
    year = birth_date.year + policy.min_age_years
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def reached_min_age(birth_date: date, on: date, policy: Policy) -> bool:
    """True if the child has reached the minimum age (2 FULL years) on `on`."""
    return on >= min_age_date(birth_date, policy)


def latest_eligible_birth_date(on: date, policy: Policy) -> date:
    """Children born on or before this day have reached the minimum age on
    `on`: the same rule as `reached_min_age`, as a bound a query can use."""
    year = on.year - policy.min_age_years
    try:
        bound = on.replace(year=year)
    except ValueError:  # `on` is 29 February: born up to 29 Feb of a leap year
        bound = date(year, 2, 28)
    if on.month == 2 and on.day == 28 and _is_leap(year) and not _is_leap(on.year):
        # Born on 29 February of a leap year: its birthday in a common year
        # is 28 February (see min_age_date).
        bound = date(year, 2, 29)
    return bound


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# ------------------------------------------------------------- allocation

FreePlaces = Mapping[tuple[PlaceKey, "str | None"], int]


@dataclass(frozen=True)
class Allocation:
    child_id: str
    place: PlaceKey
    for_category: str | None   # the reserved pool the place came from (None = open place)
    preference_index: int      # 0 = first preference
    inputs: dict = field(compare=False)  # what decided it, for the audit trail and replay


def allocate(waiting: Iterable[Applicant], free: FreePlaces, on: date, policy: Policy) -> list[Allocation]:
    """Serial dictatorship over one common ranking.

    `waiting`: children with no live referral and not on the stop-list (the
    caller filters). `free`: free places per (place key, reserved category or
    None). Children are taken in rank order; those who have not reached the
    minimum age on `on` are skipped; each takes its best preference with a
    free place of its cohort and language, a place reserved for its own
    category before an open one. Deterministic; `free` is not changed."""
    ordered = sorted(waiting, key=lambda a: rank_key(a, policy))
    return list(allocate_ranked(ordered, free, on, policy))


def allocate_ranked(ranked: Iterable[Applicant], free: FreePlaces, on: date,
                    policy: Policy) -> Iterator[Allocation]:
    """`allocate` for children already in rank order (a database can sort a
    national queue faster than Python). The order is checked as the children
    arrive, and the stream is read only while free places remain, so the
    tail of a long queue is never loaded."""
    pools: dict[PlaceKey, dict[str | None, int]] = {}
    for (key, cat), n in free.items():
        if n < 0:
            raise DomainError(f"free places of {key} ({cat or 'open'}) cannot be negative")
        if n:
            pools.setdefault(key, {})[cat] = pools.get(key, {}).get(cat, 0) + n
    rank_of = {c.code: c.rank for c in policy.categories}
    seen_children: set[str] = set()
    previous: tuple | None = None
    served = 0
    eligible_up_to = latest_eligible_birth_date(on, policy)
    if not pools:
        return
    for a in ranked:
        try:
            key = (rank_of[a.category], a.queue_date, a.child_id)
        except KeyError:
            raise UnknownCategory(f"child {a.child_id}: unknown category {a.category!r}") from None
        if previous is not None and key <= previous:
            if a.child_id in seen_children:
                raise DomainError(f"child {a.child_id} is in the queue twice")
            raise DomainError(f"children are not in rank order at {a.child_id}")
        if a.child_id in seen_children:
            raise DomainError(f"child {a.child_id} is in the queue twice")
        previous = key
        seen_children.add(a.child_id)
        if a.birth_date > eligible_up_to:  # reached_min_age, as one comparison
            continue
        cohort, language, category = a.birth_date.year, a.language, a.category
        for index, kindergarten in enumerate(a.preferences):
            pool = pools.get((kindergarten, cohort, language))  # a PlaceKey is this tuple
            if pool is None:
                continue
            reserved = pool.get(category, 0)
            open_ = pool.get(None, 0)
            if not reserved and not open_:
                continue
            place = PlaceKey(kindergarten, cohort, language)
            taken = category if reserved else None
            pool[taken] -= 1
            if not pool[taken]:
                del pool[taken]
                if not pool:
                    del pools[place]
            served += 1
            queue_date = a.queue_date.isoformat()
            # Free places of each preference when the child's turn came: the
            # earlier ones had none the child could take (children ranked
            # ahead took them), which is why this one was given.
            seen = [{"kindergarten": k, "reserved": 0, "open": 0} for k in a.preferences[:index]]
            seen.append({"kindergarten": kindergarten, "reserved": reserved, "open": open_})
            yield Allocation(
                child_id=a.child_id, place=place, for_category=taken, preference_index=index,
                inputs={
                    "rank": [key[0], queue_date, a.child_id],
                    "category": category,
                    "queue_date": queue_date,
                    "birth_date": a.birth_date.isoformat(),
                    "cohort": cohort,
                    "language": language,
                    "preferences": list(a.preferences),
                    "on": on.isoformat(),
                    "min_age_years": policy.min_age_years,
                    "free_seen": seen,
                    "taken_from": "reserved" if taken else "open",
                    "served_before_in_run": served - 1,
                },
            )
            if not pools:
                return  # every place is taken: nobody further down can get one
            break


def groups_of(free: FreePlaces) -> list[tuple[int, str]]:
    """The (cohort, language) groups that have free places. A child competes
    only for places of its own cohort and language, so each group can be
    allocated on its own (and in parallel) with the same result."""
    return sorted({(key.cohort, key.language) for (key, _cat), n in free.items() if n > 0})


def replay(recorded: Iterable[Allocation], waiting: Iterable[Applicant], free: FreePlaces, on: date,
           policy: Policy) -> list[str]:
    """Recomputes a run from its recorded inputs; returns the differences
    (empty: it matches). The order of the record does not matter."""
    def sig(x: Allocation) -> tuple:
        return (str(x.place), x.for_category, x.preference_index)
    want = {x.child_id: sig(x) for x in recorded}
    got = {x.child_id: sig(x) for x in allocate(waiting, free, on, policy)}
    problems = []
    for child_id in sorted(set(want) | set(got)):
        if want.get(child_id) != got.get(child_id):
            problems.append(f"child {child_id}: recorded {want.get(child_id)}, recomputed {got.get(child_id)}")
    return problems


# -------------------------------------------------------------- positions


@dataclass(frozen=True)
class PositionExplanation:
    """Where a child stands for one kindergarten, and why."""

    child_id: str
    kindergarten: str
    cohort: int
    position: int                           # 1-based
    ahead: int                              # position - 1
    category: str
    queue_date: datetime
    ahead_by_category: dict[str, int]       # children of categories that rank first
    ahead_same_category_earlier: int        # same category, earlier queue date
    ahead_same_moment: int                  # same category and queue date, earlier tie-break

    def text(self) -> str:
        parts = [f"{n} in category {code}" for code, n in self.ahead_by_category.items() if n]
        if self.ahead_same_category_earlier:
            parts.append(f"{self.ahead_same_category_earlier} in category {self.category} "
                         f"with an earlier queue date")
        if self.ahead_same_moment:
            parts.append(f"{self.ahead_same_moment} in category {self.category} with the same "
                         f"queue date and an earlier registration number")
        why = "; ".join(parts) if parts else "nobody"
        return (f"Position {self.position} for {self.kindergarten} (cohort {self.cohort}): "
                f"{self.ahead} ahead: {why}.")


def _competitors(child: Applicant, kindergarten: str, waiting: Iterable[Applicant]) -> Iterator[Applicant]:
    cohort = child.cohort
    for w in waiting:
        if w.child_id != child.child_id and w.birth_date.year == cohort and kindergarten in w.preferences:
            yield w


def explain_position(child_id: str, waiting: Iterable[Applicant], policy: Policy,
                     kindergarten: str | None = None) -> PositionExplanation | None:
    """The child's rank among the children still waiting in the same cohort
    who list `kindergarten` (default: the child's first preference) among
    theirs. None if the child is not waiting or has no preference left."""
    waiting = list(waiting)
    child = next((w for w in waiting if w.child_id == child_id), None)
    if child is None or not child.preferences:
        return None
    kg = kindergarten if kindergarten is not None else child.preferences[0]
    mine = rank_key(child, policy)
    by_category: dict[str, int] = {}
    same_earlier = same_moment = 0
    for w in _competitors(child, kg, waiting):
        theirs = rank_key(w, policy)
        if theirs >= mine:
            continue
        if theirs[0] < mine[0]:
            by_category[w.category] = by_category.get(w.category, 0) + 1
        elif theirs[1] < mine[1]:
            same_earlier += 1
        else:
            same_moment += 1
    ordered = dict(sorted(by_category.items(), key=lambda kv: (policy.category(kv[0]).rank, kv[0])))
    ahead = sum(ordered.values()) + same_earlier + same_moment
    return PositionExplanation(
        child_id=child_id, kindergarten=kg, cohort=child.cohort, position=ahead + 1, ahead=ahead,
        category=child.category, queue_date=child.queue_date, ahead_by_category=ordered,
        ahead_same_category_earlier=same_earlier, ahead_same_moment=same_moment,
    )


def position(child_id: str, waiting: Iterable[Applicant], policy: Policy) -> int | None:
    """SCENARIOS.md: 1-based rank among the children still waiting in the same
    cohort who list the child's first preference among theirs; None if the
    child has no preference left (or is not waiting)."""
    explained = explain_position(child_id, waiting, policy)
    return explained.position if explained else None


def explain_positions(child_id: str, waiting: Iterable[Applicant], policy: Policy) -> list[PositionExplanation]:
    """The position for each of the child's preferences, best first."""
    waiting = list(waiting)
    child = next((w for w in waiting if w.child_id == child_id), None)
    if child is None:
        return []
    return [explain_position(child_id, waiting, policy, kg) for kg in child.preferences]  # type: ignore[misc]


# ----------------------------------------------------------- small rules


def mask_name(surname: str, name: str, patronymic: str | None = None) -> str:
    """The public queue shows initials only: "Asanov Aibek" -> "A***** A."."""
    def initial(word: str | None) -> str:
        word = (word or "").strip()
        return f"{word[0].upper()}." if word else ""
    s = (surname or "").strip()
    masked = f"{s[0].upper()}{'*' * (len(s) - 1)}" if s else ""
    return " ".join(p for p in (masked, initial(name), initial(patronymic)) if p)


_KG_MALFORMED = "pin: a Kyrgyz PIN is 14 digits starting with 1 or 2"
_KZ_MALFORMED = "pin: a Kazakh IIN is 12 digits"
_PIN_REFUSALS = {
    "KG": {"required": _KG_MALFORMED, "pin_format": _KG_MALFORMED, "pin_sex_digit": _KG_MALFORMED},
    "KZ": {"required": _KZ_MALFORMED, "pin_format": _KZ_MALFORMED,
           "iin_century_digit": "pin: the 7th digit of an IIN must be 1-6",
           "iin_check_digit": "pin: the IIN check digit does not match"},
}


def birth_date_from_pin(pin: str, country: str = "KG") -> date:
    """The birth date a personal number encodes (the rules: kezek/pin.py),
    which a Kazakh IIN must name too here: the queue ranks by it."""
    if country not in _PIN_REFUSALS:
        raise DomainError(f"country: unknown country {country!r}")
    try:
        return kpin.birth_date(pin or "", country)
    except kpin.PinError as e:
        raise DomainError(_PIN_REFUSALS[country].get(e.code, "pin: it names an impossible birth date")) from None
