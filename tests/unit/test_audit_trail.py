"""One audit model for every service (kezek/audit.py): the verified actor,
what, which subject, and acts apart from looks."""
from __future__ import annotations

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from kezek.audit import AuditTrail
from kezek.trust import parent_principal, service_principal, staff_principal


def make_trail():
    md = sa.MetaData()
    trail = AuditTrail(md)
    engine = sa.create_engine("sqlite://")
    md.create_all(engine)
    return trail, engine


def test_an_act_records_the_verified_actor_its_role_and_who_vouched():
    trail, engine = make_trail()
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        with Session(engine) as s, s.begin():
            trail.record(s, staff_principal(7, "caseworker", district="Bishkek/Leninsky"),
                         "referral.privilege_confirmed", "referral:42", details={"certificate": "c1"})
    finally:
        structlog.contextvars.clear_contextvars()
    with Session(engine) as s:
        [row] = trail.trail(s, subject="referral:42")
    assert (row["actor"], row["actor_role"], row["district"], row["kind"]) == \
        ("staff:7", "caseworker", "Bishkek/Leninsky", "act")
    assert row["request_id"] == "req-1" and row["details"] == {"certificate": "c1"}


def test_a_look_is_kept_apart_from_acts_with_its_reason():
    trail, engine = make_trail()
    who = staff_principal(3, "supervisor", district="Osh/Central")
    with Session(engine) as s, s.begin():
        trail.look(s, who, "case.viewed", "application:9", why="privilege check")
        trail.record(s, service_principal("queue"), "application.queued", "application:9")
    with Session(engine) as s:
        looks = trail.trail(s, subject="application:9", kind="look")
        acts = trail.trail(s, subject="application:9", kind="act")
    assert [(r["actor"], r["reason"]) for r in looks] == [("staff:3", "privilege check")]
    assert [r["actor"] for r in acts] == ["service:queue"]


def test_a_record_rolls_back_with_the_change_it_describes():
    trail, engine = make_trail()
    try:
        with Session(engine) as s, s.begin():
            trail.record(s, parent_principal("5"), "application.removed", "application:1")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    with Session(engine) as s:
        assert trail.trail(s) == []
