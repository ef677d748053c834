"""DOMAIN.md section 6 invariants, proved over random queues, places and
event orders with hypothesis. A small in-memory register (places, live
referrals, stop-list) drives the real allocation after every event, the way
the service does, and the invariants are checked after each step."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.queue.domain import (
    DEFAULT_POLICY, Applicant, PlaceKey, allocate, allocate_ranked, position, rank_key, reached_min_age,
)

P = DEFAULT_POLICY
KGS = ("sun", "moon", "star", "sky")
CATS = ("general", "general", "privileged", "extraordinary")
ON = date(2027, 3, 1)


@st.composite
def applicants(draw, max_size=14):
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        born = date(2024, 1, 1) + timedelta(days=draw(st.integers(-500, 600)))
        qd = datetime(2025, 1, 1, 9) + timedelta(hours=draw(st.integers(0, 40)))  # ties happen
        prefs = draw(st.lists(st.sampled_from(KGS), max_size=3, unique=True))
        out.append(Applicant(f"c{i:02d}", born, draw(st.sampled_from(CATS)), qd,
                             draw(st.sampled_from(("ru", "ky"))), tuple(prefs)))
    return out


@st.composite
def free_places(draw):
    items = draw(st.lists(st.tuples(st.sampled_from(KGS), st.sampled_from((2022, 2023, 2024, 2025)),
                                    st.sampled_from(("ru", "ky")), st.sampled_from((None, None, "privileged")),
                                    st.integers(0, 3)), max_size=10))
    free: dict = {}
    for kg, cohort, lang, cat, n in items:
        key = (PlaceKey(kg, cohort, lang), cat)
        free[key] = free.get(key, 0) + n
    return free


def can_take(a: Applicant, pool_cat) -> bool:
    return pool_cat is None or pool_cat == a.category


def wants(a: Applicant, key: PlaceKey, on: date) -> bool:
    return (key.kindergarten in a.preferences and a.cohort == key.cohort and a.language == key.language
            and reached_min_age(a.birth_date, on, P))


def check_run(waiting, free, got, on):
    """The invariants of one allocation run."""
    by_child = {x.child_id: x for x in got}
    # A child gets at most one place.
    assert len(by_child) == len(got)
    # No place is given twice: never more allocations from a pool than it had.
    used = Counter((x.place, x.for_category) for x in got)
    for pool, n in used.items():
        assert n <= free.get(pool, 0)
    left = {pool: free[pool] - used.get(pool, 0) for pool in free}
    kids = {a.child_id: a for a in waiting}
    for x in got:
        a = kids[x.child_id]
        assert reached_min_age(a.birth_date, on, P)
        assert a.preferences[x.preference_index] == x.place.kindergarten
        assert (x.place.cohort, x.place.language) == (a.cohort, a.language)
        assert can_take(a, x.for_category)
    # No child passed over: a place left free has no eligible waiting child
    # without a place who wants it...
    for (key, cat), n in left.items():
        if n > 0:
            for a in waiting:
                if a.child_id not in by_child and wants(a, key, on) and can_take(a, cat):
                    raise AssertionError(f"{key} left free while {a.child_id} waits for it")
    # ...and no child got a place that a higher-ranked eligible child wanted
    # more than what that child got.
    for x in got:
        mine = rank_key(kids[x.child_id], P)
        for d in waiting:
            if rank_key(d, P) < mine and wants(d, x.place, on) and can_take(d, x.for_category):
                theirs = by_child.get(d.child_id)
                wanted_at = d.preferences.index(x.place.kindergarten)
                assert theirs is not None and theirs.preference_index <= wanted_at, (
                    f"{x.child_id} got {x.place} before higher-ranked {d.child_id}")


@settings(max_examples=200, deadline=None)
@given(applicants(), free_places(), st.integers(-400, 400))
def test_allocation_run_never_gives_a_place_twice_nor_passes_a_child_over(waiting, free, shift):
    on = ON + timedelta(days=shift)
    got = allocate(waiting, free, on, P)
    check_run(waiting, free, got, on)


@settings(max_examples=150, deadline=None)
@given(applicants(), free_places(), st.randoms(use_true_random=False))
def test_allocation_does_not_depend_on_the_order_children_are_given(waiting, free, rnd):
    shuffled = list(waiting)
    rnd.shuffle(shuffled)
    assert allocate(shuffled, free, ON, P) == allocate(waiting, free, ON, P)


@settings(max_examples=150, deadline=None)
@given(applicants(), free_places())
def test_ranked_stream_allocates_exactly_like_the_sorted_list(waiting, free):
    ranked = sorted(waiting, key=lambda a: rank_key(a, P))
    assert list(allocate_ranked(ranked, free, ON, P)) == allocate(waiting, free, ON, P)


@settings(max_examples=150, deadline=None)
@given(applicants())
def test_positions_follow_the_ranking_among_children_sharing_a_first_preference(waiting):
    groups: dict = {}
    for a in waiting:
        pos = position(a.child_id, waiting, P)
        if not a.preferences:
            assert pos is None
            continue
        groups.setdefault((a.preferences[0], a.cohort), []).append((rank_key(a, P), pos))
    # Children with the same first preference and cohort compete for it: their
    # positions are distinct and ordered exactly as their ranks.
    for ranked in groups.values():
        ranked.sort()
        positions = [pos for _, pos in ranked]
        assert positions == sorted(set(positions))


# ------------------------------------------------ event orders (the register)

@dataclass
class Register:
    """The service's state, in memory: applications, places, referrals."""

    kids: dict[str, Applicant]
    status: dict[str, str] = field(default_factory=dict)      # queued|referred|enrolled|paused|removed
    free: Counter = field(default_factory=Counter)             # (PlaceKey, cat) -> free
    published: Counter = field(default_factory=Counter)
    enrolled: Counter = field(default_factory=Counter)
    live: dict[str, tuple] = field(default_factory=dict)       # child -> (PlaceKey, cat)
    on: date = ON

    def waiting(self) -> list[Applicant]:
        return [a for c, a in self.kids.items() if self.status[c] == "queued"]

    def run(self) -> None:
        waiting = self.waiting()
        free = dict(self.free)
        got = allocate(waiting, free, self.on, P)
        check_run(waiting, free, got, self.on)
        for x in got:
            pool = (x.place, x.for_category)
            assert x.child_id not in self.live
            self.free[pool] -= 1
            self.live[x.child_id] = pool
            self.status[x.child_id] = "referred"

    def return_place(self, cid: str) -> tuple:
        pool = self.live.pop(cid)
        self.free[pool] += 1
        return pool

    def apply(self, event: tuple) -> None:
        kind, arg = event
        ids = sorted(self.kids)
        if kind == "publish":
            self.free[arg[0]] += arg[1]
            self.published[arg[0]] += arg[1]
        elif kind == "withdraw":
            pool, n = arg
            n = min(n, self.free[pool])   # only free places can be withdrawn
            self.free[pool] -= n
            self.published[pool] -= n
        elif kind == "day":
            self.on += timedelta(days=arg)
        elif ids:
            cid = ids[arg % len(ids)]
            st_ = self.status[cid]
            if kind == "cancel" and st_ == "referred":
                pool = self.return_place(cid)
                a = self.kids[cid]
                self.kids[cid] = replace(a, preferences=tuple(k for k in a.preferences
                                                               if k != pool[0].kindergarten))
                self.status[cid] = "queued"
            elif kind == "expire" and st_ == "referred":
                self.return_place(cid)
                self.status[cid] = "paused"
            elif kind == "resume" and st_ == "paused":
                self.status[cid] = "queued"
            elif kind == "reject" and self.kids[cid].category != "general" and st_ in ("queued", "referred"):
                if st_ == "referred":
                    self.return_place(cid)
                self.kids[cid] = replace(self.kids[cid], category="general")
                self.status[cid] = "queued"
            elif kind == "enrol" and st_ == "referred":
                pool = self.live.pop(cid)
                self.enrolled[pool] += 1
                self.status[cid] = "enrolled"
            elif kind == "remove" and st_ in ("queued", "paused", "referred"):
                if st_ == "referred":
                    self.return_place(cid)
                self.status[cid] = "removed"
        self.run()

    def check(self) -> None:
        held = Counter(self.live.values())
        for pool in set(self.published) | set(self.free) | set(held) | set(self.enrolled):
            # A place is free, held by one live referral or taken by one
            # enrolled child: the three never add up to more than published.
            assert self.free[pool] >= 0
            assert self.free[pool] + held[pool] + self.enrolled[pool] == self.published[pool]
        # At most one live referral per child, and only referred children hold one.
        assert set(self.live) == {c for c, s in self.status.items() if s == "referred"}
        # Nobody waits for a place that is free (the run after each event saw to it).
        for (key, cat), n in self.free.items():
            if n > 0:
                for a in self.waiting():
                    assert not (wants(a, key, self.on) and can_take(a, cat))


pools = st.tuples(st.sampled_from(KGS), st.sampled_from((2023, 2024, 2025)), st.sampled_from(("ru", "ky")),
                  st.sampled_from((None, None, "privileged", "extraordinary"))).map(
    lambda t: (PlaceKey(t[0], t[1], t[2]), t[3]))
events = st.one_of(
    st.tuples(st.just("publish"), st.tuples(pools, st.integers(1, 3))),
    st.tuples(st.just("withdraw"), st.tuples(pools, st.integers(1, 3))),
    st.tuples(st.just("day"), st.integers(1, 200)),
    st.tuples(st.sampled_from(("cancel", "expire", "resume", "reject", "enrol", "remove")), st.integers(0, 50)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(applicants(max_size=12), st.lists(events, max_size=25))
def test_invariants_hold_after_every_event_in_any_order(kids, steps):
    reg = Register({a.child_id: a for a in kids})
    reg.status = {c: "queued" for c in reg.kids}
    reg.run()
    reg.check()
    for event in steps:
        reg.apply(event)
        reg.check()
