"""The projector: internal facts in, public facts out.

It consumes the internal topics with the idempotent consumer, so each
internal event takes effect once: what it learns (public facts about
children, referrals, kindergartens) and the public events it writes to the
public outbox commit in one transaction with the event's claim. Public event
ids are derived from the internal event id, so a subscriber can deduplicate
across a rebuild too."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.client import SyncServiceClient, UpstreamError, seg
from kezek.consumer import IdempotentConsumer
from kezek.db import take_rows
from kezek.events import Event
from kezek.infra.kafka import ensure_topics
from kezek.logging import get_logger
from kezek.metrics import PARKED, PARKED_OLDEST
from kezek.relay import OutboxRelay
from kezek.trust import ServiceKeys
from services.gateway.models import outbox as gateway_outbox
from services.gateway.public.models import (
    ParkedEvent, PublicChild, PublicKindergarten, PublicReferral, public_outbox,
)
from services.gateway.public.projection import (
    PLACE_TYPES, REFERRAL_TYPES, Child, Outcome, Pseudonyms, ReferralFacts, clean_district, clean_kindergarten,
    consumed_types, project,
)

log = get_logger(__name__)

CONSUMER_NAME = "gateway-public-projector"
SWEEP_BATCH = 200     # parked entries released per sweep, between two polls
INTERNAL_AGGREGATES = ("application", "referral", "place")
# The internal events whose public facts carry a kindergarten's district.
NAME_A_DISTRICT = frozenset({*REFERRAL_TYPES, *PLACE_TYPES})
_NAMESPACE = uuid.UUID("0b5e7a52-8c1e-4d0e-9a57-6b1f3f5c2d11")


KindergartenDirectory = Callable[[str], "str | None"]  # kindergarten id -> district


def queue_directory(queue_url: str, keys: ServiceKeys, timeout: float = 2.0) -> KindergartenDirectory:
    """Districts of kindergartens from the queue service's register (the
    queue publishes no kindergarten events), asked with the gateway's own
    service token."""
    missing: dict[str, float] = {}  # a queue that is down is asked again a minute later, not per event
    queue = SyncServiceClient(queue_url, keys=keys, caller="gateway", audience="queue", timeout=timeout)

    def district(kindergarten_id: str) -> str | None:
        if time.monotonic() - missing.get(kindergarten_id, -1e9) < 60:
            return None
        try:
            found = (queue.call("GET", f"/api/v1/kindergartens/{seg(kindergarten_id)}", ok_missing=True)
                     or {}).get("district")
        except (UpstreamError, ValueError, AttributeError):
            found = None
        if found is None:
            missing[kindergarten_id] = time.monotonic()
        return found
    return district


# session.info keys: the ids a batch's prepare looked up and did not find
# (model -> set of ids), so the batch's events do not ask for each again;
# the rows it found or made (model -> {id: row}), held here because the
# session's identity map holds an unchanged row only weakly (each
# session.get read it again); the applications with parked events.
_ABSENT = "public_projector_absent"
_ROWS = "public_projector_rows"
_PARKED = "public_projector_parked"


def _get(session: Session, model, key: str):
    """The row, without a statement when the batch's prepare already knows
    it (read by the batch, or known absent)."""
    if _absent(session, model, key):
        return None
    rows = _rows(session, model)
    if key not in rows:
        rows[key] = session.get(model, key)
    return rows[key]


def _rows(session: Session, model) -> dict:
    return session.info.setdefault(_ROWS, {}).setdefault(model, {})


def _absent(session: Session, model, key: str) -> bool:
    return key in session.info.get(_ABSENT, {}).get(model, ())


def _present(session: Session, model, key: str) -> None:
    session.info.get(_ABSENT, {}).get(model, set()).discard(key)


class DbLookup:
    def __init__(self, session: Session, directory: KindergartenDirectory | None = None):
        self.session = session
        self.directory = directory

    def child(self, application_id: str) -> Child | None:
        row = _get(self.session, PublicChild, application_id)
        return Child(row.child_ref, row.cohort, row.category, row.district, row.language) if row else None

    def referral(self, referral_id: str) -> ReferralFacts | None:
        row = _get(self.session, PublicReferral, referral_id)
        if row is None:
            return None
        return ReferralFacts(row.referral_ref, row.application_id, row.kindergarten_id, row.cohort,
                             row.category, row.language)

    def district_of(self, kindergarten_id: str) -> str | None:
        row = _get(self.session, PublicKindergarten, kindergarten_id)
        if row is not None:
            return row.district
        district = clean_district(self.directory(kindergarten_id)) if self.directory else None
        if district:
            _learn_kindergarten(self.session, kindergarten_id, district)
        return district


def _learn_kindergarten(session: Session, kindergarten_id: str, district: str) -> None:
    """A kindergarten's district, written, and what `_get` answers from now
    on (one known absent is added without a statement to look for it)."""
    row = _get(session, PublicKindergarten, kindergarten_id)
    if row is None:
        row = PublicKindergarten(kindergarten_id=kindergarten_id, district=district)
        session.add(row)
        _rows(session, PublicKindergarten)[kindergarten_id] = row
        _present(session, PublicKindergarten, kindergarten_id)
    else:
        row.district = district


def public_event_id(internal_id: str, public_type: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{internal_id}/{public_type}/{index}"))


class Projector:
    def __init__(self, pseudonym_key: bytes, country: str = "KG", *,
                 directory: KindergartenDirectory | None = None, park_grace: timedelta = timedelta(minutes=2),
                 schema_base: str | None = None):
        self.names = Pseudonyms(pseudonym_key)
        self.schema_base = schema_base  # the envelopes' dataschema: <base>/<type>.json
        self.country = country
        self.directory = directory
        self.park_grace = park_grace

    def prepare(self, session: Session, events: list[Event]) -> None:
        """The consumer's batch preparation: the children and referrals the
        batch's events name, read in one statement each (an import's events
        name children the projector does not know: each asked for its own
        before), and which of them are not known; then the districts of the
        kindergartens they and the known referrals name (a referral's
        public fact carries its kindergarten's district: each asked for its
        own before)."""
        wanted = {PublicChild: set(), PublicReferral: set()}
        kindergartens: set[str] = set()
        for event in events:
            data = event.data if isinstance(event.data, dict) else {}
            for model, name in ((PublicChild, "application_id"), (PublicReferral, "referral_id")):
                value = data.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    value = str(value)
                if isinstance(value, str) and 0 < len(value) <= 100:
                    wanted[model].add(value)
            if event.type in NAME_A_DISTRICT and \
                    (kindergarten := clean_kindergarten(data.get("kindergarten_id", data.get("kindergarten")))):
                kindergartens.add(kindergarten)
        self._read(session, wanted)
        kindergartens.update(row.kindergarten_id for row in _rows(session, PublicReferral).values()
                             if row is not None and row.kindergarten_id)
        self._read(session, {PublicKindergarten: kindergartens})
        apps = wanted[PublicChild]
        session.info[_PARKED] = set(session.scalars(
            sa.select(ParkedEvent.application_id).where(ParkedEvent.application_id.in_(apps)).distinct())) \
            if apps else set()

    @staticmethod
    def _read(session: Session, wanted: dict[type, set[str]]) -> None:
        """The rows of each model's ids, in one statement a model, kept for
        `_get`; the ids not found are known absent."""
        absent = session.info.setdefault(_ABSENT, {})
        for model, ids in wanted.items():
            key = model.__mapper__.primary_key[0]
            rows = _rows(session, model)
            if ids:
                found = session.scalars(sa.select(model).where(key.in_(ids)))
                rows.update((getattr(row, key.key), row) for row in found)
            absent[model] = ids - rows.keys()

    def handle(self, session: Session, event: Event) -> None:
        """One event, inside the claim's transaction."""
        self.handle_many(session, [event])

    def handle_many(self, session: Session, events: list[Event]) -> None:
        """The consumer's handler: a batch's events in order, inside its
        claim's transaction; their public events written at the end, in
        order, in one statement."""
        out: list[Event] = []
        for event in events:
            learned = self._apply(session, event, out)
            if learned is not None:
                self._release(session, learned, out)
        public_outbox.write(session, out)

    def _apply(self, session: Session, event: Event, out: list[Event]) -> str | None:
        """Projects one event, its public events added to `out`; returns the
        application id whose child it taught the projector (its parked
        events may now go out), if any."""
        outcome = project(event.type, event.data, DbLookup(session, self.directory), self.names, country=self.country)
        if outcome.park_until_known:
            session.add(ParkedEvent(application_id=outcome.park_until_known, payload=event.to_json(),
                                    parked_at=datetime.now(UTC)))
            if (parked := session.info.get(_PARKED)) is not None:
                parked.add(outcome.park_until_known)
            log.debug("public.parked", application_id=outcome.park_until_known)   # an import parks every event: PARKED counts them
            return None
        if outcome.learned_kindergarten:
            _learn_kindergarten(session, *outcome.learned_kindergarten)
        if outcome.learned_referral:
            referral_id, f = outcome.learned_referral
            row = PublicReferral(referral_id=referral_id, referral_ref=f.referral_ref,
                                 application_id=f.application_id, kindergarten_id=f.kindergarten_id,
                                 cohort=f.cohort, category=f.category, language=f.language)
            if _absent(session, PublicReferral, referral_id):
                session.add(row)          # known new: no statement to look for it
            else:
                row = session.merge(row)
            _present(session, PublicReferral, referral_id)
            _rows(session, PublicReferral)[referral_id] = row    # what _get answers from now on
        for i, fact in enumerate(outcome.facts):
            out.append(public_outbox.new(fact.type, fact.subject, fact.data, time=event.time,
                                         event_id=public_event_id(event.id, fact.type, i),
                                         schema_base=self.schema_base))
        if outcome.skipped and not outcome.facts:
            log.debug("public.skipped", reason=outcome.skipped)
        if outcome.learned_child:
            self._learn_child(session, *outcome.learned_child)
            return outcome.learned_child[0]
        return None

    def _learn_child(self, session: Session, application_id: str, c: Child) -> None:
        row = _get(session, PublicChild, application_id)
        _present(session, PublicChild, application_id)
        if row is None:
            row = PublicChild(application_id=application_id, child_ref=c.child_ref, cohort=c.cohort,
                              category=c.category, district=c.district, language=c.language)
            session.add(row)
            _rows(session, PublicChild)[application_id] = row
        else:
            # The first ref an entry got stays: subscribers follow it.
            for name in ("cohort", "category", "district", "language"):
                if getattr(c, name) is not None:
                    setattr(row, name, getattr(c, name))

    def sweep(self, session: Session, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
        """Entries whose child's PIN never came (moved in by an import) get a
        ref of their own after the grace period, and their events go out:
        at most `limit` entries per call (an import parks thousands, and the
        consumer waits while the sweep runs)."""
        cutoff = (now or datetime.now(UTC)) - self.park_grace
        waiting = session.scalars(sa.select(ParkedEvent.application_id).where(ParkedEvent.parked_at <= cutoff)
                                  .group_by(ParkedEvent.application_id).order_by(sa.func.min(ParkedEvent.seq))
                                  .limit(limit)).all()
        out: list[Event] = []
        for application_id in waiting:
            if _get(session, PublicChild, application_id) is None:
                self._learn_child(session, application_id, Child(self.names.entry(application_id)))
            self._release(session, application_id, out)
        public_outbox.write(session, out)
        return len(waiting)

    def _release(self, session: Session, application_id: str, out: list[Event]) -> None:
        """Projects the events parked for a child now known, oldest first,
        each exactly once: the rows parked so far are read and deleted in
        one statement each, then applied in their order, never releasing
        again from there (a released queue entry teaches the child again,
        and releasing from there applied the rest twice: the public
        outbox's unique event id then failed the whole transaction, on
        every retry). A released event that parks again gets a later seq
        and waits for the next release."""
        parked = session.info.get(_PARKED)
        if parked is not None and application_id not in parked:
            return                  # the batch's prepare found none, and none parked since
        for payload in take_rows(session, ParkedEvent.seq, ParkedEvent.payload,
                                 ParkedEvent.application_id == application_id, ParkedEvent.seq):
            self._apply(session, Event.from_json(payload), out)


class PublicRelay(OutboxRelay):
    """Every public event goes to the one public topic, keyed by subject."""

    def __init__(self, sessions: sessionmaker[Session], bootstrap: str, topic: str):
        super().__init__(sessions, public_outbox, bootstrap)
        self.topic = topic

    def topic_for(self, event_type: str) -> str:
        return self.topic


def make_consumer(sessions: sessionmaker[Session], projector: Projector, bootstrap: str, topics: list[str],
                  **kafka_config) -> IdempotentConsumer:
    # Only the types it projects: the others (a registration's received
    # event, an erasure, a reminder) are passed over by their type, never
    # claimed, where each was a row of processed_events (an import's
    # received events, one a child).
    return IdempotentConsumer(name=CONSUMER_NAME, topics=topics, bootstrap=bootstrap, sessions=sessions,
                              outbox=gateway_outbox, handle_many=projector.handle_many, prepare=projector.prepare,
                              types=consumed_types(), **kafka_config)


def measure_parked(session: Session) -> None:
    """The metrics: events parked until their child is known, and the oldest's age."""
    parked, oldest = session.execute(sa.select(sa.func.count(), sa.func.min(ParkedEvent.parked_at))).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    PARKED.labels(service="gateway").set(parked)
    PARKED_OLDEST.labels(service="gateway").set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)


class SweepPace:
    """When the loop sweeps parked entries between two polls: every
    `every` seconds while events come in, never one sweep after another in
    place of reading them; but after a full sweep (SWEEP_BATCH released) on
    a topic read to its end, again at once, so a backlog of parked entries
    drains while nothing else waits."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self.clock = clock
        self.last = float("-inf")

    def due(self) -> bool:
        return self.clock() - self.last > self.every

    def swept(self, released: int, handled: int) -> None:
        if released < SWEEP_BATCH or handled:
            self.last = self.clock()


def run_projector(stop: threading.Event, sessions: sessionmaker[Session], projector: Projector, bootstrap: str,
                  topics: list[str]) -> None:
    """The background loop: waits for the broker, then consumes until stopped."""
    backoff = 1.0
    while not stop.is_set():
        try:
            ensure_topics(bootstrap, topics)
            consumer = make_consumer(sessions, projector, bootstrap, topics)
        except Exception as exc:
            log.warning("public.projector_waiting_for_broker", error=repr(exc), retry_in=backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30)
            continue
        pace = SweepPace()
        while not stop.is_set():
            try:
                handled = consumer.poll_once()
                if pace.due():
                    with sessions() as session, session.begin():
                        swept = projector.sweep(session)
                        measure_parked(session)
                    pace.swept(swept, handled)
            except Exception as exc:
                log.warning("public.projector_poll_failed", error=repr(exc))
                stop.wait(1)
        consumer.close()
