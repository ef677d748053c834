"""The projector on the gateway's real tables: every internal fact reaches
the public outbox exactly once (by id), whatever order the internal topics
deliver them in, with repeats, and whether or not the child's registration
ever comes (an imported entry is released by the sweep)."""
from __future__ import annotations

import functools
import json
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kezek.db import make_engine, make_session_factory
from kezek.events import Event, new_event
from tests.migrated import upgrade
from services.gateway.models import outbox as gateway_outbox
from services.gateway.public.models import ParkedEvent, PublicKindergarten, public_outbox
from services.gateway.public.projector import SWEEP_BATCH, Projector, SweepPace, public_event_id
from services.gateway.public.projection import REFERRAL_TYPES, project

KG = "kg-12"
DISTRICT = "41711100000000"


@functools.cache
def template_db() -> bytes:
    """A migrated gateway database, copied for each example (migrating costs
    a second; copying a file costs nothing)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gateway.db"
        upgrade("gateway", f"sqlite:///{path}")
        return path.read_bytes()


class Gateway:
    def __init__(self, path):
        self.engine = make_engine(f"sqlite:///{path}")
        self.sessions = make_session_factory(self.engine)
        self.projector = Projector(b"projector-test-key", directory={KG: DISTRICT}.get)

    def deliver(self, event: Event) -> None:
        """What the idempotent consumer does with one record."""
        with self.sessions() as s, s.begin():
            if gateway_outbox.claim(s, "gateway-public-projector", event.id):
                self.projector.handle(s, event)

    def deliver_batch(self, events: list[Event]) -> None:
        """What the idempotent consumer does with one poll's records of a
        partition: one claim, the projector's prepare, then the fresh events
        (each once) to its batch handler, in one transaction."""
        with self.sessions() as s, s.begin():
            fresh = gateway_outbox.claim_many(s, "gateway-public-projector", [e.id for e in events])
            batch = []
            for event in events:
                if event.id in fresh:
                    fresh.discard(event.id)
                    batch.append(event)
            if batch:
                self.projector.prepare(s, batch)
                self.projector.handle_many(s, batch)

    def sweep(self, now: datetime) -> None:
        with self.sessions() as s, s.begin():
            self.projector.sweep(s, now=now)

    def published_ids(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(sa.select(public_outbox.table.c.event_id)))

    def parked(self) -> int:
        with self.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(ParkedEvent))


@pytest.fixture
def gateway(tmp_path):
    path = tmp_path / "gateway.db"
    path.write_bytes(template_db())
    gw = Gateway(path)
    yield gw
    gw.engine.dispose()


# ---------------------------------------------------------------- a history

def submitted(app: str, pin: str) -> Event:
    return new_event("application.submitted.v1", app, {
        "application_id": app, "parent_id": f"parent-{app}", "country": "KG", "child_pin": pin,
        "child_birth_date": f"{pin[5:9]}-{pin[3:5]}-{pin[1:3]}", "child_surname": "Asanov", "child_name": "Aibek",
        "category": "general", "queue_date": "2022-02-01T10:00:00+06:00", "language": "ky",
        "preferences": [KG], "district": DISTRICT, "locale": "ky",
    }, source="registration")


def queued(app: str) -> Event:
    return new_event("application.queued.v1", f"application:{app}", {
        "application_id": app, "category": "general", "cohort": 2019, "language": "ky",
        "queue_date": "2022-02-01T10:00:00+06:00", "preferences": [KG],
    }, source="queue")


def position(app: str, n: int) -> Event:
    return new_event("application.position_changed.v1", f"application:{app}", {
        "application_id": app, "position": n, "previous_position": n + 1, "kindergarten_id": KG,
    }, source="queue")


def referral(name: str, app: str, referral_id: str) -> Event:
    data = {"referral_id": referral_id, "application_id": app, "kindergarten_id": KG}
    if name in ("issued", "extended", "privilege_confirmed"):
        data["deadline"] = "2025-03-14T18:00:00+06:00"
    if name == "imported":
        data |= {"state": "awaiting_enrolment", "deadline": "2025-03-14T18:00:00+06:00", "needs_confirmation": False,
                 "category": "general", "cohort": 2019, "language": "ky", "issued_at": "2025-03-07T10:00:00+06:00",
                 "child_pin": "21505201912345", "child_surname": "Asanov", "child_name": "Aibek",
                 "child_birth_date": "2019-05-15", "queue_date": "2022-02-01T10:00:00+06:00"}
    if name == "expired":
        data["stoplist_until"] = "2025-03-24T18:00:00+06:00"
    return new_event(f"referral.{name}.v1", f"referral:{referral_id}", data, source="queue")


def application_state(name: str, app: str) -> Event:
    data = {"application_id": app}
    if name == "paused":
        data["until"] = "2025-03-24T18:00:00+06:00"
    if name == "returned_to_general_queue":
        data |= {"from_category": "privileged", "queue_date": "2022-02-01T10:00:00+06:00"}
    return new_event(f"application.{name}.v1", f"application:{app}", data, source="queue")


def place(name: str) -> Event:
    data = {"kindergarten_id": KG, "cohort": 2019, "language": "ky", "for_category": None}
    data |= {"referral_id": "1", "reason": "cancelled"} if name == "returned" else {"count": 1, "free": 1}
    return new_event(f"place.{name}.v1", f"place:{KG}/2019/ky", data, source="queue")


def expected_ids(events: list[Event]) -> set[str]:
    """The public event id each internal fact must get: the projection's own
    public type for it (every fact of these histories is complete, so none
    is skipped), index 0."""
    out = set()
    for e in events:
        if e.type == "application.submitted.v1":
            continue
        name = e.type.removesuffix(".v1")
        public = REFERRAL_TYPES.get(e.type) or f"public.{name}.v1"
        out.add(public_event_id(e.id, public, 0))
    return out


def test_projection_publishes_each_fact_of_the_test_histories():
    """Guards the property test below: its facts are complete, so each one
    projects to exactly one public fact of the type expected_ids names."""
    class Knows:
        def child(self, _):
            from services.gateway.public.projection import Child
            return Child("ref", 2019, "general", DISTRICT, "ky")

        def referral(self, _):
            return None

        def district_of(self, _):
            return DISTRICT

    events = [queued("a"), position("a", 3), *(referral(n, "a", "7") for n in
              ("issued", "imported", "privilege_confirmed", "privilege_rejected", "certificate_requested",
               "extended", "expired", "cancelled", "enrolled")),
              *(application_state(n, "a") for n in ("removed", "resumed", "paused", "returned_to_general_queue")),
              *(place(n) for n in ("published", "withdrawn", "returned"))]
    for e in events:
        outcome = project(e.type, e.data, Knows(), Projector(b"k").names)
        assert [public_event_id(e.id, f.type, 0) for f in outcome.facts] == list(expected_ids([e])), e.type


def test_events_parked_before_their_child_is_known_are_each_published_once(gateway):
    """The queue's entry and the child's positions arrive before the
    registration's event: all of them wait, and when the child becomes known
    each goes out once. (The old projector released the parked entry, which
    taught it the child again and released the rest from inside the first
    release: the outer loop then applied them a second time and the whole
    transaction failed on public_outbox's unique event id, for ever.)"""
    history = [queued("app-1"), position("app-1", 5), position("app-1", 4), referral("issued", "app-1", "9")]
    for e in history:
        gateway.deliver(e)
    assert gateway.parked() == 4 and gateway.published_ids() == []
    gateway.deliver(submitted("app-1", "21505201912345"))
    assert gateway.parked() == 0
    published = gateway.published_ids()
    assert sorted(published) == sorted(expected_ids(history))


def test_an_imported_entry_publishes_its_events_at_once_under_the_ref_the_sweep_would_give(gateway):
    """An import's entry says so: nothing parks, no sweep is waited for, and
    the child's ref is the one a parked entry gets after the grace period."""
    moved_in = new_event("application.queued.v1", "application:app-imp", {
        **queued("app-imp").data, "application_id": "app-imp", "imported": True}, source="queue")
    gateway.deliver_batch([moved_in, position("app-imp", 7)])
    assert gateway.parked() == 0 and len(gateway.published_ids()) == 2
    gateway.deliver(queued("app-late"))           # the same entry without the mark parks,
    gateway.sweep(datetime.now(UTC) + timedelta(hours=1))
    with gateway.sessions() as s:
        refs = dict(s.execute(sa.text("SELECT application_id, child_ref FROM public_children")).all())
    assert refs == {"app-imp": gateway.projector.names.entry("app-imp"),
                    "app-late": gateway.projector.names.entry("app-late")}   # and the sweep names it alike


def test_a_batch_reads_each_child_once_and_writes_its_public_events_in_one_statement(gateway):
    """An import's intake is hundreds of thousands of events: per event a
    read of its child, an insert and a look for parked events made the
    projector the slowest consumer of a distribution day."""
    apps = [f"app-b{i}" for i in range(5)]
    gateway.deliver_batch([new_event("application.queued.v1", f"application:{a}", {
        **queued(a).data, "imported": True}, source="queue") for a in apps])
    statements = []
    listen = functools.partial(sa.event.listen, gateway.engine, "before_cursor_execute")
    listen(lambda conn, cursor, sql, params, context, many: statements.append(" ".join(sql.split())))
    gateway.deliver_batch([position(a, n) for n in range(9, 1, -1) for a in apps])
    reads = [q for q in statements if q.startswith("SELECT") and "public_children" in q]
    writes = [q for q in statements if q.startswith("INSERT INTO public_outbox")]
    assert len(reads) == 1 and len(writes) == 1
    assert not [q for q in statements if "public_parked_events" in q and not q.startswith("SELECT DISTINCT")]
    assert len(gateway.published_ids()) == 5 + 40


def test_a_batch_of_referral_facts_reads_their_kindergartens_districts_in_one_statement(gateway):
    """Each public referral fact carries its kindergarten's district. A
    distribution day's referrals came in batches of hundreds, each asking
    for its own kindergarten's row; the batch now reads them at once, and
    asks the queue's register once for a kindergarten it does not hold."""
    kgs = [f"kg-2{i}" for i in range(4)]
    districts = {kg: f"4171110000000{i}" for i, kg in enumerate(kgs)}
    asked: list[str] = []
    gateway.projector.directory = lambda kg: asked.append(kg) or districts.get(kg)
    apps = [f"app-k{i}" for i in range(6)]
    gateway.deliver_batch([e for i, a in enumerate(apps) for e in (submitted(a, f"2150520191234{i}"), queued(a))])
    with gateway.sessions() as s, s.begin():     # two kindergartens known from an earlier day
        s.add_all(PublicKindergarten(kindergarten_id=kg, district=districts[kg]) for kg in kgs[:2])

    statements = []
    listen = functools.partial(sa.event.listen, gateway.engine, "before_cursor_execute")
    listen(lambda conn, cursor, sql, params, context, many: statements.append(" ".join(sql.split())))
    named = [kgs[0], kgs[1], kgs[2], kgs[2], kgs[3], kgs[0]]
    issued = []
    for i, (app, kg) in enumerate(zip(apps, named)):
        event = referral("issued", app, f"7{i}")
        event.data["kindergarten_id"] = kg
        issued.append(event)
    gateway.deliver_batch(issued)

    reads = [q for q in statements if q.startswith("SELECT") and "public_kindergartens" in q]
    assert len(reads) == 1
    assert sorted(asked) == [kgs[2], kgs[3]]          # each unknown one asked once, in the batch
    with gateway.sessions() as s:
        facts = [json.loads(p)["data"] for p in s.scalars(
            sa.select(public_outbox.table.c.payload).where(public_outbox.table.c.type == "public.referral.issued.v1")
            .order_by(public_outbox.table.c.seq))]
        known = dict(s.execute(sa.text("SELECT kindergarten_id, district FROM public_kindergartens")).all())
    assert [f["district"] for f in facts] == [districts[kg] for kg in named]
    assert known == districts


def test_a_referral_learned_in_a_session_is_known_to_its_next_event_in_that_session(gateway):
    """The sweep releases a child's parked events in one session: a referral
    event with no kindergarten of its own takes it from the referral the
    issue before it taught, not from a read made before that."""
    later = referral("extended", "app-r", "91")
    del later.data["kindergarten_id"]
    with gateway.sessions() as s, s.begin():
        gateway.projector.handle(s, submitted("app-r", "21505201912345"))
        gateway.projector.handle(s, queued("app-r"))
        gateway.projector.handle(s, later)                     # unknown yet: read, found absent
        gateway.projector.handle(s, referral("issued", "app-r", "91"))
        gateway.projector.handle(s, later.model_copy(update={"id": str(uuid.uuid4())}))
    with gateway.sessions() as s:
        types = list(s.scalars(sa.select(public_outbox.table.c.type).order_by(public_outbox.table.c.seq)))
    assert types[-2:] == ["public.referral.issued.v1", "public.referral.extended.v1"]


def test_a_batch_parks_the_events_of_unknown_children_and_publishes_those_of_a_child_it_teaches(gateway):
    """One poll's batch, prepared at once: the events of an imported child
    nobody knows wait, a child registered earlier in the same batch is
    known to the events after it, and a repeat in the batch counts once."""
    waiting = [queued("app-1"), position("app-1", 5)]
    known = [queued("app-2"), position("app-2", 7)]
    stranger = referral("imported", "app-3", "31")
    gateway.deliver_batch([*waiting, submitted("app-2", "21505201912346"), *known, known[1], stranger])
    assert gateway.parked() == 3
    assert sorted(gateway.published_ids()) == sorted(expected_ids(known))
    later = position("app-1", 4)
    gateway.deliver_batch([submitted("app-1", "21505201912345"), later])
    assert gateway.parked() == 1
    assert sorted(gateway.published_ids()) == sorted(expected_ids([*known, *waiting, later]))


def test_public_events_name_their_schema_where_the_gateway_serves_it(gateway):
    gateway.projector.schema_base = "https://portal.example.kg/api/v1/public/schemas"
    gateway.deliver(place("published"))
    with gateway.sessions() as s:
        payloads = [json.loads(p) for p in s.scalars(sa.select(public_outbox.table.c.payload))]
    assert [p["dataschema"] for p in payloads] == [
        "https://portal.example.kg/api/v1/public/schemas/public.place.published.v1.json"]


# ------------------------------------------------------- the property test

@st.composite
def histories(draw):
    """A few children, each with a plausible life (some imported, with no
    registration event), plus place events; then an arbitrary arrival order
    with some repeats (an at-least-once relay) and sweeps at random moments."""
    events: list[Event] = []
    for c in range(draw(st.integers(1, 4))):
        app = f"app-{c}"
        life: list[Event] = []
        imported = draw(st.booleans())
        if not imported:
            life.append(submitted(app, f"2150520191{c:04d}"))
        life.append(queued(app))
        life += [position(app, n) for n in range(draw(st.integers(0, 3)), 0, -1)]
        for r in range(draw(st.integers(0, 2))):
            rid = f"{c}{r}"
            life.append(referral("imported" if imported and r == 0 else "issued", app, rid))
            life += [referral(n, app, rid) for n in draw(st.lists(st.sampled_from(
                ["certificate_requested", "privilege_confirmed", "privilege_rejected", "extended", "expired",
                 "cancelled", "enrolled"]), max_size=3))]
        life += [application_state(n, app) for n in draw(st.lists(st.sampled_from(
            ["paused", "resumed", "returned_to_general_queue", "removed"]), max_size=2))]
        events += life
    events += [place(n) for n in draw(st.lists(st.sampled_from(["published", "withdrawn", "returned"]), max_size=3))]
    arrival = draw(st.permutations(events))
    repeats = draw(st.lists(st.sampled_from(events), max_size=4))
    steps: list[Event | str] = list(arrival)
    for e in repeats:
        steps.insert(draw(st.integers(0, len(steps))), e)
    for _ in range(draw(st.integers(0, 2))):
        steps.insert(draw(st.integers(0, len(steps))), "sweep")
    # The consumer takes a poll's records of a partition as one batch:
    # consecutive events delivered together, up to this many.
    return events, steps, draw(st.integers(1, 6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_every_fact_reaches_the_public_outbox_exactly_once_whatever_the_arrival_order(history, tmp_path):
    events, steps, batch = history
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    path.write_bytes(template_db())
    gw = Gateway(path)
    later = datetime.now(UTC) + timedelta(days=1)  # past any grace period
    try:
        waiting: list[Event] = []
        for step in [*steps, "end"]:
            if step != "sweep" and step != "end":
                waiting.append(step)
            if waiting and (len(waiting) == batch or step in ("sweep", "end")):
                gw.deliver(waiting[0]) if batch == 1 else gw.deliver_batch(waiting)
                waiting = []
            if step == "sweep":
                gw.sweep(later)
        gw.sweep(later)  # an imported entry's registration never comes
        published = gw.published_ids()
        assert len(published) == len(set(published))
        assert set(published) == expected_ids(events)
        assert gw.parked() == 0
    finally:
        gw.engine.dispose()
        path.unlink(missing_ok=True)


def test_the_sweep_waits_while_events_come_in_and_drains_a_backlog_when_the_topic_is_read():
    now = [1000.0]
    pace = SweepPace(every=10.0, clock=lambda: now[0])
    assert pace.due()                          # the first poll sweeps
    pace.swept(SWEEP_BATCH, handled=40)        # a full sweep while events come in
    now[0] += 5
    assert not pace.due()                      # events are read first, for 10 s
    now[0] += 6
    assert pace.due()
    pace.swept(SWEEP_BATCH, handled=0)         # a full sweep on a topic read to its end
    assert pace.due()                          # the backlog goes on at once
    pace.swept(SWEEP_BATCH - 1, handled=0)     # the last of the backlog
    assert not pace.due()
    now[0] += 10.5
    assert pace.due()


def test_the_projector_claims_only_the_events_it_projects(gateway, monkeypatch):
    """An event the public stream never carries (a registration's received
    event, here an application's closing) is passed over by its type, not
    claimed: a claim is a row of processed_events, and an import brings one
    received event a child."""
    import kezek.consumer
    from services.gateway.public.projector import CONSUMER_NAME, make_consumer

    class Broker:                   # not what this is about: the records are handed in below
        def __init__(self, **_config):
            pass

        def subscribe(self, _topics):
            pass

    monkeypatch.setattr(kezek.consumer, "KafkaConsumer", Broker)
    consumer = make_consumer(gateway.sessions, gateway.projector, "unused:9092", ["kezek.application"])
    closed = new_event("application.closed.v1", "application:a1", {
        "application_id": "a1", "outcome": "enrolled", "closed_at": "2027-03-01T10:00:00+06:00"}, source="queue")
    learned = submitted("a1", "21502201900123")
    assert consumer.process(closed.to_json().encode()) is False
    assert consumer.process(learned.to_json().encode()) is True
    with gateway.engine.connect() as conn:
        claimed = set(conn.scalars(sa.text("SELECT event_id FROM processed_events WHERE consumer = :c"),
                                   {"c": CONSUMER_NAME}))
    assert claimed == {learned.id}
