"""Several relays on one outbox, on real PostgreSQL and Kafka: each row is
published once while they run (they claim rows), a relay that fails
mid-batch loses its claim to another, and one aggregate's events reach the
topic in order whatever the relays do: a consumer that drops repeats sees
0, 1, 2 ... for every key. A relay reads from its floor, which never
passes a row whose transaction may still commit, nor a row it left unsent
behind another relay's."""
from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import DeclarativeBase

from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.events import Event
from kezek.infra.kafka import ensure_topics
from kezek.outbox import Outbox
from kezek.relay import Floor, OutboxRelay
from services.gateway.public.tools import read_topic

pytestmark = pytest.mark.integration

KEYS = 30
PER_KEY = 20


class Base(DeclarativeBase):
    pass


outbox = Outbox(Base.metadata, source="relaytest")


@pytest.fixture
def env(pg_url, kafka_bootstrap):
    engine = make_engine(pg_url("relays"))
    Base.metadata.create_all(engine)
    prefix = f"r{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [f"{prefix}.backbone"], partitions=3)
    sessions = make_session_factory(engine)
    # Events of 30 aggregates, interleaved at random, 0..19 each.
    order = [k for k in range(KEYS) for _ in range(PER_KEY)]
    random.Random(14).shuffle(order)
    written = {k: 0 for k in range(KEYS)}
    with unit_of_work(sessions) as s:
        for k in order:
            outbox.add(s, "backbone.probe.v1", f"agg-{k}", {"probe_id": f"agg-{k}", "note": str(written[k])})
            written[k] += 1
    yield sessions, kafka_bootstrap, prefix
    engine.dispose()


def relay(env, batch_size: int = 16, cls=OutboxRelay, **kw) -> OutboxRelay:
    sessions, bootstrap, prefix = env
    return cls(sessions, outbox, bootstrap, prefix, batch_size=batch_size, **kw)


def unsent(env) -> int:
    with env[0]() as s:
        return outbox.pending(s)


def topic(env) -> list[Event]:
    _, bootstrap, prefix = env
    return [Event.from_json(r.value) for r in read_topic(bootstrap, f"{prefix}.backbone", timeout=60)]


def first_seen_in_order(events: list[Event]) -> dict[str, list[int]]:
    """What a consumer that drops repeats by event id sees, per key (one
    key is one partition, read in offset order)."""
    seen, out = set(), {}
    for e in events:
        if e.id not in seen:
            seen.add(e.id)
            out.setdefault(e.subject, []).append(int(e.data["note"]))
    return out


def drain(*relays: OutboxRelay, env) -> None:
    def run(r: OutboxRelay) -> None:
        while unsent(env):
            r.relay_once()

    threads = [threading.Thread(target=run, args=(r,)) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in relays:
        r.close()


def in_order() -> dict[str, list[int]]:
    """Each aggregate's notes as the rows were written."""
    return {f"agg-{k}": list(range(PER_KEY)) for k in range(KEYS)}


def assert_every_row_once_in_order(env) -> None:
    events = topic(env)
    assert len(events) == KEYS * PER_KEY == len({e.id for e in events}), "each row once"
    assert first_seen_in_order(events) == in_order()


def test_two_relays_publish_every_row_once_and_each_aggregate_in_order(env):
    drain(relay(env), relay(env), env=env)
    assert_every_row_once_in_order(env)


class Held(OutboxRelay):
    """A relay that has claimed its batch and is slow to send it."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.claimed = threading.Event()
        self.go = threading.Event()
        self.batch: list = []

    def _publish(self, rows):
        self.batch = rows
        self.claimed.set()
        assert self.go.wait(60)
        super()._publish(rows)

    def hold(self) -> None:
        """Claim a batch in a thread of its own and keep it."""
        self.holder = threading.Thread(target=self.relay_once)
        self.holder.start()
        assert self.claimed.wait(60)

    def release(self) -> None:
        self.go.set()
        self.holder.join(timeout=60)


def test_a_relay_never_overtakes_the_rows_another_relay_holds(env):
    slow = relay(env, batch_size=40, cls=Held)
    slow.hold()
    held_keys = {r.subject for r in slow.batch}
    other = relay(env, batch_size=40)
    sent = other.relay_once()
    with env[0]() as s:
        marked = s.execute(sa.select(outbox.table.c.seq, outbox.table.c.subject)
                           .where(outbox.table.c.sent_at.is_not(None))).all()
    assert sent == len(marked) > 0
    assert not {subject for _, subject in marked} & held_keys, \
        "no row of a key the slow relay holds, nor any later one of it"
    assert not {seq for seq, _ in marked} & {r.seq for r in slow.batch}
    slow.release()
    drain(slow, other, env=env)
    assert_every_row_once_in_order(env)


def test_a_relay_behind_more_held_rows_than_it_reads_waits_instead_of_overtaking(env):
    """A relay reads the unsent rows before its batch up to a limit (four
    batches); when another relay holds more than that, it cannot know their
    keys, so its batch waits for the next round."""
    slow = relay(env, batch_size=40, cls=Held)
    slow.hold()
    other = relay(env, batch_size=5)          # reads 20 rows before its own, fewer than the 40 held
    assert other.relay_once() == 0
    assert unsent(env) == KEYS * PER_KEY
    slow.release()
    drain(slow, other, env=env)
    assert_every_row_once_in_order(env)


class DiesAfterSending(OutboxRelay):
    """Publishes its batch, then dies before marking it (a kill -9 between
    the broker's acks and the database commit): its claim goes with it."""

    def _mark(self, session, rows):
        raise ConnectionError("killed")


def test_a_relay_that_dies_after_sending_loses_its_claim_and_order_still_holds(env):
    dying = relay(env, batch_size=50, cls=DiesAfterSending)
    with pytest.raises(ConnectionError):
        dying.relay_once()
    dying.close()
    assert unsent(env) == KEYS * PER_KEY, "nothing marked: the claim is gone"
    drain(relay(env), relay(env), env=env)
    events = topic(env)
    assert len({e.id for e in events}) == KEYS * PER_KEY, "nothing lost"
    assert len(events) == KEYS * PER_KEY + 50, "the dead relay's batch went out twice"
    assert first_seen_in_order(events) == in_order()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def probe(session, key: str, note: int) -> None:
    outbox.add(session, "backbone.probe.v1", key, {"probe_id": key, "note": str(note)})


def last_seq(env) -> int:
    with env[0]() as s:
        return s.execute(sa.select(sa.func.max(outbox.table.c.seq))).scalar_one()


def relay_until(r: OutboxRelay, clock: Clock, end: float) -> None:
    """Claims every half second of the clock until `end`."""
    while clock.now < end:
        clock.now += 0.5
        r.relay_once()


def test_the_floor_stays_below_a_row_whose_transaction_is_open_and_the_row_goes_out_when_it_commits(env):
    sessions = env[0]
    clock = Clock()
    r = relay(env, batch_size=1000, floor=Floor(settle=0.1, clock=clock))
    assert r.relay_once() == KEYS * PER_KEY
    relay_until(r, clock, 3)
    floor = r.floor.value
    assert floor == last_seq(env) + 1, "the floor passes every row sent"
    late = sessions()
    late.begin()
    probe(late, "late", 0)                      # takes the seq at the floor; its transaction stays open
    with unit_of_work(sessions) as s:
        probe(s, "late-after", 0)               # the next seq, committed
    assert r.relay_once() == 1
    relay_until(r, clock, 6)
    assert r.floor.value == floor, "the floor waits below the open row"
    late.commit()
    late.close()
    assert r.relay_once() == 1, "the late row goes out"
    relay_until(r, clock, 9)
    assert r.floor.value == last_seq(env) + 1, "then the floor passes it"
    r.close()
    assert first_seen_in_order(topic(env))["late"] == [0]


def test_a_relays_backlog_counted_from_its_floor_is_every_unsent_row(env):
    clock = Clock()
    r = relay(env, batch_size=1000, floor=Floor(settle=0.1, clock=clock))
    assert r.relay_once() == KEYS * PER_KEY
    relay_until(r, clock, 3)
    assert r.floor.value == last_seq(env) + 1
    with unit_of_work(env[0]) as s:
        for n in range(3):
            probe(s, "more", n)
    r.measure()
    assert REGISTRY.get_sample_value("kezek_outbox_unsent", {"source": "relaytest"}) == 3
    r.close()


class FloorWatched(OutboxRelay):
    """Checks, each time its floor may rise, that no unsent row lies below
    it, and notes every value it took."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.floors: list[int] = []

    def _raised_floor(self, session):
        floor = super()._raised_floor(session)
        if floor is not None:
            t = outbox.table
            below = session.execute(sa.select(sa.func.count()).where(t.c.sent_at.is_(None), t.c.seq < floor)).scalar()
            assert below == 0, f"the floor {floor} passed {below} unsent rows"
            self.floors.append(floor)
        return floor


def test_the_floor_never_passes_the_rows_a_relay_left_for_another_relays_keys(env):
    """A relay leaves unsent the rows of the keys another relay holds (they
    must not overtake), though its claim read past them. When the holder
    has sent its batch, the floor rises to the first row left, not past it
    (a floor above it would never send those rows), and the rows go out."""
    clock = Clock()
    slow = relay(env, batch_size=40, cls=Held)
    slow.hold()
    other = relay(env, batch_size=1000, cls=FloorWatched, floor=Floor(settle=0.1, clock=clock))
    sent = other.relay_once()
    assert 0 < sent < KEYS * PER_KEY - 40
    with env[0]() as s:
        t = outbox.table
        first_left = s.execute(sa.select(sa.func.min(t.c.seq)).where(
            t.c.sent_at.is_(None), t.c.seq.not_in([r.seq for r in slow.batch]))).scalar_one()
    relay_until(other, clock, 2)
    assert other.floor.value is None, "no floor while the holder's transaction is open"
    slow.release()
    end = last_seq(env) + 1
    deadline = time.monotonic() + 30     # the floor waits for every transaction of the cluster
    while other.floor.value != end and time.monotonic() < deadline:
        clock.now += 0.5
        other.relay_once()
    assert first_left in other.floors, "the floor rose to the first row left, below what the claim read"
    assert other.floor.value == end
    assert unsent(env) == 0
    slow.close()
    other.close()
    assert_every_row_once_in_order(env)
