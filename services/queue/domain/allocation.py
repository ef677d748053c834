"""Allocation (DOMAIN.md section 3): serial dictatorship over one common
ranking. Children are taken in rank order and each gets the best of its
preferred kindergartens that still has a free place of its cohort and
language. Deterministic, strategy-proof (listing true preferences is always
best) and explainable: every allocation carries the inputs that decided it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date

from services.queue.domain.ageing import latest_school_age_birth_date
from services.queue.domain.policy import Policy
from services.queue.domain.ranking import Applicant, PlaceKey, latest_eligible_birth_date, rank_key
from services.queue.domain.refusals import DomainError, UnknownCategory

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
    minimum age on `on`, or have reached school age (left the queue at its
    00:00, though a run may come before the day's ageing job), are skipped; each takes its best preference with a
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
    school_age_from = latest_school_age_birth_date(on, policy)
    if not pools:
        return
    for a in ranked:
        try:
            key = (rank_of[a.category], a.queue_date, a.child_id)
        except KeyError:
            raise UnknownCategory(a.category, policy.codes(), field=None) from None
        if previous is not None and key <= previous:
            if a.child_id in seen_children:
                raise DomainError(f"child {a.child_id} is in the queue twice")
            raise DomainError(f"children are not in rank order at {a.child_id}")
        if a.child_id in seen_children:
            raise DomainError(f"child {a.child_id} is in the queue twice")
        previous = key
        seen_children.add(a.child_id)
        if a.birth_date > eligible_up_to or a.birth_date <= school_age_from:  # reached_min_age, reached_school_age
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
