"""Referrals imported from the old portal (ReferralInput.resume) on a
time-skipping Temporal server: they continue in their recorded state, to
their recorded deadline, with the extension rules of DOMAIN.md section 4,
and are not announced to the parent a second time."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from pydantic import ValidationError

from kezek import calendar as kcal
from workflows import contracts as c
from workflows.contracts import ReferralState as S

KG = kcal.calendar("KG").tz
PRIVILEGED = dict(category="extraordinary", needs_confirmation=True)
ISSUED = (2027, 3, 1, 10, 0)          # Monday; 8 and 9 March are days off in Kyrgyzstan
IMPORTED = (2027, 3, 3, 12, 0)        # the moment the import starts the workflow


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=KG)


def resume(state: str, deadline: datetime, **fields) -> c.ResumedReferral:
    return c.ResumedReferral(state=state, deadline=deadline, **fields)


async def test_resumed_referral_expires_at_its_recorded_deadline_not_at_a_fresh_window(referral):
    recorded = at(2027, 3, 5, 18, 0)   # a fresh window from the import would end on 11 March
    r = await referral(issued=ISSUED, now=IMPORTED, resume=resume("awaiting_enrolment", recorded))
    st = await r.status()
    assert st.state is S.AWAITING_ENROLMENT and st.deadline == st.enrolment_deadline == recorded
    assert st.issued_at == at(*ISSUED)
    out = await r.outcome()
    assert out.state is S.RESUMED
    assert r.fakes.queue_calls() == [f"{c.RETURN_PLACE}:expired", c.PUT_ON_STOPLIST, c.LIFT_STOPLIST]
    assert r.fakes.named(c.RETURN_PLACE)[0].at == recorded
    assert r.fakes.named(c.PUT_ON_STOPLIST)[0].until == at(2027, 3, 15, 18, 0)


async def test_resumed_referral_is_not_announced_to_the_parent_again(referral):
    r = await referral(issued=ISSUED, now=IMPORTED, resume=resume("awaiting_enrolment", at(2027, 3, 5, 18, 0)))
    await r.outcome()
    assert "referral.issued.v1" not in r.fakes.notified()
    assert not [p for p in r.fakes.named(c.RECORD_REFERRAL) if p.event == "referral.issued"]
    # Still reminded before its deadline (the expiry and the end of the stop-list: the queue's facts).
    assert r.fakes.notified() == ["referral.deadline_approaching.v1"]


async def test_resumed_referral_can_be_enrolled_until_its_recorded_deadline(referral):
    r = await referral(issued=ISSUED, now=IMPORTED, resume=resume("awaiting_enrolment", at(2027, 3, 5, 18, 0)))
    result = await r.act(c.ENROL, c.RecordEnrolment(actor="kindergarten:sun"), at=at(2027, 3, 5, 17, 59))
    assert result.state is S.ENROLLED
    assert (await r.outcome()).state is S.ENROLLED
    assert r.fakes.queue_calls() == [c.RECORD_ENROLMENT]

    late = await referral(issued=ISSUED, now=IMPORTED, resume=resume("awaiting_enrolment", at(2027, 3, 5, 18, 0)))
    await late.advance_to(at(2027, 3, 5, 18, 0, 30))
    assert "expired at 2027-03-05T18:00:00" in await late.refused(c.ENROL, c.RecordEnrolment())


async def test_resumed_confirmation_window_extends_once_on_its_last_working_day_then_confirms(referral):
    recorded = at(2027, 3, 11)          # 24:00 of Wednesday 10 March
    r = await referral(issued=ISSUED, now=IMPORTED, **PRIVILEGED, resume=resume("awaiting_confirmation", recorded))
    st = await r.status()
    assert st.state is S.AWAITING_CONFIRMATION and st.deadline == st.confirmation_deadline == recorded
    assert st.extension_day == date(2027, 3, 10) and not st.extended
    reason = await r.refused(c.EXTEND, c.ExtendReferral(actor="parent:1"), at=at(2027, 3, 5, 12))
    assert "only on the last working day of the confirmation window, 2027-03-10" in reason

    extended = await r.act(c.EXTEND, c.ExtendReferral(actor="parent:1"), at=at(2027, 3, 10, 12))
    assert extended.event == "referral.extended" and extended.deadline == at(2027, 4, 10)
    assert "already been extended once" in await r.refused(c.EXTEND, c.ExtendReferral(), at=at(2027, 3, 10, 13))

    confirmed = await r.act(c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 3, 12)),
                            at=at(2027, 3, 15, 11))
    assert confirmed.state is S.AWAITING_ENROLMENT and confirmed.deadline == at(2027, 3, 23)
    assert (await r.act(c.ENROL, c.RecordEnrolment())).state is S.ENROLLED
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.extended",
                                     f"{c.RECORD_REFERRAL}:referral.privilege_confirmed", c.RECORD_ENROLMENT]


async def test_resumed_referral_already_extended_cannot_be_extended_again(referral):
    recorded = at(2027, 3, 11)          # the old portal's deadline after its one extension
    r = await referral(issued=(2027, 1, 25, 10, 0), now=IMPORTED, **PRIVILEGED,
                       resume=resume("awaiting_confirmation", recorded, extended=True))
    st = await r.status()
    assert st.extended and st.extension_day is None and st.deadline == recorded
    reason = await r.refused(c.EXTEND, c.ExtendReferral(actor="parent:1"), at=at(2027, 3, 10, 12))
    assert "already been extended once" in reason
    out = await r.outcome()
    assert out.state is S.RESUMED and r.fakes.named(c.RETURN_PLACE)[0].at == recorded


async def test_resumed_referral_past_confirmation_waits_for_enrolment_only(referral):
    confirmed_at = at(2027, 3, 2, 15, 0)
    r = await referral(issued=ISSUED, now=IMPORTED, **PRIVILEGED,
                       resume=resume("awaiting_enrolment", at(2027, 3, 10), confirmed_at=confirmed_at))
    st = await r.status()
    assert st.state is S.AWAITING_ENROLMENT and st.confirmed_at == confirmed_at and st.extension_day is None
    assert "already confirmed" in await r.refused(
        c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 3, 1)))
    assert "only the confirmation window can be extended" in await r.refused(c.EXTEND, c.ExtendReferral())
    assert (await r.act(c.ENROL, c.RecordEnrolment(), at=at(2027, 3, 4, 10))).state is S.ENROLLED


def test_resume_input_refuses_a_confirmation_window_for_a_category_without_one():
    base = dict(referral_id="r1", application_id="a1", kindergarten="sun", cohort=2024, language="ru",
                category="general", needs_confirmation=False, issued_at=at(*ISSUED))
    with pytest.raises(ValidationError, match="needs needs_confirmation"):
        c.ReferralInput(**base, resume=resume("awaiting_confirmation", at(2027, 3, 11)))
    with pytest.raises(ValidationError, match="only a confirmation window"):
        c.ReferralInput(**base, resume=resume("awaiting_enrolment", at(2027, 3, 11), extended=True))
    with pytest.raises(ValidationError, match="after issued_at"):
        c.ReferralInput(**base, resume=resume("awaiting_enrolment", at(2027, 2, 11)))
