"""Webhooks: the public stream for systems that cannot speak Kafka.

- Ingest: a consumer of kezek.public.v1 turns each public event into one
  delivery per matching subscription (idempotent: a redelivered record finds
  its delivery already there). A subscription gets what is published after
  it was registered; a replay delivers again from an offset.
- Delivery: a POST of the event (CloudEvents JSON, the bytes the topic
  carries) signed with HMAC-SHA256 over "<timestamp>.<body>" in the
  `Kezek-Signature` header (`t=<unix seconds>,v1=<hex>`). A 2xx answer
  delivers it; anything else is retried with exponential backoff.
- Order per subject: a delivery goes out only when every earlier delivery
  of the same subscription and subject is delivered or skipped, so a
  failing one holds back its own subject and no other. After the last
  attempt it is `dead` and still holds its subject back, because a
  receiver must never see a child's referral expire before it was issued;
  an administrator retries it or skips it.
- Every attempt is in the delivery log (`webhook_attempts`)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy.orm import Session, aliased, sessionmaker

from kezek import connections
from kezek.consumer import IDLE_FETCH_WAIT_MS, group_for, rewind
from kezek.events import Event
from kezek.infra.kafka import ensure_topics
from kezek.logging import get_logger
from kezek.pacing import IdlePause
from kezek.web import DomainError
from services.gateway.public.config import PublicSettings
from services.gateway.public.models import (
    WebhookAttempt, WebhookDelivery, WebhookReplay, WebhookSubscription,
)
from services.gateway.public.projection import public_types

log = get_logger(__name__)

SIGNATURE_HEADER = "Kezek-Signature"
INGEST_GROUP = "gateway-webhooks"
BLOCKING = ("pending", "dead")


# ----------------------------------------------------------------- signing

def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the MAC, compare in constant time,
    and refuse an old timestamp (a replayed request)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failed ones: base, 2x, 4x ... up to cap."""
    return min(base * 2 ** max(attempts - 1, 0), cap)


def matches(event_types: list[str], event_type: str) -> bool:
    return "*" in event_types or event_type in event_types


# ------------------------------------------------------- administration

def validate_subscription(url: str, event_types: list[str], env: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DomainError("url: must be an absolute http(s) URL", field="url", status_code=422)
    if env == "production" and parts.scheme != "https":
        raise DomainError("url: must use https", field="url", status_code=422)
    if not event_types:
        raise DomainError("event_types: name at least one public event type, or \"*\"", field="event_types",
                          status_code=422)
    known = set(public_types())
    unknown = [t for t in event_types if t != "*" and t not in known]
    if unknown:
        raise DomainError(f"event_types: unknown public event types {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}", field="event_types", status_code=422)


def create_subscription(session: Session, url: str, event_types: list[str], description: str,
                        env: str) -> WebhookSubscription:
    validate_subscription(url, event_types, env)
    sub = WebhookSubscription(id=str(uuid.uuid4()), url=url, event_types=sorted(set(event_types)),
                              secret=secrets.token_urlsafe(32), description=description, active=True,
                              created_at=datetime.now(UTC))
    session.add(sub)
    return sub


def get_subscription(session: Session, subscription_id: str) -> WebhookSubscription:
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None:
        raise DomainError("subscription: not found", field="subscription", status_code=404)
    return sub


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    d = session.get(WebhookDelivery, delivery_id)
    if d is None:
        raise DomainError("delivery: not found", field="delivery", status_code=404)
    return d


def retry_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    d = get_delivery(session, delivery_id)
    if d.status not in ("dead", "pending"):
        raise DomainError(f"delivery: is {d.status}, only a dead or pending one is retried", field="delivery")
    d.status, d.attempts, d.next_attempt_at = "pending", 0, datetime.now(UTC)
    return d


def skip_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    """Gives up one delivery, so the later ones of its subject go out."""
    d = get_delivery(session, delivery_id)
    if d.status not in ("dead", "pending"):
        raise DomainError(f"delivery: is {d.status}, only a dead or pending one is skipped", field="delivery")
    d.status = "skipped"
    return d


def request_replay(session: Session, subscription_id: str, from_offset: int, partition: int | None) -> WebhookReplay:
    get_subscription(session, subscription_id)
    if from_offset < 0:
        raise DomainError("from_offset: must be 0 or more", field="from_offset", status_code=422)
    if partition is not None and partition < 0:
        raise DomainError("partition: must be 0 or more", field="partition", status_code=422)
    replay = WebhookReplay(subscription_id=subscription_id, partition=partition, from_offset=from_offset,
                           status="requested", requested_at=datetime.now(UTC), queued=0)
    session.add(replay)
    return replay


# ---------------------------------------------------------------- dispatch

@dataclass
class Result:
    delivery_id: int
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _insert_ignoring_duplicates(session: Session, rows: list[dict]) -> int:
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(WebhookDelivery).values(rows).on_conflict_do_nothing().returning(WebhookDelivery.id)
    return len(session.execute(stmt).all())


class Dispatcher:
    def __init__(self, sessions: sessionmaker[Session], settings: PublicSettings,
                 queued: threading.Event | None = None):
        self.sessions = sessions
        self.settings = settings
        # Set when this process's ingest or a replay has queued deliveries:
        # the delivery loop of the same process looks at once (`run_delivery`).
        self.queued = queued or threading.Event()
        self.topic = settings.public_topic
        self.bootstrap = settings.kafka_bootstrap
        self._http: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    # --- ingest

    def make_consumer(self, **config) -> KafkaConsumer:
        ensure_topics(self.bootstrap, [self.topic])
        # The broker holds an empty fetch as long as for the idempotent
        # consumers (IDLE_FETCH_WAIT_MS): fewer fetch rounds at rest, and
        # a record that arrives is still answered at once.
        config = {"fetch_max_wait_ms": IDLE_FETCH_WAIT_MS, **config}
        consumer = KafkaConsumer(**connections.kafka(), bootstrap_servers=self.bootstrap, group_id=self.group,
                                 enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500, **config)
        # The topic's partitions known before the group's first assignment:
        # a member that assigns without them gives this one none, and
        # kafka-python may not look again before its next metadata refresh
        # (5 minutes). A test once waited 90 s for deliveries that way.
        deadline = time.monotonic() + 30
        while not consumer.partitions_for_topic(self.topic) and time.monotonic() < deadline:
            time.sleep(0.2)
        consumer.subscribe([self.topic])
        return consumer

    @property
    def group(self) -> str:
        """The ingest's consumer group: one per topic prefix (group_for)."""
        return group_for(self.settings.kafka_topic_prefix, INGEST_GROUP)

    def _rows_for(self, subs: list[WebhookSubscription], record, generation: int, now: datetime) -> list[dict]:
        if not subs:
            return []        # nobody subscribed: the record is not parsed
        event = Event.from_json(record.value)
        return [dict(subscription_id=s.id, generation=generation, event_id=event.id, event_type=event.type,
                     subject=event.subject, partition=record.partition, offset=record.offset,
                     payload=record.value.decode(), status="pending", attempts=0, next_attempt_at=now, created_at=now)
                for s in subs if matches(s.event_types, event.type)]

    def ingest_once(self, consumer: KafkaConsumer, timeout_ms: int = 500) -> int:
        """One poll: deliveries for every matching subscription, then the offsets."""
        batches = list(consumer.poll(timeout_ms=timeout_ms).items())
        queued = written = 0
        try:
            for tp, records in batches:
                with self.sessions() as session, session.begin():
                    subs = session.scalars(sa.select(WebhookSubscription).where(WebhookSubscription.active)).all()
                    now = datetime.now(UTC)
                    rows = [row for r in records for row in self._rows_for(subs, r, 0, now)]
                    queued += _insert_ignoring_duplicates(session, rows)
                written += 1
                # After the database commit: a crash in between re-reads the
                # records, and the unique key drops the repeats.
                consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(records[-1].offset + 1, "", -1)})
        except Exception:
            if queued:
                self.queued.set()       # what was written is due all the same
            # A failed write or a refused commit: the partitions not written
            # are read again, not skipped.
            rewind(consumer, batches[written:])
            raise
        if queued:
            self.queued.set()
        return queued

    def replay_once(self) -> int:
        """Serves the requested replays: reads the topic from the offset up to
        its end at this moment and queues deliveries of generation = replay id."""
        with self.sessions() as session:
            pending = session.scalars(sa.select(WebhookReplay).where(WebhookReplay.status == "requested")
                                      .order_by(WebhookReplay.id)).all()
        total = 0
        for replay in pending:
            total += self._replay(replay)
        if total:
            self.queued.set()
        return total

    def _replay(self, replay: WebhookReplay) -> int:
        ensure_topics(self.bootstrap, [self.topic])
        reader = KafkaConsumer(**connections.kafka(), bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                               max_poll_records=500)
        queued = 0
        try:
            partitions = sorted(reader.partitions_for_topic(self.topic) or [])
            if replay.partition is not None:
                partitions = [p for p in partitions if p == replay.partition]
            tps = [TopicPartition(self.topic, p) for p in partitions]
            reader.assign(tps)
            ends = reader.end_offsets(tps)
            starts = reader.beginning_offsets(tps)
            for tp in tps:
                reader.seek(tp, max(replay.from_offset, starts[tp]))
            remaining = {tp for tp in tps if reader.position(tp) < ends[tp]}
            with self.sessions() as session:
                sub = session.get(WebhookSubscription, replay.subscription_id)
            deadline = time.monotonic() + 300
            while remaining and time.monotonic() < deadline:
                batches = reader.poll(timeout_ms=500)
                now = datetime.now(UTC)
                rows = []
                for tp, records in batches.items():
                    for r in records:
                        if tp in remaining and r.offset < ends[tp]:
                            rows += self._rows_for([sub], r, replay.id, now)
                # Partition by partition, each in offset order: ids keep each subject's order.
                with self.sessions() as session, session.begin():
                    queued += _insert_ignoring_duplicates(session, sorted(rows, key=lambda r: (r["partition"], r["offset"])))
                remaining = {tp for tp in remaining if reader.position(tp) < ends[tp]}
            if remaining:
                raise TimeoutError(f"replay {replay.id}: topic not read to its end")
        finally:
            reader.close()
        with self.sessions() as session, session.begin():
            row = session.get(WebhookReplay, replay.id)
            row.status, row.done_at, row.queued = "done", datetime.now(UTC), queued
        log.info("webhooks.replayed", replay=replay.id, queued=queued)
        return queued

    def run_ingest(self, stop: threading.Event) -> None:
        consumer = None
        backoff_s = 1.0
        while not stop.is_set():
            try:
                if consumer is None:
                    consumer = self.make_consumer()
                self.ingest_once(consumer)
                self.replay_once()
                backoff_s = 1.0
            except Exception as exc:
                log.warning("webhooks.ingest_failed", error=repr(exc), retry_in=backoff_s)
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False)
                    except Exception:
                        pass
                    consumer = None
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 30)
        if consumer is not None:
            consumer.close(autocommit=False)

    # --- delivery

    def due(self, session: Session, now: datetime, limit: int = 100) -> list[WebhookDelivery]:
        """The head of each (subscription, subject) chain, if it is due."""
        d, earlier = WebhookDelivery, aliased(WebhookDelivery)
        blocked = sa.exists().where(earlier.subscription_id == d.subscription_id, earlier.subject == d.subject,
                                    earlier.id < d.id, earlier.status.in_(BLOCKING))
        return list(session.scalars(
            sa.select(d).join(WebhookSubscription, WebhookSubscription.id == d.subscription_id)
            .where(d.status == "pending", d.next_attempt_at <= now, WebhookSubscription.active, ~blocked)
            .order_by(d.id).limit(limit).with_for_update(of=d, skip_locked=True)
        ))

    def _post(self, url: str, secret: str, d: WebhookDelivery) -> Result:
        body = d.payload.encode()
        headers = {
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": "Kezek-Webhooks/1",
            "Kezek-Event-Id": d.event_id,
            "Kezek-Event-Type": d.event_type,
            "Kezek-Subject": d.subject,
            "Kezek-Delivery": str(d.id),
            "Kezek-Attempt": str(d.attempts + 1),
            "Kezek-Offset": f"{d.partition}:{d.offset}",
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        }
        started = time.perf_counter()
        try:
            response = self._client().post(url, content=body, headers=headers)
            return Result(d.id, response.status_code, None if response.is_success else f"HTTP {response.status_code}",
                          int((time.perf_counter() - started) * 1000))
        except httpx.HTTPError as exc:
            return Result(d.id, None, f"{type(exc).__name__}: {exc}"[:500], int((time.perf_counter() - started) * 1000))

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.settings.webhook_timeout_seconds, follow_redirects=False)
        return self._http

    def claim(self, now: datetime) -> tuple[list[WebhookDelivery], dict[str, WebhookSubscription]]:
        """Takes the due deliveries for this process: each is leased by
        moving its next attempt past the time a send can take, in a
        conditional update, so that another gateway replica neither sees it
        due nor can take it meanwhile (its rows are skipped while locked on
        PostgreSQL; on SQLite the update of a row taken first changes
        nothing). If this process dies mid-send, the lease ends and the
        delivery is tried again (receivers drop a repeat by Kezek-Event-Id)."""
        lease_end = now + timedelta(seconds=self.settings.webhook_timeout_seconds + 30)
        with self.sessions() as session, session.begin():
            batch = []
            for d in self.due(session, now):
                taken = session.execute(
                    sa.update(WebhookDelivery)
                    .where(WebhookDelivery.id == d.id, WebhookDelivery.status == "pending",
                           WebhookDelivery.next_attempt_at <= now)
                    .values(next_attempt_at=lease_end)
                    .execution_options(synchronize_session=False))
                if taken.rowcount == 1:
                    batch.append(d)
            subs = {s.id: s for s in session.scalars(sa.select(WebhookSubscription).where(
                WebhookSubscription.id.in_({d.subscription_id for d in batch})))}
            session.expunge_all()     # read after the commit, as they were when taken
        return batch, subs

    def deliver_once(self) -> int:
        """Sends every due delivery (one per subject at a time); returns how many were tried."""
        batch, subs = self.claim(datetime.now(UTC))
        if not batch:
            return 0
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.settings.webhook_concurrency),
                                            thread_name_prefix="webhook")
        results = list(self._pool.map(lambda d: self._post(subs[d.subscription_id].url,
                                                           subs[d.subscription_id].secret, d), batch))
        self._record(results)
        return len(results)

    def _record(self, results: list[Result]) -> None:
        s = self.settings
        with self.sessions() as session, session.begin():
            now = datetime.now(UTC)
            for r in results:
                d = session.get(WebhookDelivery, r.delivery_id)
                if d is None or d.status != "pending":
                    continue  # skipped by an administrator meanwhile
                d.attempts += 1
                d.last_status_code, d.last_error = r.status_code, r.error
                session.add(WebhookAttempt(delivery_id=d.id, attempt=d.attempts, at=now, status_code=r.status_code,
                                           error=r.error, duration_ms=r.duration_ms))
                if r.ok:
                    d.status, d.delivered_at = "delivered", now
                elif d.attempts >= s.webhook_max_attempts:
                    d.status = "dead"
                    log.warning("webhooks.dead", delivery=d.id, subscription=d.subscription_id, error=r.error)
                else:
                    wait = backoff(d.attempts, s.webhook_backoff_seconds, s.webhook_backoff_max_seconds)
                    d.next_attempt_at = now + timedelta(seconds=wait)

    def run_delivery(self, stop: threading.Event, idle_sleep: float = 0.2, idle_max: float = 2.0) -> None:
        """Sends what is due, round after round. With nothing due it looks
        again at once when this process's ingest (or a replay) has queued
        deliveries, else after a pause that doubles from `idle_sleep` up to
        `idle_max`: for another replica's deliveries, retries coming due and
        an administrator's retry. A query every 0.2 s was a fifth of the
        consumer process's CPU at rest, with no subscription at all."""
        idle = IdlePause(idle_sleep, idle_max)
        while not stop.is_set():
            self.queued.clear()
            try:
                if self.deliver_once():
                    idle.found()
                    continue
            except Exception as exc:
                log.warning("webhooks.delivery_failed", error=repr(exc))
                stop.wait(1)
                continue
            deadline = time.monotonic() + idle.next()
            while not (stop.is_set() or self.queued.is_set()) and time.monotonic() < deadline:
                self.queued.wait(min(idle_sleep, max(0.0, deadline - time.monotonic())))
            if self.queued.is_set():
                idle.found()
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._http is not None:
            self._http.close()
            self._http = None
