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


def shared_hits(engine, key: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(f"SELECT coalesce(sum(hits), 0) FROM {TABLE} WHERE key = :k"), {"k": key}).scalar()


def test_batched_counts_reach_the_database_once_a_flush_is_due(tmp_path):
    clock = Clock()
    first, engine = store(tmp_path, clock)
    limits = RateLimits(engine, first.table, clock=clock, flush_seconds=1.0)
    assert [limits.hit("parent:1", 300) for _ in range(15)] == [0.0] * 15
    assert shared_hits(engine, "parent:1") == 0                # counted in memory only (far from 300)
    clock.now += 1
    assert limits.hit("parent:1", 300) == 0.0                  # due: the 16 reach the shared row
    assert shared_hits(engine, "parent:1") == 16


def test_batched_counting_refuses_at_the_limit_exactly_and_sees_other_replicas_after_a_flush(tmp_path):
    clock = Clock()
    first, engine = store(tmp_path, clock)
    a = RateLimits(engine, first.table, clock=clock, flush_seconds=1.0)
    b = RateLimits(engine, first.table, clock=clock, flush_seconds=1.0)
    assert [a.hit("parent:2", 5) for _ in range(5)] == [0.0] * 5
    assert a.hit("parent:2", 5) > 0                             # the sixth, on the replica that counted
    assert shared_hits(engine, "parent:2") == 6                 # reaching the limit flushed at once
    clock.now += 1
    assert b.hit("parent:2", 5) > 0                             # the other replica learns it at its flush


def test_batched_replicas_alternating_on_one_key_pass_its_limit_by_at_most_a_hit_each(tmp_path):
    clock = Clock()                                             # no flush falls due by time
    first, engine = store(tmp_path, clock)
    replicas = [RateLimits(engine, first.table, clock=clock, flush_seconds=60.0) for _ in range(3)]
    waits = [replicas[n % 3].hit("address:10.0.0.1", 100) for n in range(150)]
    allowed = waits.count(0.0)
    assert 100 <= allowed <= 100 + len(replicas) and all(w > 0 for w in waits[allowed + 3:])


def test_a_flush_of_any_number_of_keys_is_one_statement_text_its_totals_right(tmp_path):
    """Issue 15: the rows are parameters of one upsert, compiled once, not
    inline values (each flush a statement of its own to compile, about 2 ms
    of CPU); the driver gets them as one multi-row statement."""
    clock = Clock()
    limits, engine = store(tmp_path, clock)
    limits.flush_seconds = 3600
    upserts: list = []
    sa.event.listen(engine, "after_cursor_execute", lambda conn, cur, stmt, params, context, many: upserts.append(
        (context.compiled, stmt.count("(?, ?, ?)"))) if stmt.lstrip().upper().startswith("INSERT") else None)
    for keys in (2, 5):
        for n in range(keys):
            for _ in range(n + 1):
                limits.hit(f"k{n}", 10_000)
        limits.flush()
    assert [rows for _, rows in upserts] == [2, 5]
    assert upserts[0][0] is upserts[1][0]
    with engine.connect() as conn:
        hits = dict(conn.execute(sa.text(f"SELECT key, hits FROM {TABLE}")).all())
    assert hits == {"k0": 2, "k1": 4, "k2": 3, "k3": 4, "k4": 5}


def test_a_hit_counted_in_memory_is_refused_with_nothing_counted_when_it_must_reach_the_database(tmp_path):
    """For a caller on the event loop (issue 15): `hit_in_memory` answers as
    `hit` would while the counts stay in memory, and leaves the hit that
    must flush (by the timer or near the limit) to `hit`."""
    clock = Clock()
    first, engine = store(tmp_path, clock)
    limits = RateLimits(engine, first.table, clock=clock, flush_seconds=1.0)
    limits.flush()
    assert [limits.hit_in_memory("draft:1", 60) for _ in range(2)] == [0.0, 0.0]
    assert limits.hit_in_memory("draft:1", 60) is None          # the third nears the limit: a flush
    assert limits.hit("draft:1", 60) == 0.0 and shared_hits(engine, "draft:1") == 3
    assert limits.hit_in_memory("parent:1", 300) == 0.0
    clock.now += 1
    assert limits.hit_in_memory("parent:1", 300) is None        # due by the timer
    assert limits.hit("parent:1", 300) == 0.0 and shared_hits(engine, "parent:1") == 2
    # Over the limit: answered from memory, as `hit` answers it.
    small = RateLimits(engine, first.table, clock=clock, flush_seconds=1.0)
    assert [small.hit("k", 1) for _ in range(2)][1] > 0
    assert small.hit_in_memory("k", 1) > 0
    assert RateLimits(engine, first.table, clock=clock).hit_in_memory("k", 1) is None   # unbatched: always the database


def test_the_gateway_never_waits_for_the_rate_limits_database_on_its_event_loop(tmp_path):
    """A family nearing its limit makes its count reach the shared rows at
    once (so replicas agree before anyone is refused): that flush runs in a
    worker thread, not on the loop every request of the worker shares."""
    import asyncio
    import threading

    from services.gateway.limits import GatewayLimits

    clock = Clock()
    first, engine = store(tmp_path, clock)
    limits = RateLimits(engine, first.table, clock=clock, flush_seconds=1.0)
    limits.flush()
    flushed_on = []
    flush = limits.flush

    def watched(now=None):
        flushed_on.append(threading.current_thread())
        flush(now)

    limits.flush = watched
    gateway = GatewayLimits(limits, None, None, None)

    async def family_polls():
        return [await gateway.hit("parent:1", 3) for _ in range(4)], threading.current_thread()

    waits, loop_thread = asyncio.run(family_polls())
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0
    assert flushed_on and loop_thread not in flushed_on
    assert shared_hits(engine, "parent:1") == 4      # every request counted, the refused one too
