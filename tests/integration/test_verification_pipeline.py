"""The verification service on real infrastructure: PostgreSQL (its schema
from the migrations, the audit log's append-only triggers) and Kafka (the
queue's and registration's facts in through the real relay and the service's
idempotent consumer; its own verification.* facts out through its outbox)."""
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from kafka import KafkaConsumer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

from kezek.db import make_engine, make_session_factory
from kezek.infra.kafka import ensure_topics
from kezek.migrations import upgrade
from kezek.outbox import Outbox
from kezek.relay import OutboxRelay, make_producer
from services.verification.settings import VerificationSettings
from services.verification.consumers import build_consumers
from services.verification.models import AbuseCase, Referral, audit_trail, outbox as verification_outbox
from services.verification import bootstrap
from services.verification import domain as d
from services.verification.usecases.context import Unauthenticated
from tests.fakes.verification import (
    DISTRICT_A, PASSWORD, application_received, application_submitted, referral_closed, referral_issued,
)

pytestmark = pytest.mark.integration


def test_moving_to_the_one_audit_model_keeps_every_entry_and_stays_append_only(pg_url):
    url = pg_url("verification")
    upgrade("verification", url, "verification_0003_throttle")
    engine = make_engine(url)
    try:
        old = [  # what the old audit_log held: a staff act, a look, the abuse rule, the console, a refused sign-in
            ("s-1", "aida", "caseworker", "case.confirm", "referral", "r1", DISTRICT_A, "ok", {"state": "x"}),
            ("s-1", "aida", "caseworker", "case.view", "referral", "r1", DISTRICT_A, "denied", {}),
            (None, "system", "system", "abuse.flag", "abuse_case", "c1", DISTRICT_A, "ok", {"cycles": 2}),
            (None, "system", "", "staff.add", "staff", "s-1", DISTRICT_A, "ok", {"role": "caseworker"}),
            (None, "nobody", "", "login", "", "", "", "refused", {}),
        ]
        with engine.begin() as conn:
            for n, (actor_id, login, role, action, stype, sid, district, outcome, detail) in enumerate(old):
                conn.execute(sa.text(
                    "INSERT INTO audit_log (at, actor_id, actor_login, actor_role, actor_district, action, "
                    "subject_type, subject_id, district, outcome, detail) VALUES (:at, :aid, :login, :role, '', "
                    ":action, :stype, :sid, :district, :outcome, CAST(:detail AS json))"),
                    {"at": datetime(2027, 3, 10, 5, n, tzinfo=UTC), "aid": actor_id, "login": login, "role": role,
                     "action": action, "stype": stype, "sid": sid, "district": district, "outcome": outcome,
                     "detail": json.dumps(detail)})
        upgrade("verification", url)
        with make_session_factory(engine)() as s:
            moved = [(r["actor"], r["actor_role"], r["kind"], r["action"], r["subject"], r["outcome"], r["details"])
                     for r in audit_trail.trail(s)]
        assert moved == [
            ("staff:s-1", "caseworker", "act", "case.confirm", "referral:r1", "ok", {"state": "x"}),
            ("staff:s-1", "caseworker", "look", "case.view", "referral:r1", "denied", {}),
            ("service:verification", "service", "act", "abuse.flag", "abuse_case:c1", "ok", {"cycles": 2}),
            ("service:cli", "service", "act", "staff.add", "staff:s-1", "ok", {"role": "caseworker"}),
            ("anonymous", "anonymous", "act", "login", "login:nobody", "refused", {}),
        ]
        for statement in ("UPDATE audit_trail SET actor = 'forged'", "DELETE FROM audit_trail", "TRUNCATE audit_trail"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT to_regclass('audit_log')")) is None
    finally:
        engine.dispose()


def test_parallel_guesses_on_postgresql_are_counted_one_after_the_other(pg_url):
    """Many wrong passwords sent at once from one client: the counter is
    locked, so only the free ones and the first beyond them are checked."""
    url = pg_url("verification")
    upgrade("verification", url)
    engine = make_engine(url, pool_size=10)
    try:
        now = datetime(2027, 3, 10, 5, tzinfo=UTC)
        service = bootstrap.build(sessions=make_session_factory(engine), clock=lambda: now,
                                  hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        service.staff.add("guessed", "Guessed", "caseworker", DISTRICT_A, PASSWORD)

        def guess(_n: int) -> str:
            try:
                service.staff.login("guessed", "wrong password!", "203.0.113.9")
            except Unauthenticated as exc:
                return exc.code
            return "ok"

        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(guess, range(8)))
        assert codes == ["login_failed"] * (d.FREE_FAILURES + 1) + ["login_throttled"] * (7 - d.FREE_FAILURES)
        token, _ = service.staff.login("guessed", PASSWORD, "10.1.1.20")        # the owner is not locked out
        assert service.staff.notice(token)["failed"] == d.FREE_FAILURES + 1
    finally:
        engine.dispose()


class _SourceBase(DeclarativeBase):
    pass


def relay_all(relay: OutboxRelay, timeout: float = 60) -> int:
    """Relays until the outbox is empty (a first send may wait for a new
    topic's leader)."""
    sent, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            n = relay.relay_once()
        except Exception:
            n = 0
        sent += n
        with relay.sessions() as s:
            if relay.outbox.pending(s) == 0:
                return sent
        time.sleep(0.5)
    return sent


def test_audit_trail_on_postgresql_refuses_update_delete_and_truncate(pg_url):
    url = pg_url("verification")
    upgrade("verification", url)
    engine = make_engine(url)
    try:
        service = bootstrap.build(sessions=make_session_factory(engine))
        service.staff.add("aida", "Aida", "caseworker", DISTRICT_A, PASSWORD)
        service.staff.login("aida", PASSWORD)
        for statement in ("UPDATE audit_trail SET outcome = 'ok'", "DELETE FROM audit_trail WHERE id > 0",
                          "TRUNCATE audit_trail"):
            with pytest.raises(DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(sa.text(statement))
        with make_session_factory(engine)() as s:
            assert [a["action"] for a in audit_trail.trail(s)] == ["staff.add", "login"]
    finally:
        engine.dispose()


def test_facts_from_kafka_build_the_worklist_once_each_and_abuse_goes_out_as_an_event(pg_url, kafka_bootstrap,
                                                                                      tmp_path):
    url = pg_url("verification")
    upgrade("verification", url)
    prefix = f"t{uuid.uuid4().hex[:8]}"

    class Settings(VerificationSettings):
        def database_url_for(self, service: str) -> str:
            return url

    settings = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=prefix)
    ensure_topics(kafka_bootstrap, [f"{prefix}.application", f"{prefix}.referral", f"{prefix}.verification"])

    # The queue's and registration's outboxes, relayed as they are in production.
    source_engine = make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    source = Outbox(_SourceBase.metadata, source="queue")
    _SourceBase.metadata.create_all(source_engine)
    source_sessions = make_session_factory(source_engine)
    now = datetime.now(UTC)
    facts = [application_submitted("a1", pin="10103202300011"), application_received("a1")]
    for i, rid in enumerate(("r1", "r2")):
        t = now - timedelta(days=60 - 20 * i)
        facts += [referral_issued(rid, "a1", deadline=t + timedelta(days=7), at=t),
                  referral_closed("cancelled", rid, "a1", at=t + timedelta(days=2))]
    facts.append(referral_issued("r3", "a1", deadline=now + timedelta(days=5), at=now - timedelta(hours=1)))
    with source_sessions() as s, s.begin():
        for ev in facts:
            s.execute(source.table.insert().values(event_id=ev.id, type=ev.type, subject=ev.subject,
                                                   payload=ev.to_json(), created_at=now))
    relay = OutboxRelay(source_sessions, source, kafka_bootstrap, topic_prefix=prefix)
    assert relay_all(relay) == len(facts)
    # A redelivery, as after a relay crash between send and commit.
    producer = make_producer(kafka_bootstrap)
    producer.send(f"{prefix}.referral", key="r3", value=facts[-1].to_json()).get(30)
    producer.close()

    [consumer] = build_consumers(settings)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        handled = 0
        deadline = time.monotonic() + 60
        while handled < len(facts) and time.monotonic() < deadline:
            handled += consumer.poll_once(500)
        for _ in range(4):          # the redelivered message, if it comes after
            handled += consumer.poll_once(300)
        assert handled == len(facts)
        with sessions() as s:
            assert s.get(Referral, "r3").state == "awaiting_confirmation"
            [case] = s.scalars(sa.select(AbuseCase)).all()
            assert case.cycles == 2 and case.district == DISTRICT_A

        # The service's own facts leave through its outbox.
        out = OutboxRelay(sessions, verification_outbox, kafka_bootstrap, topic_prefix=prefix)
        assert relay_all(out) == 1
        reader = KafkaConsumer(f"{prefix}.verification", bootstrap_servers=kafka_bootstrap,
                               auto_offset_reset="earliest", consumer_timeout_ms=15_000,
                               group_id=f"reader-{prefix}")
        messages = [json.loads(m.value) for m in reader]
        reader.close()
        assert [m["type"] for m in messages] == ["verification.abuse_flagged.v1"]
        assert messages[0]["data"]["referral_ids"] == ["r1", "r2", "r3"]
        assert "child_pin" not in messages[0]["data"]
    finally:
        consumer.close()
        relay.close()
        if "out" in locals():
            out.close()
        engine.dispose()
        source_engine.dispose()
