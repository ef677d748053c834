"""Use cases of the verification service on its real migrated schema
(SQLite), with the referral workflow's updates faked. The real workflow is
exercised by tests/browser/test_caseworker_*.py."""
import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError

from kezek.db import make_session_factory
from kezek.events import Event, new_event, validate
from kezek.files import FolderStore, SealedFiles
from kezek.sealing import Keyring
from services.verification import domain as d
from workflows import rules
from services.verification.models import (
    AbuseCase, Applicant, Certificate, Scan, Staff, VoucherApplication, audit_trail, outbox,
)
from services.verification import bootstrap
from services.verification.readmodel.ingest import Ingest
from services.verification.usecases.context import Forbidden, NotFound, Throttled, Unauthenticated
from tests.builders import Clock, migrated, sqlite_url
from tests.fakes.verification import (
    DISTRICT_A, DISTRICT_B, PASSWORD, PDF, PNG, FakeReferrals, application_received, application_submitted, deliver,
    referral_closed, referral_fact, referral_issued,
)

# Test-only argon2 cost: the production defaults take ~50 ms a hash.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
NOW = datetime(2027, 3, 10, 5, 0, tzinfo=UTC)        # Wednesday 10:00 in Bishkek
TODAY = date(2027, 3, 10)


@pytest.fixture
def env(tmp_path):
    with migrated("verification", sqlite_url(tmp_path, "verification")) as engine:
        sessions = make_session_factory(engine)
        clock = Clock(NOW)
        fake = FakeReferrals()
        service = bootstrap.build(sessions=sessions, referrals=fake, clock=clock, hasher=FAST_HASHER,
                                  files=SealedFiles(FolderStore(tmp_path / "files"), Keyring.development()))
        ingest = bootstrap.build_ingest(clock=clock)
        ids = {}
        for login, role, district in (("aida", "caseworker", DISTRICT_A), ("bakyt", "caseworker", DISTRICT_B),
                                      ("chynara", "supervisor", DISTRICT_A), ("dinara", "supervisor", DISTRICT_B),
                                      ("emil", "commission", DISTRICT_A), ("farida", "commission", DISTRICT_A),
                                      ("gulnara", "commission", DISTRICT_B), ("root", "admin", "")):
            ids[login] = service.staff.add(login, login.title(), role, district, PASSWORD)
        staff = SimpleNamespace(**{login: service.staff.login(login, PASSWORD)[1] for login in ids})
        yield SimpleNamespace(service=service, sessions=sessions, ingest=ingest, fake=fake, clock=clock, staff=staff,
                              deliver=lambda ev: deliver(sessions, ingest, ev))


def seed_case(env, rid="r1", app="a1", pin="10103202300011", district=DISTRICT_A, deadline_days=3,
              issued=NOW - timedelta(days=2), surname="Асанова"):
    env.deliver(application_submitted(app, pin=pin, district=district, surname=surname))
    env.deliver(application_received(app))
    env.deliver(referral_issued(rid, app, deadline=NOW + timedelta(days=deadline_days), at=issued))


def outbox_events(env, event_type):
    with env.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == event_type)).scalars()
        return [Event.from_json(r) for r in rows]


def audit(env, action=None):
    """The audit trail's entries, each with the login of its actor (for a
    refused sign-in, the login tried) and the id of its subject."""
    t = audit_trail.table
    with env.sessions() as s:
        logins = {f"staff:{i}": login for i, login in s.execute(sa.select(Staff.id, Staff.login))}
        q = sa.select(t).order_by(t.c.id)
        if action:
            q = q.where(t.c.action == action)
        rows = s.execute(q).mappings().all()
    return [SimpleNamespace(**r, actor_login=logins.get(r["actor"], r["subject"].partition(":")[2]),
                            subject_id=r["subject"].partition(":")[2], detail=r["details"]) for r in rows]


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------- worklist


def test_worklist_lists_the_districts_waiting_referrals_nearest_deadline_first(env):
    seed_case(env, "r-late", "a1", "10103202300011", deadline_days=4)
    seed_case(env, "r-soon", "a2", "20205202300022", deadline_days=1, surname="Бекова")
    seed_case(env, "r-other", "a3", "10107202300033", district=DISTRICT_B)
    env.deliver(referral_issued("r-general", "a1", deadline=NOW + timedelta(days=1), at=NOW,
                                category="general", needs_confirmation=False))
    view = env.service.cases.worklist(env.staff.aida)
    assert [i["referral_id"] for i in view["items"]] == ["r-soon", "r-late"]
    first = view["items"][0]
    assert first["child"] == "Бекова Айгерим" and first["child_pin"] == "20205202300022"
    assert first["category"] == "extraordinary" and first["parent_phone"] == "+996700123456"
    assert first["kindergarten"] == "Бала бакча № 12 «Күн»"
    assert first["days_left"] == 1 and first["certificate"] is None      # the window ends tomorrow 10:00


def test_worklist_shows_the_childs_earlier_referrals_across_applications(env):
    pin = "10103202300011"
    env.deliver(application_submitted("old-app", pin=pin, queue_date=datetime(2024, 1, 1, tzinfo=UTC)))
    env.deliver(referral_issued("r-old", "old-app", deadline=NOW - timedelta(days=30), at=NOW - timedelta(days=40)))
    env.deliver(referral_closed("cancelled", "r-old", "old-app", at=NOW - timedelta(days=38)))
    seed_case(env, "r-new", "new-app", pin)
    item = env.service.cases.worklist(env.staff.aida)["items"][0]
    assert item["referral_id"] == "r-new"
    assert [(h["referral_id"], h["state"]) for h in item["earlier"]] == [("r-old", "cancelled")]


def test_a_referral_imported_from_the_old_portal_waits_in_the_kindergartens_district_worklist(env):
    # The child never passed through registration: the import's fact names it.
    imported = new_event("referral.imported.v1", "referral:77", {
        "referral_id": "77", "external_id": "balalyk-r9", "application_id": "balalyk-a9", "parent_id": "p9",
        "kindergarten_id": "kg-sun", "kindergarten_name": "Бала бакча № 12 «Күн»", "district": DISTRICT_A,
        "state": "awaiting_confirmation", "deadline": (NOW + timedelta(days=2)).isoformat(),
        "needs_confirmation": True, "extended": False, "confirmed_at": None, "category": "extraordinary",
        "for_category": None, "cohort": 2023, "language": "ru", "issued_at": (NOW - timedelta(days=5)).isoformat(),
        "child_pin": "10103202300011", "child_surname": "Осмонова", "child_name": "Бегимай",
        "child_patronymic": None, "child_birth_date": "2023-03-10", "queue_date": "2024-02-01T04:00:00+00:00"},
        source="queue", time=NOW)
    assert env.deliver(imported) and not env.deliver(imported)
    [item] = env.service.cases.worklist(env.staff.aida)["items"]
    assert (item["referral_id"], item["child"], item["child_pin"]) == ("77", "Осмонова Бегимай", "10103202300011")
    assert item["category"] == "extraordinary" and item["days_left"] == 2
    assert env.service.cases.worklist(env.staff.bakyt)["items"] == []


def test_worklist_view_is_audited_with_the_referrals_shown(env):
    seed_case(env)
    env.service.cases.worklist(env.staff.aida)
    entry = audit(env, "worklist.view")[-1]
    assert entry.actor_login == "aida" and entry.district == DISTRICT_A and entry.detail["referrals"] == ["r1"]


def test_a_late_issued_fact_does_not_reopen_a_closed_referral(env):
    seed_case(env)
    env.deliver(referral_closed("cancelled", "r1", "a1", at=NOW))
    env.deliver(referral_issued("r1", "a1", deadline=NOW + timedelta(days=3), at=NOW - timedelta(days=2)))
    assert env.service.cases.worklist(env.staff.aida)["items"] == []


def test_a_redelivered_fact_has_one_effect(env):
    ev = application_submitted("a1", pin="10103202300011")
    assert env.deliver(ev) is True
    assert env.deliver(ev) is False


# --------------------------------------------------------------- certificate


def test_certificate_is_stored_with_its_sha256_and_answers_whether_it_is_in_date(env):
    seed_case(env)
    out = env.service.certificates.record(env.staff.aida, "r1", organisation="В/ч 12345", number="77",
                                         issued_on=(TODAY - timedelta(days=10)).isoformat(), scan=PDF,
                                         scan_name="spravka.pdf")
    assert out["in_date"] is True and out["valid_until"] == TODAY
    import hashlib
    assert out["sha256"] == hashlib.sha256(PDF).hexdigest()
    data, content_type, sha = env.service.certificates.scan(env.staff.aida, "r1", out["certificate_id"])
    assert data == PDF and content_type == "application/pdf" and sha == out["sha256"]
    [ev] = outbox_events(env, "verification.certificate_recorded.v1")
    assert ev.data["in_date"] is True and ev.data["scan_sha256"] == out["sha256"]
    stale = env.service.certificates.record(env.staff.aida, "r1", organisation="В/ч 12345", number="78",
                                           issued_on=(TODAY - timedelta(days=11)).isoformat(), scan=PDF)
    assert stale["in_date"] is False
    with env.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Scan)) == 1       # same content stored once
        assert s.scalar(sa.select(sa.func.count()).select_from(Certificate)) == 2


def test_certificate_with_a_wrong_file_or_bad_fields_is_refused_naming_each_field_and_nothing_is_written(env):
    seed_case(env)
    with pytest.raises(d.Refused) as e:
        env.service.certificates.record(env.staff.aida, "r1", organisation="", number="1",
                                       issued_on="2099-01-01", scan=b"<html>")
    assert {(x.field, x.code) for x in e.value.errors} == {
        ("organisation", "required"), ("issued_on", "date_in_future"), ("scan", "scan_type")}
    big = b"\x89PNG\r\n\x1a\n" + b"0" * d.MAX_SCAN_BYTES
    with pytest.raises(d.Refused) as e:
        env.service.certificates.record(env.staff.aida, "r1", organisation="U", number="1",
                                       issued_on=TODAY.isoformat(), scan=big)
    assert [(x.field, x.code) for x in e.value.errors] == [("scan", "scan_too_large")]
    with env.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Certificate)) == 0


# ------------------------------------------------------------------ decisions


def record(env, days_ago=2, rid="r1"):
    return env.service.certificates.record(env.staff.aida, rid, organisation="В/ч 12345", number="77",
                                          issued_on=(TODAY - timedelta(days=days_ago)).isoformat(), scan=PNG)


def test_confirm_sends_the_certificate_issue_date_to_the_referral_workflow_and_records_who_decided(env):
    seed_case(env)
    record(env, days_ago=3)
    out = run(env.service.cases.decide(env.staff.aida, "r1", "confirm", nonce="n1"))
    assert out.accepted and out.result_event == "referral.privilege_confirmed"
    [(name, rid, act, update_id)] = env.fake.calls
    assert (name, rid, act.certificate_issued, update_id) == ("confirm", "r1", TODAY - timedelta(days=3),
                                                               "verification-n1")
    assert act.actor == f"caseworker:{env.staff.aida.id}" and act.acted_at == NOW
    [ev] = outbox_events(env, "verification.decision_recorded.v1")
    assert ev.data["action"] == "confirm" and ev.data["decided_by"] == env.staff.aida.id
    assert audit(env, "case.confirm")[-1].outcome == "ok"
    # The case leaves the worklist at once (the queue's fact will agree).
    assert env.service.cases.worklist(env.staff.aida)["items"] == []


def test_confirm_without_an_in_date_certificate_is_refused_before_the_workflow_is_asked(env):
    seed_case(env)
    with pytest.raises(d.Refused) as e:
        run(env.service.cases.decide(env.staff.aida, "r1", "confirm"))
    assert e.value.errors[0].code == "certificate_missing"
    record(env, days_ago=11)
    with pytest.raises(d.Refused) as e:
        run(env.service.cases.decide(env.staff.aida, "r1", "confirm"))
    assert e.value.errors[0].code == "certificate_out_of_date"
    assert env.fake.calls == []


def test_fresh_certificate_request_goes_to_the_workflow_with_the_out_of_date_certificate(env):
    seed_case(env)
    record(env, days_ago=15)
    out = run(env.service.cases.decide(env.staff.aida, "r1", "request_certificate", nonce="n2"))
    assert out.accepted and out.result_event == "referral.certificate_requested"
    assert env.fake.calls[0][2].certificate_issued == TODAY - timedelta(days=15)
    item = env.service.cases.worklist(env.staff.aida)["items"][0]     # still waiting
    assert item["referral_id"] == "r1"
    fact = referral_fact("certificate_requested", "r1", "a1", at=NOW, reason="out of date",
                         deadline=(NOW + timedelta(days=3)).isoformat())
    env.deliver(fact)
    env.deliver(fact)                                            # redelivered: counted once
    assert env.service.cases.worklist(env.staff.aida)["items"][0]["certificate_requests"] == 1


def test_reject_needs_a_reason_and_sends_it_to_the_workflow(env):
    seed_case(env)
    with pytest.raises(d.Refused) as e:
        run(env.service.cases.decide(env.staff.aida, "r1", "reject", reason=" "))
    assert [(x.field, x.code) for x in e.value.errors] == [("reason", "required")]
    out = run(env.service.cases.decide(env.staff.aida, "r1", "reject", reason="not employed by a special state body"))
    assert out.accepted and out.state == "privilege_rejected"
    assert env.fake.calls[0][2].reason == "not employed by a special state body"


def test_a_workflow_refusal_is_returned_with_its_reason_and_code_and_recorded(env):
    seed_case(env)
    record(env)
    env.fake.refuse = rules.Refusal("referral_closed", act="confirm_privilege", what="confirm the privilege",
                                    reason="the referral was cancelled", state="cancelled")
    out = run(env.service.cases.decide(env.staff.aida, "r1", "confirm", nonce="n3"))
    assert not out.accepted and out.refusal == "cannot confirm the privilege: the referral was cancelled"
    assert out.refusal_code == "referral_closed" and out.refusal_params["state"] == "cancelled"
    case = env.service.cases.case(env.staff.aida, "r1")
    assert case["decisions"][0]["refusal"] == out.refusal and case["decisions"][0]["nonce"] == "n3"
    assert case["decisions"][0]["refusal_code"] == "referral_closed"
    assert audit(env, "case.confirm")[-1].outcome == "refused"
    assert outbox_events(env, "verification.decision_recorded.v1") == []


def test_the_same_form_sent_twice_is_one_act(env):
    seed_case(env)
    record(env)
    first = run(env.service.cases.decide(env.staff.aida, "r1", "confirm", nonce="same"))
    again = run(env.service.cases.decide(env.staff.aida, "r1", "confirm", nonce="same"))
    assert first.accepted and again.accepted and again.repeated
    assert len(env.fake.calls) == 1


# --------------------------------------------------------------------- scope


def test_a_caseworker_cannot_read_or_act_on_another_districts_case_and_the_attempt_is_audited(env):
    seed_case(env, "r-b", "a-b", "10107202300033", district=DISTRICT_B)
    with pytest.raises(NotFound):
        env.service.cases.case(env.staff.aida, "r-b")
    with pytest.raises(NotFound):
        env.service.certificates.record(env.staff.aida, "r-b", organisation="U", number="1",
                                       issued_on=TODAY.isoformat(), scan=PDF)
    with pytest.raises(NotFound):
        run(env.service.cases.decide(env.staff.aida, "r-b", "reject", reason="x"))
    assert env.fake.calls == []
    denied = [a for a in audit(env) if a.outcome == "denied"]
    assert [(a.actor_login, a.action, a.subject_id) for a in denied] == [
        ("aida", "case.view", "r-b"), ("aida", "certificate.record", "r-b"), ("aida", "case.reject", "r-b")]
    assert env.service.cases.case(env.staff.bakyt, "r-b")["referral_id"] == "r-b"
    assert env.service.cases.case(env.staff.root, "r-b")["referral_id"] == "r-b"


def test_commission_members_and_administrators_do_not_decide_privileges(env):
    seed_case(env)
    with pytest.raises(Forbidden):
        env.service.cases.case(env.staff.emil, "r1")
    with pytest.raises(Forbidden):
        run(env.service.cases.decide(env.staff.root, "r1", "reject", reason="x"))


# --------------------------------------------------------------------- abuse


def test_taking_cancelling_and_taking_again_raises_one_abuse_case_and_revoking_rejects_the_live_referral(env):
    pin = "10103202300011"
    env.deliver(application_submitted("a1", pin=pin))
    env.deliver(application_received("a1"))
    for i, rid in enumerate(("r1", "r2")):
        t = NOW - timedelta(days=60 - 20 * i)
        env.deliver(referral_issued(rid, "a1", deadline=t + timedelta(days=7), at=t))
        env.deliver(referral_closed("cancelled", rid, "a1", at=t + timedelta(days=2)))
    with env.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AbuseCase)) == 0
    env.deliver(referral_issued("r3", "a1", deadline=NOW + timedelta(days=5), at=NOW - timedelta(hours=1)))
    env.deliver(referral_issued("r3", "a1", deadline=NOW + timedelta(days=5), at=NOW - timedelta(hours=1)))
    [case] = env.service.abuse.cases(env.staff.chynara)
    assert case["cycles"] == 2
    [ev] = outbox_events(env, "verification.abuse_flagged.v1")
    assert ev.data["referral_ids"] == ["r1", "r2", "r3"]
    assert env.service.cases.worklist(env.staff.aida)["items"][0]["abuse_case"] == case["id"]
    assert env.service.abuse.cases(env.staff.dinara) == []          # another district's supervisor
    with pytest.raises(Forbidden):                                   # caseworkers see, do not resolve
        run(env.service.abuse.revoke(env.staff.aida, case["id"], "false certificate"))
    out = run(env.service.abuse.revoke(env.staff.chynara, case["id"], "the certificate was forged"))
    assert out == {"referral_rejected": True, "referral_id": "r3", "refusal": None, "refusal_code": None,
                   "refusal_params": {}}
    assert env.fake.calls[-1][:2] == ("reject", "r3")
    [rev] = outbox_events(env, "verification.privilege_revoked.v1")
    assert rev.data["application_id"] == "a1" and rev.data["to_category"] == "general"
    assert rev.data["referral_rejected"] is True and rev.data["from_category"] == "extraordinary"
    with env.sessions() as s:
        assert s.get(Applicant, "a1").category == "general"
    assert env.service.abuse.cases(env.staff.chynara) == []
    with pytest.raises(d.Refused):
        run(env.service.abuse.revoke(env.staff.chynara, case["id"], "again"))


def test_revocation_without_a_live_referral_still_tells_the_queue(env):
    pin = "10103202300011"
    env.deliver(application_submitted("a1", pin=pin))
    for i, rid in enumerate(("r1", "r2", "r3")):
        t = NOW - timedelta(days=60 - 20 * i)
        env.deliver(referral_issued(rid, "a1", deadline=t + timedelta(days=7), at=t))
        env.deliver(referral_closed("cancelled", rid, "a1", at=t + timedelta(days=2)))
    [case] = env.service.abuse.cases(env.staff.chynara)
    out = run(env.service.abuse.revoke(env.staff.chynara, case["id"], "not a conscript"))
    assert out["referral_rejected"] is False and env.fake.calls == []
    [rev] = outbox_events(env, "verification.privilege_revoked.v1")
    assert rev.data["referral_id"] is None


# ------------------------------------------------------------------ vouchers


def voucher_app(env, app="v1", district=DISTRICT_A):
    env.deliver(application_submitted(app, pin="20211202300044", category="voucher", district=district))
    env.deliver(application_received(app))


def test_voucher_application_is_decided_once_by_the_districts_commission(env):
    voucher_app(env)
    voucher_app(env, "v2", DISTRICT_B)
    assert [v["application_id"] for v in env.service.vouchers.applications(env.staff.emil)] == ["v1"]
    with pytest.raises(NotFound):
        env.service.vouchers.view(env.staff.gulnara, "v1")
    with pytest.raises(d.Refused) as e:
        env.service.vouchers.decide(env.staff.emil, "v1", decision="approved", benefit_type="",
                                   documents=["birth_certificate"], reason="")
    assert {x.field for x in e.value.errors} == {"benefit_type", "documents"}
    docs = list(d.VoucherPolicy().required_documents)
    number = env.service.vouchers.decide(env.staff.emil, "v1", decision="approved", benefit_type="full",
                                        documents=docs, reason="", members=["farida"])
    view = env.service.vouchers.view(env.staff.farida, "v1", printing=True)
    assert view["status"] == "approved" and view["decision"]["number"] == number
    assert [m["login"] for m in view["decision"]["members"]] == ["emil", "farida"]
    [ev] = outbox_events(env, "verification.voucher_decided.v1")
    assert ev.data == {"application_id": "v1", "parent_id": "parent-1", "decision": "approved",
                       "benefit_type": "full", "reason": "", "decision_number": number,
                       "decided_at": NOW.isoformat()}
    with pytest.raises(d.Refused) as e:
        env.service.vouchers.decide(env.staff.farida, "v1", decision="rejected", benefit_type="",
                                   documents=[], reason="late")
    assert e.value.errors[0].code == "already_decided"
    with pytest.raises(Forbidden):
        env.service.vouchers.applications(env.staff.aida)
    assert [a.action for a in audit(env) if a.subject_id == "v1"][-1] == "voucher.print"


def test_general_applications_are_not_voucher_applications(env):
    env.deliver(application_submitted("a1", pin="10103202300011", category="general"))
    with env.sessions() as s:
        assert s.get(VoucherApplication, "a1") is None


# --------------------------------------------------------------------- audit


def test_audit_log_refuses_update_and_delete_in_the_database(env):
    seed_case(env)
    env.service.cases.case(env.staff.aida, "r1")
    for statement in ("UPDATE audit_trail SET actor = 'nobody'", "DELETE FROM audit_trail"):
        with pytest.raises(DatabaseError, match="append-only"):
            with env.sessions() as s, s.begin():
                s.execute(sa.text(statement))
    assert {a.actor_login for a in audit(env)} >= {"aida"}


def test_a_supervisor_searches_the_audit_log_of_their_district_only(env):
    seed_case(env)
    seed_case(env, "r-b", "a-b", "10107202300033", district=DISTRICT_B)
    env.service.cases.case(env.staff.aida, "r1")
    env.service.cases.case(env.staff.bakyt, "r-b")
    found = env.service.audit.search(env.staff.chynara, d.parse_audit_query({"action": "case.view"}))
    assert [(e["actor"], e["subject_id"]) for e in found] == [("aida", "r1")]
    assert env.service.audit.search(env.staff.chynara, d.parse_audit_query({"subject": "r-b"})) == []
    everything = env.service.audit.search(env.staff.root, d.parse_audit_query({"action": "case.view"}))
    assert {e["subject_id"] for e in everything} == {"r1", "r-b"}
    with pytest.raises(Forbidden):
        env.service.audit.search(env.staff.aida, d.parse_audit_query({}))
    today = env.service.audit.search(env.staff.chynara, d.parse_audit_query(
        {"actor": "aida", "date_from": TODAY.isoformat(), "date_to": TODAY.isoformat()}))
    assert today and all(e["actor"] == "aida" for e in today)


# --------------------------------------------------------------------- login


def test_wrong_passwords_slow_the_guessing_client_and_never_lock_the_owner_out(env):
    guesser, office = "203.0.113.9", "10.1.1.20"
    for _ in range(d.FREE_FAILURES + 1):
        with pytest.raises(Unauthenticated) as e:
            env.service.staff.login("aida", "wrong password!", guesser)
        assert e.value.code == "login_failed"
    # The guesser now waits, even with the right password...
    with pytest.raises(Throttled) as e:
        env.service.staff.login("aida", PASSWORD, guesser)
    assert e.value.retry_after == 2
    # ...and the owner, at another computer, signs in at once.
    token, staff = env.service.staff.login("AIDA", PASSWORD, office)
    assert staff.login == "aida" and env.service.staff.identify(token).id == staff.id
    env.service.staff.logout(token)
    with pytest.raises(Unauthenticated):
        env.service.staff.identify(token)
    # The wait is a wait: after it the right password signs in.
    env.clock.now = NOW + timedelta(seconds=2)
    env.service.staff.login("aida", PASSWORD, guesser)
    assert [a.outcome for a in audit(env, "login") if a.actor_login == "aida"][-6:] == \
        ["refused"] * 4 + ["ok", "ok"]


def test_each_wrong_password_beyond_the_free_ones_doubles_the_wait(env):
    waits = []
    for _ in range(d.FREE_FAILURES + 7):          # heard, then alternately refused to wait and heard
        try:
            env.service.staff.login("bakyt", "wrong password!", "203.0.113.9")
        except Throttled as e:
            waits.append(e.retry_after)
            env.clock.now += timedelta(seconds=e.retry_after)
        except Unauthenticated:
            pass
    assert waits == [2, 4, 8] and d.wait_after(10_000, d.FREE_FAILURES) == timedelta(minutes=15)


def test_one_client_trying_many_accounts_is_slowed_too(env):
    spray = "198.51.100.7"
    for n in range(d.FREE_FAILURES_PER_CLIENT + 1):
        with pytest.raises(Unauthenticated) as e:
            env.service.staff.login(f"guess{n}", "password123!", spray)
        assert e.value.code == "login_failed"
    with pytest.raises(Throttled):
        env.service.staff.login("aida", PASSWORD, spray)
    env.service.staff.login("aida", PASSWORD, "10.1.1.20")          # another computer is not slowed


def test_an_unknown_login_is_slowed_exactly_as_a_known_one(env):
    for login in ("aida", "nobody"):
        outcomes = []
        for _ in range(d.FREE_FAILURES + 2):
            try:
                env.service.staff.login(login, "wrong password!", f"192.0.2.{len(login)}")
                outcomes.append("ok")
            except Unauthenticated as e:
                outcomes.append(e.code)
        assert outcomes == ["login_failed"] * (d.FREE_FAILURES + 1) + ["login_throttled"], login


def test_the_owner_is_told_of_the_wrong_passwords_at_the_next_sign_in(env):
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            env.service.staff.login("aida", "wrong password!", "203.0.113.9")
    token, _ = env.service.staff.login("aida", PASSWORD, "10.1.1.20")
    notice = env.service.staff.notice(token)
    assert notice["failed"] == 3 and notice["last_at"] == NOW.astimezone(notice["last_at"].tzinfo)
    again, _ = env.service.staff.login("aida", PASSWORD, "10.1.1.20")
    assert env.service.staff.notice(again) is None                # told once


def test_a_session_ends_after_a_working_day(env):
    token, _ = env.service.staff.login("aida", PASSWORD)
    env.clock.now = NOW + d.SESSION_TTL + timedelta(seconds=1)
    with pytest.raises(Unauthenticated):
        env.service.staff.identify(token)


def test_every_verification_event_in_the_outbox_matches_its_schema(env):
    seed_case(env)
    record(env)
    run(env.service.cases.decide(env.staff.aida, "r1", "confirm"))
    with env.sessions() as s:
        for payload in s.execute(sa.select(outbox.table.c.payload)).scalars():
            validate(Event.from_json(payload))
            assert "child_pin" not in json.loads(payload)["data"]


def test_abuse_is_found_whatever_order_the_facts_of_different_referrals_arrive_in(env):
    pin = "10103202300011"
    facts = [referral_issued("r3", "a1", deadline=NOW + timedelta(days=5), at=NOW - timedelta(hours=1))]
    for i, rid in enumerate(("r1", "r2")):
        t = NOW - timedelta(days=60 - 20 * i)
        facts += [referral_issued(rid, "a1", deadline=t + timedelta(days=7), at=t),
                  referral_closed("cancelled", rid, "a1", at=t + timedelta(days=2))]
    env.deliver(application_submitted("a1", pin=pin))
    for ev in facts:                       # the newest referral first, a cancellation last
        env.deliver(ev)
    [case] = env.service.abuse.cases(env.staff.chynara)
    assert case["cycles"] == 2
