"""Rate limits in a store every replica shares (kezek/ratelimit.py): a fixed
window per key, counted in the database; a key over its limit is answered
from memory until its window ends."""
from __future__ import annotations

import sqlalchemy as sa

from kezek.ratelimit import TABLE, RateLimits


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(tmp_path, clock):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    metadata = sa.MetaData()
    table = RateLimits.table_in(metadata)
    metadata.create_all(engine)
    return RateLimits(engine, table, clock=clock), engine


def test_a_key_gets_its_limit_per_window_then_waits_for_the_next(tmp_path):
    clock = Clock(1_800_000_000.0 + 15)
    limits, _ = store(tmp_path, clock)
    assert [limits.hit("a", 3, window=60) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.hit("a", 3, window=60) == 45.0          # until the window's end
    assert limits.hit("b", 3, window=60) == 0.0           # another key: its own count
    clock.now += 45
    assert limits.hit("a", 3, window=60) == 0.0


def test_replicas_on_one_database_share_the_count(tmp_path):
    clock = Clock()
    first, engine = store(tmp_path, clock)
    second = RateLimits(engine, first.table, clock=clock)
    waits = [(first if n % 2 else second).hit("parent:1", 4) for n in range(6)]
    assert waits[:4] == [0.0] * 4 and all(w > 0 for w in waits[4:])


def test_a_key_over_its_limit_costs_the_database_nothing_more(tmp_path):
    clock = Clock()
    limits, engine = store(tmp_path, clock)
    for _ in range(5):
        limits.hit("flood", 2)
    with engine.connect() as c:
        assert c.execute(sa.text(f"SELECT hits FROM {TABLE}")).scalar_one() == 3


def test_long_keys_are_kept_short_and_distinct(tmp_path):
    limits, engine = store(tmp_path, Clock())
    limits.hit("x" * 500 + "1", 1)
    assert limits.hit("x" * 500 + "2", 1) == 0.0
    with engine.connect() as c:
        assert all(len(k) <= 100 for (k,) in c.execute(sa.text(f"SELECT key FROM {TABLE}")))
