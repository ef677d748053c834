"""Registration use cases on a real (SQLite) database: what is stored, what
is never stored, what each submission writes to the outbox, and that a
refusal writes nothing."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from kezek.db import make_session_factory
from kezek.events import validate, Event
from kezek.outbox import payloads
from services.registration.address import ReferenceAddressRegistry
from services.registration.domain import RegistrationRefused
from services.registration.models import Account, Draft
from services.registration.sealing import Sealer, Unsealable
from services.registration.service import Caller, RegistrationService, Unauthorized
from tests.builders import Clock, migrated, sqlite_url

CHILD = {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"}
PARENT = {
    "role": "father", "surname": "Асанов", "name": "Бакыт", "pin": "20101199000123",
    "document_type": "passport", "document_number": "AN1234567", "document_issued_on": "2019-01-10",
    "address": {"region": "41721000000000", "district": "41721200000000", "settlement": "41721000000001",
                "street": "Ленина", "house": "5", "flat": "12"},
    "phone": "+77011234567", "email": "bakyt@example.kg",
}
CONFIRM = {"category": "extraordinary", "language": "ky", "preferences": ["osh-3"], "agreement": True}
PASSWORD = "a long enough password"


@pytest.fixture
def env(tmp_path):
    with migrated("registration", sqlite_url(tmp_path, "registration")) as engine:
        clock = Clock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
        svc = RegistrationService(make_session_factory(engine), ReferenceAddressRegistry(), code_key=b"k",
                                  clock=clock, hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
        yield svc, engine, clock


def rows(engine, sql: str) -> list:
    with engine.connect() as c:
        return c.execute(sa.text(sql)).all()


def raw_events(engine, event_type: str | None = None) -> list[dict]:
    return [json.loads(p) for p in payloads(engine, event_type)]


def events(engine, event_type: str | None = None) -> list[dict]:
    """The outbox as the notifications service reads it: sealed fields opened."""
    sealer = Sealer(b"k")
    return [{**e, "data": sealer.opened(e["type"], e["data"])} for e in raw_events(engine, event_type)]


def coded(svc, engine, child=CHILD, parent=PARENT) -> tuple[str, str]:
    """A draft with the child and the parent saved and an e-mail code sent:
    its token and the code the letter carries."""
    token = svc.start_draft("ky")
    svc.save_child(token, child)
    svc.save_parent(token, parent)
    svc.request_code(token)
    return token, events(engine, "registration.email_code_issued.v1")[-1]["data"]["code"]


def filled(svc, engine, child=CHILD, parent=PARENT) -> str:
    svc.clock.now += timedelta(minutes=1)   # one code a minute to an address
    token, code = coded(svc, engine, child, parent)
    svc.verify_code(token, code)
    return token


def first_refusal(act, *args):
    """The first error of the refusal an act must meet."""
    with pytest.raises(RegistrationRefused) as exc:
        act(*args)
    return exc.value.errors[0]


def test_secrets_are_stored_only_as_hashes(env):
    svc, engine, _ = env
    token = filled(svc, engine)
    svc.submit(token, CONFIRM)
    activation = events(engine, "account.activation_issued.v1")[0]["data"]["activation_url"].split("token=")[1]
    svc.activate(activation, PASSWORD)
    session, _ = svc.login(PARENT["email"], PASSWORD)
    code = events(engine, "registration.email_code_issued.v1")[0]["data"]["code"]
    dump = "\n".join(str(r) for t in ("drafts", "activation_tokens", "sessions", "accounts")
                     for r in rows(engine, f"SELECT * FROM {t}"))
    for secret in (token, activation, session, PASSWORD, f"'{code}'"):
        assert secret not in dump
    [(password_hash,)] = rows(engine, "SELECT password_hash FROM accounts")
    assert password_hash.startswith("$argon2id$")


def test_draft_keeps_every_step_and_the_resolved_address(env):
    svc, engine, _ = env
    token = filled(svc, engine)
    view = svc.get_draft(token)
    assert view["next_step"] == "confirm" and view["email_verified"]
    assert view["child"]["birth_date"] == "2024-06-15"
    assert view["parent"]["address"]["street"] == "S-OSH-0001" and view["address"]["lat"] == 40.53
    assert view["parent"]["phone"] == "+77011234567"


def test_changing_the_email_after_the_code_needs_a_new_code(env):
    svc, engine, _ = env
    token = filled(svc, engine)
    svc.save_parent(token, {**PARENT, "email": "other@example.kg"})
    assert svc.get_draft(token)["next_step"] == "contacts"
    assert first_refusal(svc.submit, token, CONFIRM).field == "code"


def test_submission_writes_the_application_and_its_events_together(env):
    svc, engine, clock = env
    done = svc.submit(filled(svc, engine), CONFIRM)
    types = [e["type"] for e in events(engine)]
    assert types == ["registration.email_code_issued.v1", "application.submitted.v1",
                     "application.received.v1", "account.activation_issued.v1"]
    submitted = events(engine, "application.submitted.v1")[0]
    validate(Event.model_validate(submitted))
    assert submitted["subject"] == done.application_id
    assert submitted["data"]["queue_date"] == clock.now.isoformat()
    assert submitted["data"]["child_pin"] == CHILD["pin"] and submitted["data"]["preferences"] == ["osh-3"]
    assert rows(engine, "SELECT status, category FROM applications") == [("submitted", "extraordinary")]


def test_a_refused_submission_writes_nothing(env):
    svc, engine, _ = env
    token = filled(svc, engine)
    before = len(events(engine))
    with pytest.raises(RegistrationRefused):
        svc.submit(token, {**CONFIRM, "agreement": False})
    assert len(events(engine)) == before
    assert rows(engine, "SELECT count(*) FROM applications") == [(0,)]
    assert rows(engine, "SELECT count(*) FROM accounts") == [(0,)]


def test_second_child_of_a_known_parent_joins_the_same_account_without_a_new_link(env):
    svc, engine, _ = env
    first = svc.submit(filled(svc, engine), CONFIRM)
    second = svc.submit(filled(svc, engine, child={**CHILD, "pin": "11004202500012", "name": "Айдана"}), CONFIRM)
    assert first.account_id == second.account_id and first.new_account and not second.new_account
    # Not activated yet: the parent gets a fresh link with the second child.
    assert len(events(engine, "account.activation_issued.v1")) == 2
    svc.activate(events(engine, "account.activation_issued.v1")[-1]["data"]["activation_url"].split("=")[1], PASSWORD)
    svc.submit(filled(svc, engine, child={**CHILD, "pin": "11004202500013", "name": "Элина"}), CONFIRM)
    assert len(events(engine, "account.activation_issued.v1")) == 2
    token, who = svc.login(PARENT["email"], PASSWORD)
    assert len(svc.profile(who.account_id)["applications"]) == 3


def test_any_activation_link_dies_when_one_is_used(env):
    svc, engine, clock = env
    svc.submit(filled(svc, engine), CONFIRM)
    clock.now += timedelta(minutes=1)   # a new link at most once a minute
    svc.resend_activation(PARENT["email"])
    first, second = [e["data"]["activation_url"].split("=")[1] for e in events(engine, "account.activation_issued.v1")]
    svc.activate(second, PASSWORD)
    with pytest.raises(RegistrationRefused):
        svc.activate(first, "another long password")


def test_activation_link_expires_after_three_days(env):
    svc, engine, clock = env
    svc.submit(filled(svc, engine), CONFIRM)
    link = events(engine, "account.activation_issued.v1")[0]["data"]["activation_url"].split("=")[1]
    clock.now += timedelta(days=3, seconds=1)
    assert first_refusal(svc.activate, link, PASSWORD).code == "activation_invalid"


def signed_up(svc, engine) -> str:
    svc.submit(filled(svc, engine), CONFIRM)
    link = events(engine, "account.activation_issued.v1")[-1]["data"]["activation_url"].split("=")[1]
    return svc.activate(link, PASSWORD)


GUESSER, OWNER = Caller(client="203.0.113.7"), Caller(client="198.51.100.2")


def refused_login(svc, password: str, by: Caller) -> Unauthorized:
    with pytest.raises(Unauthorized) as exc:
        svc.login(PARENT["email"], password, by=by)
    return exc.value


def test_wrong_passwords_slow_the_guesser_and_never_lock_the_account(env):
    svc, engine, clock = env
    signed_up(svc, engine)
    assert [refused_login(svc, "wrong", GUESSER).code for _ in range(4)] == ["login_failed"] * 4
    # Slowed, not locked: even the right password waits its turn, then is heard.
    slowed = refused_login(svc, PASSWORD, GUESSER)
    assert (slowed.code, slowed.retry_after) == ("login_throttled", 2)
    clock.now += timedelta(seconds=2)
    token, _ = svc.login(PARENT["email"].upper(), PASSWORD, by=GUESSER)
    assert svc.identify(token).account_id


def test_a_guesser_never_keeps_the_owner_out(env):
    svc, engine, clock = env
    signed_up(svc, engine)
    svc.login(PARENT["email"], PASSWORD, by=OWNER)          # the owner's usual client
    waits = []
    for _ in range(20):
        failure = refused_login(svc, "wrong", GUESSER)
        if failure.code == "login_throttled":
            waits.append(failure.retry_after)
            clock.now += timedelta(seconds=failure.retry_after)
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256]
    # Many other clients guess too: a new client is slowed, the owner's is not.
    for n in range(12):
        refused_login(svc, "wrong", Caller(client=f"192.0.2.{n}"))
    assert refused_login(svc, "wrong", Caller(client="192.0.2.200")).code == "login_throttled"
    token, _ = svc.login(PARENT["email"], PASSWORD, by=OWNER)
    assert svc.identify(token).account_id


def test_the_owner_is_told_of_wrong_passwords_by_e_mail_at_most_once_a_day(env):
    svc, engine, clock = env
    account = signed_up(svc, engine)
    for _ in range(2):
        refused_login(svc, "wrong", GUESSER)
    assert events(engine, "account.sign_in_failed.v1") == []
    refused_login(svc, "wrong", GUESSER)
    [told] = [e["data"] for e in events(engine, "account.sign_in_failed.v1")]
    assert told["parent_id"] == account and told["email"] == PARENT["email"] and told["failures"] == 3
    assert "password" not in json.dumps(told) and GUESSER.client not in json.dumps(told)
    clock.now += timedelta(seconds=2)
    refused_login(svc, "wrong", GUESSER)
    assert len(events(engine, "account.sign_in_failed.v1")) == 1
    clock.now += timedelta(days=1)
    for _ in range(3):
        refused_login(svc, "wrong", Caller(client="192.0.2.1"))
    assert len(events(engine, "account.sign_in_failed.v1")) == 2


def test_unknown_logins_are_answered_like_known_ones(env):
    svc, engine, _ = env
    signed_up(svc, engine)
    for login in (PARENT["email"], "nobody@example.kg"):
        codes = []
        for _ in range(5):
            with pytest.raises(Unauthorized) as exc:
                svc.login(login, "wrong", by=GUESSER if login == PARENT["email"] else OWNER)
            codes.append(exc.value.code)
        assert codes == ["login_failed"] * 4 + ["login_throttled"]


def test_a_session_ends_after_twelve_hours(env):
    svc, engine, clock = env
    svc.submit(filled(svc, engine), CONFIRM)
    svc.activate(events(engine, "account.activation_issued.v1")[0]["data"]["activation_url"].split("=")[1], PASSWORD)
    token, _ = svc.login(PARENT["email"], PASSWORD, kind="bearer")
    assert svc.identify(token).kind == "bearer"
    clock.now += timedelta(hours=12)
    with pytest.raises(Unauthorized):
        svc.identify(token)


def test_a_wrong_code_attempt_is_counted_even_though_refused(env):
    svc, engine, _ = env
    token, right = coded(svc, engine)
    wrong = "000000" if right != "000000" else "111111"
    with pytest.raises(RegistrationRefused):
        svc.verify_code(token, wrong)
    with engine.connect() as c:
        [state] = c.scalars(sa.select(Draft.email_code)).all()
    assert state["attempts"] == 1


def test_code_expires_in_ten_minutes_in_the_service_too(env):
    svc, engine, clock = env
    token, code = coded(svc, engine)
    clock.now += timedelta(minutes=10)
    assert first_refusal(svc.verify_code, token, code).code == "code_expired"


def test_queue_refusal_or_removal_frees_the_child_pin(env):
    from kezek.events import new_event

    svc, engine, _ = env
    first = svc.submit(filled(svc, engine), CONFIRM)
    refused = new_event("application.refused.v1", first.application_id, {
        "application_id": first.application_id, "field": "pin", "reason": "already in the queue"}, source="queue")
    with svc.sessions() as s, s.begin():
        svc.handle_queue_event(s, refused)
    assert svc.profile(first.account_id)["applications"][0]["status"] == "refused"
    second = svc.submit(filled(svc, engine), CONFIRM)
    removed = new_event("application.removed.v1", second.application_id,
                        {"application_id": second.application_id}, source="queue")
    with svc.sessions() as s, s.begin():
        svc.handle_queue_event(s, removed)
    statuses = [a["status"] for a in svc.profile(first.account_id)["applications"]]
    assert statuses == ["refused", "removed"]


def test_sent_codes_and_activation_links_are_scrubbed_from_the_outbox(env):
    svc, engine, _ = env
    svc.submit(filled(svc, engine), CONFIRM)
    sealed = [e["data"]["sealed"] for e in raw_events(engine) if e["type"] in (
        "registration.email_code_issued.v1", "account.activation_issued.v1")]
    assert svc.scrub_sent_secrets() == 0          # not sent yet: the relay still needs them
    with engine.begin() as c:
        c.execute(sa.text("UPDATE outbox SET sent_at = CURRENT_TIMESTAMP"))
    assert svc.scrub_sent_secrets() == 2 and svc.scrub_sent_secrets() == 0
    dump = "\n".join(payloads(engine))
    assert sealed and all(token not in dump for s in sealed for token in s.values())
    assert events(engine, "application.submitted.v1")[0]["data"]["child_pin"] == CHILD["pin"]


def test_e_mail_codes_and_activation_links_leave_only_sealed(env):
    svc, engine, _ = env
    svc.submit(filled(svc, engine), CONFIRM)
    code = events(engine, "registration.email_code_issued.v1")[0]["data"]["code"]
    link = events(engine, "account.activation_issued.v1")[0]["data"]["activation_url"]
    dump = "\n".join(payloads(engine))
    assert code not in dump and link.split("token=")[1] not in dump and "activation_url\": \"http" not in dump
    for e in raw_events(engine):
        validate(Event.model_validate(e))         # the schemas take the sealed form
    [issued] = raw_events(engine, "registration.email_code_issued.v1")
    assert set(issued["data"]) == {"email", "sealed", "expires_at", "locale"}
    token = issued["data"]["sealed"]["code"]
    with pytest.raises(Unsealable):               # another deployment's key
        Sealer(b"another key").open("registration.email_code_issued.v1", "code", token)
    with pytest.raises(Unsealable):               # moved into another event
        Sealer(b"k").open("account.activation_issued.v1", "code", token)


def test_the_notifications_service_opens_what_registration_sealed(env):
    """The two sides of the format, written separately, agree; an event the
    key cannot open is dropped rather than mailed without its code."""
    from services.notifications.sealed import opening_sealed_fields

    svc, engine, _ = env
    svc.submit(filled(svc, engine), CONFIRM)
    seen = []
    handle = opening_sealed_fields(lambda _s, event: seen.append(event.data), b"k")
    for e in raw_events(engine):
        handle(None, Event.model_validate(e))
    code = events(engine, "registration.email_code_issued.v1")[0]["data"]["code"]
    assert [d["code"] for d in seen if "code" in d] == [code]
    assert [d["activation_url"][:4] for d in seen if "activation_url" in d] == ["http"]
    assert not any("sealed" in d for d in seen)
    foreign = opening_sealed_fields(lambda _s, event: seen.append("opened"), b"another key")
    foreign(None, Event.model_validate(raw_events(engine, "registration.email_code_issued.v1")[0]))
    assert "opened" not in seen


def test_imported_parent_account_has_no_password_until_the_parent_activates_it(env):
    from services.registration.service import ImportAccount

    svc, engine, _ = env
    parent = dict(pin="20101198012345", surname="Асанова", name="Айгерим", phone="0555 123 456")
    batch = [ImportAccount(id="balalyk-parent-p1", email="Parent1@Example.KG", **parent),
             ImportAccount(id="balalyk-parent-p2", email="parent.example.kg", **parent),
             ImportAccount(id="balalyk-parent-p3", email="Parent1@example.KG", **parent)]
    got = svc.import_accounts(batch)
    assert got[0] is True
    assert (got[1].errors[0].field, got[1].errors[0].code) == ("parent.email", "email_format")
    assert (got[2].errors[0].field, got[2].errors[0].code) == ("parent.email", "email_taken")
    assert svc.import_accounts(batch[:1]) == [False], "imported once"
    with engine.connect() as c:
        got = c.execute(sa.select(Account.id, Account.email, Account.phone, Account.password_hash)).all()
    assert got == [
        ("balalyk-parent-p1", "Parent1@example.kg", "+996555123456", None)]
    assert raw_events(engine) == [], "nothing is sent to the parents at import"
    with pytest.raises(Unauthorized):
        svc.login("Parent1@example.kg", PASSWORD)

    svc.resend_activation("Parent1@example.kg")
    [link] = [e["data"]["activation_url"].split("=")[1] for e in events(engine, "account.activation_issued.v1")]
    assert svc.activate(link, PASSWORD) == "balalyk-parent-p1"
    assert svc.login("Parent1@example.kg", PASSWORD)[1].account_id == "balalyk-parent-p1"


def test_imported_parent_with_a_malformed_pin_or_phone_is_refused_naming_the_field(env):
    from services.registration.service import ImportAccount

    svc, engine, _ = env
    [got] = svc.import_accounts([ImportAccount(id="x-parent-1", email="a@example.kg", pin="123", surname="Асанова",
                                               name="Айгерим", phone="12")])
    assert {e.field for e in got.errors} == {"parent.pin", "parent.phone"}
    assert rows(engine, "SELECT count(*) FROM accounts") == [(0,)]
