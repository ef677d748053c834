"""The projector: internal facts in, public facts out.

It consumes the internal topics with the idempotent consumer, so each
internal event takes effect once: what it learns (public facts about
children, referrals, kindergartens) and the public events it writes to the
public outbox commit in one transaction with the event's claim. Public event
ids are derived from the internal event id, so a subscriber can deduplicate
across a rebuild too."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.consumer import IdempotentConsumer
from kezek.events import Event
from kezek.infra.kafka import ensure_topics
from kezek.logging import get_logger
from kezek.relay import OutboxRelay
from services.gateway.models import outbox as gateway_outbox
from services.gateway.public.models import (
    ParkedEvent, PublicChild, PublicKindergarten, PublicReferral, public_outbox,
)
from services.gateway.public.projection import (
    Child, Outcome, Pseudonyms, ReferralFacts, project,
)

log = get_logger(__name__)

CONSUMER_NAME = "gateway-public-projector"
INTERNAL_AGGREGATES = ("application", "referral", "place", "kindergarten")
_NAMESPACE = uuid.UUID("0b5e7a52-8c1e-4d0e-9a57-6b1f3f5c2d11")


class DbLookup:
    def __init__(self, session: Session):
        self.session = session

    def child(self, application_id: str) -> Child | None:
        row = self.session.get(PublicChild, application_id)
        return Child(row.child_ref, row.cohort, row.category, row.district, row.language) if row else None

    def referral(self, referral_id: str) -> ReferralFacts | None:
        row = self.session.get(PublicReferral, referral_id)
        if row is None:
            return None
        return ReferralFacts(row.referral_ref, row.application_id, row.kindergarten_id, row.cohort,
                             row.category, row.language)

    def district_of(self, kindergarten_id: str) -> str | None:
        row = self.session.get(PublicKindergarten, kindergarten_id)
        return row.district if row else None


def public_event_id(internal_id: str, public_type: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{internal_id}/{public_type}/{index}"))


class Projector:
    def __init__(self, pseudonym_key: bytes, country: str = "KG"):
        self.names = Pseudonyms(pseudonym_key)
        self.country = country

    def handle(self, session: Session, event: Event) -> None:
        """The consumer's handler: runs inside the claim's transaction."""
        self._apply(session, event)

    def _apply(self, session: Session, event: Event) -> Outcome:
        outcome = project(event.type, event.data, DbLookup(session), self.names, country=self.country)
        if outcome.park_until_known:
            session.add(ParkedEvent(application_id=outcome.park_until_known, payload=event.to_json(),
                                    parked_at=datetime.now(UTC)))
            log.info("public.parked", application_id=outcome.park_until_known)
            return outcome
        if outcome.learned_kindergarten:
            kindergarten_id, district = outcome.learned_kindergarten
            session.merge(PublicKindergarten(kindergarten_id=kindergarten_id, district=district))
        if outcome.learned_referral:
            referral_id, f = outcome.learned_referral
            session.merge(PublicReferral(referral_id=referral_id, referral_ref=f.referral_ref,
                                         application_id=f.application_id, kindergarten_id=f.kindergarten_id,
                                         cohort=f.cohort, category=f.category, language=f.language))
        for i, fact in enumerate(outcome.facts):
            public_outbox.add(session, fact.type, fact.subject, fact.data, time=event.time,
                              event_id=public_event_id(event.id, fact.type, i))
        if outcome.learned_child:
            application_id, c = outcome.learned_child
            session.merge(PublicChild(application_id=application_id, child_ref=c.child_ref, cohort=c.cohort,
                                      category=c.category, district=c.district, language=c.language))
            session.flush()
            self._unpark(session, application_id)
        if outcome.skipped and not outcome.facts:
            log.debug("public.skipped", reason=outcome.skipped)
        return outcome

    def _unpark(self, session: Session, application_id: str) -> None:
        parked = session.scalars(sa.select(ParkedEvent).where(ParkedEvent.application_id == application_id)
                                 .order_by(ParkedEvent.seq)).all()
        for row in parked:
            session.delete(row)
            session.flush()
            self._apply(session, Event.from_json(row.payload))


class PublicRelay(OutboxRelay):
    """Every public event goes to the one public topic, keyed by subject."""

    def __init__(self, sessions: sessionmaker[Session], bootstrap: str, topic: str):
        super().__init__(sessions, public_outbox, bootstrap)
        self.topic = topic

    def topic_for(self, event_type: str) -> str:
        return self.topic


def make_consumer(sessions: sessionmaker[Session], projector: Projector, bootstrap: str, topics: list[str],
                  **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=topics, bootstrap=bootstrap, sessions=sessions,
                              outbox=gateway_outbox, handle=projector.handle, **kafka_config)


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
        consumer.run(stop)
