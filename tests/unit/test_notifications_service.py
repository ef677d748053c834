"""The notifications use cases on a real (SQLite) database built by the
service's migrations, with a controllable clock and scripted transports."""
from __future__ import annotations

import json
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.events import new_event
from tests.builders import ran_on
from tests.migrated import upgrade
from kezek.trust import parent_principal
from services.notifications.domain import DEFAULT_RETRY, Channel, Outcome
from services.notifications.jobs import Dispatcher
from services.notifications.models import DeadLetter, Message, ParkedEvent, outbox
from services.notifications.service import Attempt, NotificationService

TZ = ZoneInfo("Asia/Bishkek")


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at_local(self, *args) -> None:
        self.now = datetime(*args, tzinfo=TZ).astimezone(UTC)

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


class Scripted:
    """A transport that answers from a script, then with `then`."""

    def __init__(self, channel: Channel, *script: Outcome, then: Outcome = Outcome.SENT):
        self.channel, self.script, self.then = channel, list(script), then
        self.sent: list = []

    def send(self, msg):
        self.sent.append(msg)
        outcome = self.script.pop(0) if self.script else self.then
        return Attempt(outcome, error=None if outcome in (Outcome.SENT, Outcome.DELIVERED) else "scripted failure")

    def close(self):
        pass


@pytest.fixture
def clock():
    c = Clock(datetime(2027, 3, 1, 5, tzinfo=UTC))  # 11:00 in Bishkek, a Monday
    return c


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """The migrations run once; each test gets a copy of the result."""
    path = tmp_path_factory.mktemp("notifications") / "template.db"
    upgrade("notifications", f"sqlite:///{path}")
    return path


@pytest.fixture
def service(tmp_path, clock, migrated_db):
    shutil.copy(migrated_db, tmp_path / "notifications.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'notifications.db'}")
    yield NotificationService(make_session_factory(engine), tz=TZ, cabinet_url="https://kezek.kg/cabinet",
                              clock=clock)
    engine.dispose()


def consume(service, event) -> bool:
    """What the idempotent consumer does with one delivery."""
    with unit_of_work(service.sessions) as s:
        if not outbox.claim(s, "notifications", event.id):
            return False
        service.handle(s, event)
        return True


def ev(event_type, data, subject=None, time=None):
    return new_event(event_type, subject or data.get("referral_id") or data.get("application_id") or "x",
                     data, source="test", time=time)


def received(app="a1", parent="p1", locale="ky", phone="+996700123456", email="p1@example.kg"):
    return ev("application.received.v1", {"application_id": app, "parent_id": parent, "locale": locale,
                                          "email": email, "phone": phone, "child_name": "Айбек",
                                          "queue_date": "2026-01-10T04:00:00Z"})


def issued(app="a1", ref="r1", needs_confirmation=False, **extra):
    return ev("referral.issued.v1", {"referral_id": ref, "application_id": app, "kindergarten_id": "k1",
                                     "kindergarten_name": "Күн", "deadline": "2027-03-08T18:00:00Z",
                                     "needs_confirmation": needs_confirmation, **extra})


def messages(service, **where):
    with service.sessions() as s:
        q = sa.select(Message).order_by(Message.created_at, Message.channel)
        for k, v in where.items():
            q = q.where(getattr(Message, k) == v)
        return list(s.scalars(q))


def outbox_events(service, prefix="notification."):
    with service.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.type, outbox.table.c.payload).order_by(outbox.table.c.seq))
        return [(t, json.loads(p)["data"]) for t, p in rows if t.startswith(prefix)]


def dispatch(service, *transports):
    for t in transports:
        Dispatcher(service, t).run_once()


# ------------------------------------------------------------ one event, one message per channel

def test_redelivered_event_makes_no_second_message(service):
    consume(service, received())
    event = issued()
    assert consume(service, event)
    assert not consume(service, event)
    # Even past the consumer's claim, the handler itself adds nothing twice.
    with unit_of_work(service.sessions) as s:
        service.handle(s, event)
    assert sorted(m.channel for m in messages(service, source_event_id=event.id)) == ["email", "inapp", "sms"]


def test_event_naming_only_the_application_reaches_the_parent_in_their_language(service):
    consume(service, received(locale="kk", phone="+77012345678"))
    consume(service, issued())
    [sms] = messages(service, kind="referral_issued", channel="sms")
    assert sms.address == "+77012345678" and sms.locale == "kk"
    assert sms.body.startswith("Жолдама: Күн балабақшасы.") and "мерзімі: 8 наурыз" in sms.body
    assert sms.sms_encoding == "UCS-2" and sms.sms_segments == 1


def test_an_event_before_the_parents_contacts_is_parked_then_sent_when_they_arrive(service):
    consume(service, issued(app="a9"))
    assert messages(service) == []
    consume(service, received(app="a9", parent="p9", locale="ru"))
    with service.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ParkedEvent)) == 0
    assert {(m.kind, m.channel) for m in messages(service, parent_id="p9")} >= {
        ("referral_issued", "sms"), ("referral_issued", "email"), ("application_received", "email")}


def test_later_referral_events_name_the_kindergarten_of_the_referral(service):
    consume(service, received(locale="ru"))
    consume(service, issued(needs_confirmation=True, office_address="ул. А. Мамбетова, 1"))
    consume(service, ev("referral.privilege_confirmed.v1", {"referral_id": "r1", "application_id": "a1",
                                                            "deadline": "2027-03-15T18:00:00Z"}))
    [sms] = messages(service, kind="privilege_confirmed", channel="sms")
    assert "Күн" in sms.body and "15 марта" in sms.body
    consume(service, ev("referral.deadline_approaching.v1", {"referral_id": "r1", "application_id": "a1",
                                                             "deadline": "2027-03-15T18:00:00Z"}))
    [near] = messages(service, kind="deadline_near", channel="sms")
    assert "Сдайте документы" in near.body  # the enrolment window now, not the confirmation one


def test_out_of_date_certificate_asks_the_parent_for_a_fresh_one_by_sms_with_the_running_deadline(service):
    consume(service, received(locale="ru"))
    consume(service, issued(needs_confirmation=True))
    consume(service, ev("referral.certificate_requested.v1", {"referral_id": "r1", "application_id": "a1",
                                                              "deadline": "2027-03-15T18:00:00Z"}))
    [sms] = messages(service, kind="certificate_requested", channel="sms")
    assert "новую справку" in sms.body and "15 марта" in sms.body
    assert {m.channel for m in messages(service, kind="certificate_requested")} == {"sms", "email", "inapp"}


def test_email_code_goes_by_email_only_to_the_address_in_the_event(service, clock):
    consume(service, ev("registration.email_code_issued.v1", {
        "email": "new@example.kg", "code": "482913", "locale": "en",
        "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}, subject="draft-1"))
    [m] = messages(service)
    assert (m.channel, m.address, m.urgent) == ("email", "new@example.kg", True)
    assert "482913" in m.subject


# ------------------------------------------------------------ quiet hours and rate limit

def test_sms_at_night_waits_until_eight_while_email_and_inapp_go_at_once(service, clock):
    clock.at_local(2027, 3, 1, 23, 0)
    consume(service, received(locale="ru"))
    consume(service, issued())
    sms, email, inapp = Scripted(Channel.SMS), Scripted(Channel.EMAIL), Scripted(Channel.INAPP, then=Outcome.DELIVERED)
    dispatch(service, sms, email, inapp)
    assert sms.sent == [] and len(email.sent) == 2 and len(inapp.sent) == 2
    clock.at_local(2027, 3, 2, 7, 59)
    dispatch(service, sms)
    assert sms.sent == []
    clock.at_local(2027, 3, 2, 8, 0)
    dispatch(service, sms)
    assert [m.address for m in sms.sent] == ["+996700123456"]


def test_email_code_at_night_is_sent_at_once(service, clock):
    clock.at_local(2027, 3, 1, 23, 30)
    consume(service, ev("registration.email_code_issued.v1", {
        "email": "n@example.kg", "code": "111222", "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}))
    email = Scripted(Channel.EMAIL)
    dispatch(service, email)
    assert len(email.sent) == 1


def test_a_burst_of_sms_to_one_phone_is_spread_over_the_rate_limit(service, clock):
    consume(service, received(locale="ru"))
    for i in range(7):
        consume(service, issued(ref=f"r{i}"))
    slots = sorted(m.next_attempt_at for m in messages(service, channel="sms"))
    assert len(slots) == 7
    assert all(s == slots[0] for s in slots[:5])
    assert slots[5] >= slots[0] + timedelta(hours=1) and slots[6] >= slots[0] + timedelta(hours=1)


# ------------------------------------------------------------ retries, dead letters, expiry

def test_failing_sms_is_retried_with_backoff_then_dead_lettered(service, clock):
    consume(service, received(locale="ru"))
    consume(service, issued())
    sms = Scripted(Channel.SMS, then=Outcome.TRANSIENT)
    waits = []
    for _ in range(DEFAULT_RETRY.max_attempts):
        dispatch(service, sms)
        [m] = messages(service, channel="sms")
        if m.next_attempt_at:
            nxt = m.next_attempt_at.replace(tzinfo=UTC)
            waits.append(nxt - clock.now)
            clock.now = nxt
    [m] = messages(service, channel="sms")
    assert len(sms.sent) == DEFAULT_RETRY.max_attempts
    assert m.status == "failed" and m.attempts == DEFAULT_RETRY.max_attempts
    assert waits == sorted(waits) and len(waits) == DEFAULT_RETRY.max_attempts - 1
    with service.sessions() as s:
        assert s.get(DeadLetter, m.id).attempts == DEFAULT_RETRY.max_attempts
    failed = [d for t, d in outbox_events(service) if t == "notification.failed.v1"]
    assert [f["message_id"] for f in failed] == [m.id]


def test_a_retry_due_at_night_waits_for_eight(service, clock):
    clock.at_local(2027, 3, 1, 21, 59, 50)
    consume(service, received(locale="ru"))
    consume(service, issued())
    dispatch(service, Scripted(Channel.SMS, Outcome.TRANSIENT))
    [m] = messages(service, channel="sms")
    assert m.next_attempt_at.replace(tzinfo=UTC) == datetime(2027, 3, 2, 8, tzinfo=TZ)


def test_refused_number_is_dead_lettered_without_retry(service):
    consume(service, received(locale="ru"))
    consume(service, issued())
    sms = Scripted(Channel.SMS, Outcome.PERMANENT)
    dispatch(service, sms)
    [m] = messages(service, channel="sms")
    assert m.status == "failed" and m.attempts == 1 and len(sms.sent) == 1


def test_an_expired_code_is_never_sent(service, clock):
    consume(service, ev("registration.email_code_issued.v1", {
        "email": "n@example.kg", "code": "111222", "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}))
    clock.advance(minutes=11)
    email = Scripted(Channel.EMAIL)
    dispatch(service, email)
    [m] = messages(service)
    assert email.sent == [] and m.status == "failed" and "expired" in m.last_error


def test_a_message_whose_sender_died_mid_send_is_claimed_again_after_the_lease(service, clock):
    consume(service, received(locale="ru"))
    [claimed] = service.claim_due(Channel.EMAIL)
    assert service.claim_due(Channel.EMAIL) == []       # leased
    clock.advance(minutes=3)
    [again] = service.claim_due(Channel.EMAIL)
    assert again.id == claimed.id


def test_a_send_the_database_could_not_record_is_recorded_when_it_answers_and_never_sent_twice(service, clock,
                                                                                              monkeypatch):
    consume(service, received(locale="ru"))
    record = service.record_attempts
    failures = [sa.exc.OperationalError("UPDATE messages", {}, ConnectionError("the database died"))] * 2

    def flaky(attempts):
        if failures:
            raise failures.pop()
        return record(attempts)

    monkeypatch.setattr(service, "record_attempts", flaky)
    email = Scripted(Channel.EMAIL)
    Dispatcher(service, email, sleep=lambda _s: None).run_once()
    [m] = messages(service, channel="email")
    assert m.status == "sent" and not failures
    clock.advance(minutes=3)                                # past the lease: nothing to send again
    Dispatcher(service, email, sleep=lambda _s: None).run_once()
    assert len(email.sent) == 1


def test_a_send_accepted_before_its_sender_died_is_recorded_after_the_lease_never_sent_again(service, clock,
                                                                                            monkeypatch):
    consume(service, received(locale="ru"))

    class Died(BaseException):
        """kill -9 between the provider's acceptance and the record."""

    def dies(attempts):
        raise Died
    monkeypatch.setattr(service, "record_attempts", dies)
    email = Scripted(Channel.EMAIL)
    with pytest.raises(Died):
        Dispatcher(service, email).run_once()
    monkeypatch.undo()
    assert len(email.sent) == 1
    clock.advance(minutes=3)                                # the lease has ended
    Dispatcher(service, email).run_once()
    assert len(email.sent) == 1                             # recorded, not sent again
    [m] = messages(service, channel="email")
    assert m.status == "sent" and m.attempts == 1 and m.accepted_at is not None
    assert [t for t, _d in outbox_events(service)].count("notification.sent.v1") == 1


def test_an_sms_accepted_before_its_sender_died_is_sent_again_under_its_key_and_reaches_the_parent_once(
        service, clock, monkeypatch):
    """The SMS gateway drops a repeat of a key it accepted: no note of the
    acceptance is written before the round's record (a transaction for
    each SMS), and a crash in between costs a repeat the gateway drops."""
    from services.notifications.channels import HttpSms
    from services.notifications.devservers import DevSmsGateway

    consume(service, received(locale="ru"))
    consume(service, issued())

    class Died(BaseException):
        """kill -9 between the gateway's acceptance and the record."""

    def dies(attempts):
        raise Died
    noted = []
    monkeypatch.setattr(service, "note_accepted", lambda *a: noted.append(a))
    monkeypatch.setattr(service, "record_attempts", dies)
    gateway = DevSmsGateway(receipts=False).start()
    try:
        sms = HttpSms(gateway.url)
        with pytest.raises(Died):
            Dispatcher(service, sms).run_once()
        monkeypatch.undo()
        assert noted == []
        clock.advance(minutes=3)                            # the lease has ended
        Dispatcher(service, sms).run_once()
        [m] = messages(service, channel="sms")
        assert len(gateway.requests) == 2 and {r.key for r in gateway.requests} == {m.id}
        assert gateway.delivered_to("+996700123456") == [m.body]
        assert m.status == "sent" and m.attempts == 1
        assert [t for t, _d in outbox_events(service)].count("notification.sent.v1") == 1
    finally:
        gateway.stop()


def test_a_round_of_e_mails_sent_one_after_another_is_recorded_in_one_transaction(service, monkeypatch):
    for i in range(3):
        consume(service, received(app=f"a{i}", parent=f"p{i}", email=f"p{i}@example.kg"))
    record, rounds = service.record_attempts, []

    def recording(attempts):
        rounds.append(len(attempts))
        return record(attempts)
    monkeypatch.setattr(service, "record_attempts", recording)
    email = Scripted(Channel.EMAIL)
    assert Dispatcher(service, email).run_once() == 3
    assert len(email.sent) == 3
    assert rounds == [3]
    assert {m.status for m in messages(service, channel="email")} == {"sent"}
    assert [t for t, _d in outbox_events(service)].count("notification.sent.v1") == 3


def test_a_send_never_accepted_before_its_sender_died_is_sent_again_after_the_lease(service, clock):
    consume(service, received(locale="ru"))
    service.claim_due(Channel.EMAIL)                     # claimed, then the process died before the answer
    clock.advance(minutes=3)
    email = Scripted(Channel.EMAIL)
    Dispatcher(service, email).run_once()
    assert len(email.sent) == 1 and messages(service, channel="email")[0].status == "sent"


# ------------------------------------------------------------ statuses and receipts

def test_receipt_marks_sms_delivered_and_repeats_change_nothing(service):
    consume(service, received(locale="ru"))
    consume(service, issued())
    dispatch(service, Scripted(Channel.SMS))
    [m] = messages(service, channel="sms")
    assert m.status == "sent"
    assert service.record_receipt(message_id=m.id, delivered=True)
    assert service.record_receipt(message_id=m.id, delivered=False, error="late")
    [m] = messages(service, channel="sms")
    assert m.status == "delivered" and m.delivered_at is not None
    types = [t for t, d in outbox_events(service) if d["message_id"] == m.id]
    assert types == ["notification.queued.v1", "notification.sent.v1", "notification.delivered.v1"]


def test_receipt_that_overtakes_our_record_of_the_send_stays_delivered(service):
    consume(service, received(locale="ru"))
    consume(service, issued())
    [out] = service.claim_due(Channel.SMS)
    assert service.record_receipt(message_id=out.id, delivered=True)
    service.record_attempt(out.id, Attempt(Outcome.SENT, provider_ref="gw-1"))
    [m] = messages(service, channel="sms")
    assert (m.status, m.provider_ref) == ("delivered", "gw-1") and m.sent_at is not None


def test_receipt_for_an_unknown_message_is_reported(service):
    assert not service.record_receipt(message_id=str(uuid.uuid4()), delivered=True)


def test_status_events_carry_no_address_and_no_text(service):
    consume(service, received(locale="ru"))
    dispatch(service, Scripted(Channel.EMAIL), Scripted(Channel.INAPP, then=Outcome.DELIVERED))
    events = outbox_events(service)
    assert {t for t, _ in events} == {"notification.queued.v1", "notification.sent.v1", "notification.delivered.v1"}
    blob = json.dumps([d for _, d in events], ensure_ascii=False)
    assert "p1@example.kg" not in blob and "+996700123456" not in blob and "Айбек" not in blob


def test_inapp_message_is_in_the_parents_inbox_once_delivered_and_can_be_read(service):
    consume(service, received(locale="en"))
    assert service.inbox("p1") == []
    dispatch(service, Scripted(Channel.INAPP, then=Outcome.DELIVERED))
    [item] = service.inbox("p1")
    assert item.kind == "application_received" and service.unread("p1") == 1
    assert not service.mark_read("someone-else", item.id, who=parent_principal("someone-else"))
    assert service.mark_read("p1", item.id, who=parent_principal("p1")) and service.unread("p1") == 0


# ------------------------------------------------------------ top ten

def test_top_ten_is_announced_once(service):
    consume(service, received(locale="ru"))

    def moved(prev, pos):
        consume(service, ev("application.position_changed.v1", {"application_id": "a1", "position": pos,
                                                                "previous_position": prev}))
    moved(14, 11)
    moved(11, 10)
    moved(10, 12)
    moved(12, 9)
    assert len(messages(service, kind="top_ten_reached", channel="email")) == 1


def consume_batch(service, events) -> None:
    """What the idempotent consumer does with one poll of a partition: the
    events claimed, read for together (`prepare`), handled in order, what
    they parked written together (`finish`), one transaction."""
    with unit_of_work(service.sessions) as s:
        fresh = outbox.claim_many(s, "notifications", [e.id for e in events])
        service.prepare(s, [e for e in events if e.id in fresh])
        for e in events:
            if e.id in fresh:
                service.handle(s, e)
        service.finish(s, events)


def test_a_batch_read_together_tells_what_its_events_one_by_one_tell(service):
    consume(service, received(app="a1", parent="p1", locale="ru"))
    consume(service, received(app="a2", parent="p2", locale="ru"))

    def moved(app, prev, pos):
        return ev("application.position_changed.v1", {"application_id": app, "position": pos,
                                                      "previous_position": prev})
    consume_batch(service, [
        moved("a1", 14, 11), moved("a1", 11, 9), moved("a1", 9, 12), moved("a1", 12, 8),   # news once
        moved("a2", 30, 25),                                    # no news
        moved("a9", 20, 5),                                     # not known yet: parked
        received(app="a3", parent="p3", locale="ru"), moved("a3", 12, 7),   # known within the batch
    ])
    told = {m.application_id for m in messages(service, kind="top_ten_reached", channel="email")}
    assert len(messages(service, kind="top_ten_reached", channel="email")) == 2 and told == {"a1", "a3"}
    with service.sessions() as s:
        assert [p.application_id for p in s.scalars(sa.select(ParkedEvent))] == ["a9"]
    consume(service, received(app="a9", parent="p9", locale="ru"))      # the parked news is told then
    assert len(messages(service, kind="top_ten_reached", application_id="a9", channel="email")) == 1


def test_a_batch_of_position_events_reads_its_applications_and_contacts_once(service):
    for i in range(5):
        consume(service, received(app=f"a{i}", parent=f"p{i}", locale="ru"))
    events = [ev("application.position_changed.v1", {"application_id": f"a{i % 5}", "position": 50 - i,
                                                     "previous_position": 51 - i}) for i in range(20)]
    with ran_on(service.sessions.kw["bind"]) as ran:
        consume_batch(service, events)
    # one for the applications (locked), one for which parents have contacts; none per event
    assert len(ran.selects()) == 2, ran.selects()
    with service.sessions() as s:
        from services.notifications.models import KnownApplication
        assert {a.application_id: a.last_position for a in s.scalars(sa.select(KnownApplication))} == {
            f"a{i}": 50 - (15 + i) for i in range(5)}


def test_a_batch_of_received_events_looks_for_parked_events_once_and_replays_those_there_are(service):
    """An import's received events come by the thousand, most with nothing
    parked: the batch takes off what is parked for them in one statement,
    and replays those (parked before the batch, or earlier in it, which
    never reach the table) as one by one."""
    def moved(app, prev, pos):
        return ev("application.position_changed.v1", {"application_id": app, "position": pos,
                                                      "previous_position": prev})
    consume_batch(service, [moved("b1", 20, 5)])                          # not known yet: parked
    with ran_on(service.sessions.kw["bind"]) as ran:
        consume_batch(service, [*(received(app=f"b{i}", parent=f"q{i}", locale="ru") for i in range(1, 6)),
                                moved("b7", 30, 4), received(app="b7", parent="q7", locale="ru")])
    # one for the batch, none per application with something parked (b1, and b7 parked within the batch)
    assert len(ran.selects("PARKED_EVENTS")) == 1, ran.selects("PARKED_EVENTS")
    told = {m.application_id for m in messages(service, kind="top_ten_reached", channel="email")}
    assert told == {"b1", "b7"}
    with service.sessions() as s:
        assert s.scalars(sa.select(ParkedEvent)).all() == []


def test_an_imports_parked_positions_are_written_once_a_batch_and_replayed_with_one_read_a_run(service):
    """An import parks every child's first positions (their received events
    come later): a batch writes what it parked in one execution, and a run
    of received events that replays them writes its contacts and
    applications in one execution each and reads the applications once for
    the run, not each application (three statements a child held the
    notifications' intake of an import to about 140 events a second)."""
    def moved(app, prev, pos):
        return ev("application.position_changed.v1", {"application_id": app, "position": pos,
                                                      "previous_position": prev})
    engine = service.sessions.kw["bind"]
    with ran_on(engine) as parking:
        consume_batch(service, [moved(f"c{i}", 30, 20 - i) for i in range(5)]
                      + [moved(f"c{i}", 20 - i, 15 - i) for i in range(5)])
    with ran_on(engine) as replaying:
        consume_batch(service, [ev("application.received.v1", {**received(app=f"c{i}", parent=f"r{i}").data,
                                                                "imported": True}) for i in range(5)])
    assert parking.inserts().count("PARKED_EVENTS") == 1, parking.inserts()
    # what is parked for the batch, which of its applications are known; then the run's applications
    reads = replaying.selects()
    assert len(reads) == 2 + 1, "\n".join(r[:90] + " " + r[-60:] for r in reads)
    assert [t for t in replaying.inserts() if t in ("CONTACTS", "APPLICATIONS")] == ["CONTACTS", "APPLICATIONS"]
    assert messages(service, kind="top_ten_reached") == []          # no news: nothing made, nothing read for it
    with service.sessions() as s:
        assert s.scalars(sa.select(ParkedEvent)).all() == []
        from services.notifications.models import KnownApplication
        assert {a.application_id: a.last_position for a in s.scalars(sa.select(KnownApplication))} == {
            f"c{i}": 15 - i for i in range(5)}


def test_a_run_of_received_events_replays_their_parked_news_before_the_next_event_of_the_batch(service):
    """The replay of a run's parked events waits for the run's end, never
    past it: a parked move into the top ten is told to the parent whose
    contact the run wrote, and the batch's next move of that child counts
    from the replayed position, not from before it."""
    def moved(app, prev, pos):
        return ev("application.position_changed.v1", {"application_id": app, "position": pos,
                                                      "previous_position": prev})
    consume_batch(service, [moved("d1", 14, 9), moved("d2", 30, 20)])                     # parked
    consume_batch(service, [received(app="d1", parent="f1", locale="ru"), received(app="d2", parent="f2", locale="ru"),
                            moved("d1", 9, 12), moved("d1", 12, 8)])
    told = messages(service, kind="top_ten_reached", channel="email")
    assert [m.application_id for m in told] == ["d1"], "told once: the replayed move, not the later one again"
    with service.sessions() as s:
        from services.notifications.models import KnownApplication
        assert {a.application_id: a.last_position for a in s.scalars(sa.select(KnownApplication))} == {
            "d1": 8, "d2": 20}
        assert s.scalars(sa.select(ParkedEvent)).all() == []


def test_a_run_of_imported_received_events_writes_its_contacts_at_once_the_last_of_a_family_winning(service):
    """An import's received events come in runs: their contacts and
    applications are written in one execution each, in order, so that of
    siblings' events the later one's contact stands, as one by one."""
    def moved_in(app, parent, phone):
        return ev("application.received.v1", {**received(app=app, parent=parent, phone=phone).data, "imported": True})
    with ran_on(service.sessions.kw["bind"]) as ran:
        consume_batch(service, [moved_in("s1", "fam", "+996700000001"), moved_in("s2", "fam", "+996700000002"),
                                moved_in("s3", "other", "+996700000003")])
    writes = [many for st, many in zip(ran.statements, ran.many) if st.startswith("INSERT INTO CONTACTS")]
    assert writes == [True], writes
    with service.sessions() as s:
        from services.notifications.models import Contact, KnownApplication
        assert {c.parent_id: c.phone for c in s.scalars(sa.select(Contact))} == {
            "fam": "+996700000002", "other": "+996700000003"}
        assert {a.application_id: a.parent_id for a in s.scalars(sa.select(KnownApplication))} == {
            "s1": "fam", "s2": "fam", "s3": "other"}


def test_a_batch_of_referral_events_writes_its_messages_their_facts_and_audit_rows_in_one_statement_each(service):
    """A distribution day's referral facts come by the thousand: a batch of
    them makes the messages one by one makes (three each), with one insert
    for the messages, one for their notification.queued facts and one for
    their audit rows, and reads its referrals, contacts, phones' slots and
    message ids once for the batch, never once per event."""
    n = 6
    for i in range(n):
        consume(service, received(app=f"a{i}", parent=f"p{i}", locale="ru", phone=f"+99670000001{i}"))
    events = [issued(app=f"a{i}", ref=f"r{i}") for i in range(n)]
    with ran_on(service.sessions.kw["bind"]) as ran:
        consume_batch(service, events)
    inserts = ran.inserts()
    assert inserts.count("MESSAGES") == 1 and inserts.count("OUTBOX") == 1 and inserts.count("AUDIT_TRAIL") == 1, inserts
    reads = ran.selects()
    # applications, parents with contacts, referrals, contacts, message ids, SMS slots
    assert len(reads) == 6, "\n".join(r[:120] for r in reads)
    made = messages(service, kind="referral_issued")
    assert len(made) == 3 * n and {(m.application_id, m.channel) for m in made} == {
        (f"a{i}", c) for i in range(n) for c in ("sms", "email", "inapp")}
    assert {m.address for m in made if m.channel == "sms"} == {f"+99670000001{i}" for i in range(n)}
    queued = [data for t, data in outbox_events(service) if t == "notification.queued.v1"
              and data["kind"] == "referral_issued"]
    assert sorted(q["message_id"] for q in queued) == sorted(m.id for m in made)
    with service.sessions() as s:
        rows = s.execute(sa.text("SELECT subject, details FROM audit_trail WHERE action = 'notification.queued'")).all()
    audited = {subject: json.loads(details) if isinstance(details, str) else details for subject, details in rows}
    assert all(audited[f"message:{m.id}"]["release_at"] for m in made)
    assert {audited[f"message:{m.id}"]["status"] for m in made} == {"queued"}


def test_a_batch_of_positions_entering_the_top_ten_reads_the_parents_contacts_once(service):
    """On a distribution day the children moved into the top ten of every
    pool are news: their parents' contacts are read with the batch, not
    one read (and flush) a position."""
    n = 5
    for i in range(n):
        consume(service, received(app=f"t{i}", parent=f"u{i}", locale="ru"))
    events = [ev("application.position_changed.v1", {"application_id": f"t{i}", "position": 9 - i,
                                                     "previous_position": 12}) for i in range(n)]
    events += [ev("application.position_changed.v1", {"application_id": f"t{i}", "position": 30,
                                                      "previous_position": 31}) for i in range(n)]
    with ran_on(service.sessions.kw["bind"]) as ran:
        consume_batch(service, events)
    # which parents have contacts; the contacts of those in the top ten
    assert len(ran.selects("CONTACTS")) == 2, ran.selects("CONTACTS")
    told = messages(service, kind="top_ten_reached")
    assert {m.application_id for m in told} == {f"t{i}" for i in range(n)}
    assert {m.address for m in told if m.channel == "email"} == {"p1@example.kg"}


def test_a_burst_of_sms_to_one_phone_in_one_batch_is_spread_as_one_by_one(service, clock):
    consume(service, received(locale="ru"))
    consume_batch(service, [issued(ref=f"r{i}") for i in range(7)])
    slots = sorted(m.next_attempt_at for m in messages(service, channel="sms"))
    assert len(slots) == 7
    assert all(s == slots[0] for s in slots[:5])
    assert slots[5] >= slots[0] + timedelta(hours=1) and slots[6] >= slots[0] + timedelta(hours=1)
    queued = {data["message_id"]: data["release_at"] for t, data in outbox_events(service)
              if t == "notification.queued.v1" and data["channel"] == "sms"}
    assert sorted(queued.values()) == sorted(m.next_attempt_at.replace(tzinfo=UTC).isoformat()
                                             for m in messages(service, channel="sms"))


def test_a_batch_at_night_holds_its_sms_until_eight_and_sends_the_rest_at_once(service, clock):
    clock.at_local(2027, 3, 1, 23, 0)
    consume_batch(service, [received(app="n1", parent="q1", locale="ru"), issued(app="n1", ref="rn1")])
    sms, email, inapp = Scripted(Channel.SMS), Scripted(Channel.EMAIL), Scripted(Channel.INAPP, then=Outcome.DELIVERED)
    dispatch(service, sms, email, inapp)
    assert sms.sent == [] and len(email.sent) == 2 and len(inapp.sent) == 2
    clock.at_local(2027, 3, 2, 8, 0)
    dispatch(service, sms)
    assert [m.address for m in sms.sent] == ["+996700123456"]


def imported(app="a1", parent="p1", locale="ru"):
    event = received(app=app, parent=parent, locale=locale)
    return ev("application.received.v1", {**event.data, "imported": True})


def test_an_application_moved_from_the_old_portal_is_not_announced_again_but_its_referral_is_told(service):
    consume(service, issued(app="a1"))        # the import's referral may come before the contacts
    consume(service, imported())
    assert messages(service, kind="application_received") == []
    assert {m.channel for m in messages(service, kind="referral_issued")} == {"sms", "email", "inapp"}


def test_first_position_of_a_moved_application_is_not_top_ten_news_but_a_later_entry_into_it_is(service):
    consume(service, imported())
    consume(service, imported(app="a2", parent="p2"))

    def moved(app, prev, pos):
        consume(service, ev("application.position_changed.v1", {"application_id": app, "position": pos,
                                                                "previous_position": prev}))
    moved("a1", None, 4)      # the first publication after the move: known already
    moved("a2", None, 15)
    moved("a2", 15, 10)       # a real move into the top ten
    assert messages(service, kind="top_ten_reached", application_id="a1") == []
    assert len(messages(service, kind="top_ten_reached", application_id="a2", channel="email")) == 1


def test_first_position_of_a_new_application_in_the_top_ten_is_news(service):
    consume(service, received())
    consume(service, ev("application.position_changed.v1", {"application_id": "a1", "position": 3,
                                                            "previous_position": None}))
    assert len(messages(service, kind="top_ten_reached", channel="email")) == 1


# ------------------------------------------------------------ voucher decisions

def voucher(app="a1", parent="p1", decision="approved", **extra):
    data = {"application_id": app, "parent_id": parent, "decision": decision, "decision_number": 42,
            "decided_at": "2027-03-01T04:00:00Z", "reason": "", **extra}
    return ev("verification.voucher_decided.v1", data, subject=app)


def test_voucher_decision_reaches_the_parent_by_email_and_inbox_in_their_language(service):
    consume(service, received(locale="ky"))
    consume(service, voucher(benefit_type="full"))
    sent = messages(service, kind="voucher_decided")
    assert sorted(m.channel for m in sent) == ["email", "inapp"]  # no SMS: no deadline runs
    assert {m.locale for m in sent} == {"ky"}
    [email] = [m for m in sent if m.channel == "email"]
    assert email.address == "p1@example.kg"
    assert "бекитилди" in email.subject and "толугу менен" in email.body and "42" in email.body


def test_refused_voucher_gives_the_reason(service):
    consume(service, received(locale="ru"))
    consume(service, voucher(decision="rejected", reason="нет договора с детским садом"))
    [inapp] = messages(service, kind="voucher_decided", channel="inapp")
    assert "отказано" in inapp.body and "нет договора с детским садом" in inapp.body


def test_voucher_decision_without_parent_id_reaches_the_parent_of_the_application(service):
    consume(service, received(locale="en"))
    consume(service, voucher(parent=None))
    [email] = messages(service, kind="voucher_decided", channel="email")
    assert (email.parent_id, email.locale) == ("p1", "en") and "approved" in email.subject


def test_voucher_decision_for_a_parent_not_known_yet_waits_for_the_application(service):
    consume(service, voucher())
    assert messages(service) == []
    consume(service, received(locale="kk"))
    assert {(m.channel, m.locale) for m in messages(service, kind="voucher_decided")} == {
        ("email", "kk"), ("inapp", "kk")}


def test_events_overtaking_the_application_wait_for_its_phone_even_if_the_account_came_first(service):
    # Topics interleave: the activation (no phone) and the voucher decision
    # (with parent_id) may both arrive before the application's own event.
    consume(service, ev("account.activation_issued.v1", {
        "parent_id": "p1", "email": "p1@example.kg", "locale": "ru",
        "activation_url": "https://kezek.kg/activate?t=1", "expires_at": "2027-03-03T05:00:00Z"}, subject="p1"))
    consume(service, voucher())
    consume(service, issued())
    assert {m.kind for m in messages(service)} == {"account_activation"}
    consume(service, received(locale="ru"))
    [sms] = messages(service, kind="referral_issued", channel="sms")
    assert sms.address == "+996700123456"
    assert {m.channel for m in messages(service, kind="voucher_decided")} == {"email", "inapp"}


def test_the_owner_is_told_by_e_mail_of_wrong_passwords_for_the_account(service):
    consume(service, ev("account.sign_in_failed.v1", {
        "parent_id": "p9", "email": "p9@example.kg", "locale": "ky", "failures": 3,
        "at": "2027-03-01T05:00:00Z"}, subject="p9"))
    [mail] = messages(service, kind="sign_in_failed")
    assert (mail.channel, mail.address) == ("email", "p9@example.kg")
    assert "3 жолу" in mail.body and "бөгөттөлгөн жок" in mail.body


def eight_referral_sms_due(service) -> None:
    for i in range(8):
        consume(service, received(app=f"a{i}", parent=f"p{i}", phone=f"+99670012{i:04d}"))
        consume(service, issued(app=f"a{i}", ref=f"r{i}"))


def test_a_claim_takes_the_run_out_leases_then_the_urgent_then_the_others_each_in_the_order_they_came_due(
        service, clock):
    eight_referral_sms_due(service)
    ids = sorted(m.id for m in messages(service, channel="sms"))
    now = clock.now
    rows = {ids[0]: dict(status="sending", lease_until=now - timedelta(minutes=1), urgent=False),
            ids[1]: dict(status="queued", urgent=True, next_attempt_at=now - timedelta(minutes=1)),
            ids[2]: dict(status="queued", urgent=False, next_attempt_at=now - timedelta(minutes=10)),
            ids[3]: dict(status="queued", urgent=False, next_attempt_at=now - timedelta(minutes=5)),
            ids[4]: dict(status="queued", urgent=True, next_attempt_at=now + timedelta(hours=1)),    # not due
            **{mid: dict(status="sent") for mid in ids[5:]}}
    with service.sessions() as s, s.begin():
        for mid, values in rows.items():
            s.execute(sa.update(Message).where(Message.id == mid).values(**values))
    assert [m.id for m in service.claim_due(Channel.SMS, limit=3)] == [ids[0], ids[1], ids[2]]
    assert [m.id for m in service.claim_due(Channel.SMS, limit=10)] == [ids[3]]
    assert service.claim_due(Channel.EMAIL, limit=10) != [] and service.claim_due(Channel.SMS) == []


def test_a_dispatcher_looks_for_run_out_leases_every_half_minute_not_at_each_claim(service, clock):
    """Run-out leases come of crashes; an idle dispatcher claims four times
    a second. It looks for them at its first claim and every 30 s after."""
    dispatcher = Dispatcher(service, Scripted(Channel.SMS))
    assert [dispatcher.leases_due(), dispatcher.leases_due()] == [True, False]
    clock.advance(seconds=29)
    assert dispatcher.leases_due() is False
    clock.advance(seconds=2)
    assert dispatcher.leases_due() is True


def test_the_inbox_is_delivered_a_hundred_messages_a_round_while_a_providers_round_is_its_batch(service):
    """An in-app send is the row already there: its dispatcher claims 100
    at once whatever the configured batch, which still bounds the rounds of
    a provider a message at a time (e-mail)."""
    from services.notifications.channels import InAppInbox

    for i in range(130):
        consume(service, received(app=f"a{i}", parent=f"p{i}", locale="ru", email=f"p{i}@example.kg"))
    inbox, email = Dispatcher(service, InAppInbox(), batch=10), Dispatcher(service, Scripted(Channel.EMAIL), batch=10)
    assert [inbox.run_once(), email.run_once()] == [100, 10]
    assert inbox.run_once() == 30
    assert {m.status for m in messages(service, channel="inapp")} == {"delivered"}
    assert len([m for m in messages(service, channel="email") if m.status == "sent"]) == 10


def test_an_acceptance_is_noted_only_on_a_message_being_sent_and_keeps_the_first_provider_reference(service, clock):
    consume(service, received(locale="ru"))
    [out] = service.claim_due(Channel.EMAIL)
    for ref in (None, "smtp-1", "smtp-2"):
        service.note_accepted(out.id, ref)
    [m] = messages(service, channel="email")
    assert (m.status, m.provider_ref) == ("sending", "smtp-1") and m.accepted_at is not None
    noted = m.accepted_at
    service.record_attempt(out.id, Attempt(Outcome.SENT))
    clock.advance(minutes=1)
    service.note_accepted(out.id, "smtp-3")                 # sent already: no longer being sent
    [m] = messages(service, channel="email")
    assert (m.status, m.accepted_at, m.provider_ref) == ("sent", noted, "smtp-1")


def test_sms_over_http_are_sent_several_at_once_each_once_and_recorded(service):
    """A transport that allows it has several sends in flight at once (the
    barrier lets none through until four are waiting: one after another it
    would break); every message is still sent once and recorded as sent."""
    import threading

    eight_referral_sms_due(service)

    class Overlapping(Scripted):
        concurrent = True

        def __init__(self):
            super().__init__(Channel.SMS)
            self.together = threading.Barrier(4, timeout=30)
            self.lock = threading.Lock()

        def send(self, msg):
            self.together.wait()
            with self.lock:
                return super().send(msg)

    sms = Overlapping()
    dispatcher = Dispatcher(service, sms, batch=8, concurrency=4)
    assert dispatcher.run_once() == 8
    assert sorted(m.id for m in sms.sent) == sorted(m.id for m in messages(service, channel="sms"))
    assert len({m.id for m in sms.sent}) == 8
    assert {m.status for m in messages(service, channel="sms")} == {"sent"}
    # A transport that does not say so is sent to one message at a time.
    assert Dispatcher(service, Scripted(Channel.EMAIL), concurrency=4).concurrency == 1


def test_a_slow_sms_send_does_not_hold_up_the_next_ones(service):
    """The dispatcher's loop keeps its slots busy: while one send waits on
    the provider, the messages behind it are claimed and sent (a batch that
    waited for its slowest send would never reach them: the first send here
    answers only once the seven others are through); each is sent once and
    recorded, and on stop what was in flight is recorded too."""
    import threading

    eight_referral_sms_due(service)

    class SlowFirst(Scripted):
        concurrent = True

        def __init__(self):
            super().__init__(Channel.SMS)
            self.lock = threading.Lock()
            self.others = threading.Event()
            self.first: str | None = None

        def send(self, msg):
            with self.lock:
                first = self.first is None
                self.first = self.first or msg.id
            if first:
                assert self.others.wait(30), "the other messages were not sent while the first one waited"
            with self.lock:
                attempt = super().send(msg)
                if len(self.sent) == 7 and self.first not in {m.id for m in self.sent}:
                    self.others.set()
            return attempt

    sms = SlowFirst()
    dispatcher = Dispatcher(service, sms, batch=4, concurrency=4, idle_sleep=0.01)
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher, args=(stop,))
    loop.start()
    try:
        assert sms.others.wait(30)
        deadline = time.monotonic() + 30
        while {m.status for m in messages(service, channel="sms")} != {"sent"} and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(30)
    assert sms.sent[-1].id == sms.first
    assert sorted(m.id for m in sms.sent) == sorted(m.id for m in messages(service, channel="sms"))
    assert {m.status for m in messages(service, channel="sms")} == {"sent"}


def test_a_round_of_concurrent_sends_is_recorded_in_one_transaction_with_one_insert_per_table(service):
    """A round of N sends over HTTP costs the database one claim, the N
    acceptance notes (each committed the moment its provider answers) and
    one transaction for the N records: the messages read once, their facts
    in one insert and their audit rows in one, whatever each outcome (sent,
    retried, given up), never a transaction per send."""
    n = 8
    eight_referral_sms_due(service)

    class Http(Scripted):
        concurrent = True

    sms = Http(Channel.SMS, Outcome.TRANSIENT, Outcome.PERMANENT)
    with ran_on(service.sessions.kw["bind"]) as ran:
        assert Dispatcher(service, sms, batch=n, concurrency=4).run_once() == n
    # the claim, each acceptance (the six sent), the round's record
    assert ran.commits == 1 + (n - 2) + 1, ran.statements
    inserts = ran.inserts()
    assert inserts.count("OUTBOX") == 1 and inserts.count("AUDIT_TRAIL") == 1, inserts
    reads = ran.selects("FROM MESSAGES")
    assert len(reads) == 2 + 1, reads                         # the claim's (leases run out, then those due), the record's
    sms_sent = messages(service, channel="sms")
    assert sorted(m.status for m in sms_sent) == ["failed"] + ["queued"] + ["sent"] * (n - 2)
    assert len({m.id for m in sms.sent}) == n
    kinds = [t for t, data in outbox_events(service) if data.get("channel") == "sms" and t != "notification.queued.v1"]
    assert sorted(kinds) == ["notification.failed.v1"] + ["notification.sent.v1"] * (n - 2)
    with service.sessions() as s:
        actions = s.execute(sa.text(
            "SELECT action FROM audit_trail WHERE action IN ('notification.sent', 'notification.retry_scheduled', "
            "'notification.dead_lettered')")).scalars().all()
    assert sorted(actions) == ["notification.dead_lettered", "notification.retry_scheduled"] + [
        "notification.sent"] * (n - 2)
    # The retried one is due again on its schedule and sent then.
    retried = next(m for m in sms_sent if m.status == "queued")
    assert retried.attempts == 1 and retried.next_attempt_at is not None
