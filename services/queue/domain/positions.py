"""Positions (DOMAIN.md section 3): where a waiting child stands for a
kindergarten, and why (who is ahead by category, by an earlier queue date,
by the tie-break)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from services.queue.domain.policy import Policy
from services.queue.domain.ranking import Applicant, rank_key

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


def first_preference_positions(ranked: Iterable[tuple[str, tuple[str, ...]]]) -> Iterator[tuple[str, str, int]]:
    """(child, its first preference, its position there) for children of one
    cohort given in rank order as (child, preferences): each child's rank
    among those ahead of it who list that kindergarten too (`position`, for
    a whole cohort in one pass)."""
    seen: Counter = Counter()
    for child_id, preferences in ranked:
        for k in preferences:
            seen[k] += 1
        if preferences:
            yield child_id, preferences[0], seen[preferences[0]]
