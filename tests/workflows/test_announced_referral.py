"""Referrals the allocation announced (ReferralInput.announced): the queue
wrote their referral.issued fact and audit row in the transaction that
issued them, so their workflow records no "issued" step and goes straight
to its first window; an input without the field (a referral issued before,
every recorded history) records it as before."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from pydantic import ValidationError

from kezek import calendar as kcal
from workflows import contracts as c
from workflows.contracts import ReferralState as S

KG = kcal.calendar("KG").tz
ISSUED = (2027, 3, 1, 10, 0)          # Monday; 8 and 9 March are days off in Kyrgyzstan


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=KG)


async def test_an_announced_referral_records_no_issue_and_runs_its_first_window_to_the_stop_list(referral):
    r = await referral(issued=ISSUED, announced=True)
    st = await r.status()
    # The same first window as an unannounced referral's: five working days, 8 and 9 March off.
    assert st.state is S.AWAITING_ENROLMENT and st.deadline == at(2027, 3, 11)
    out = await r.outcome()
    assert out.state is S.RESUMED
    assert r.fakes.queue_calls() == [f"{c.RETURN_PLACE}:expired", c.PUT_ON_STOPLIST, c.LIFT_STOPLIST]
    # Only the reminder, which no fact tells.
    assert r.fakes.notified() == ["referral.deadline_approaching.v1"]


async def test_an_announced_privileged_referral_is_confirmed_and_enrolled_as_any_other(referral):
    r = await referral(issued=ISSUED, announced=True, category="extraordinary", needs_confirmation=True)
    assert (await r.status()).state is S.AWAITING_CONFIRMATION
    confirmed = await r.confirm(date(2027, 2, 26), at=at(2027, 3, 2, 11))
    assert confirmed.event == "referral.privilege_confirmed" and confirmed.state is S.AWAITING_ENROLMENT
    assert (await r.act(c.ENROL, c.RecordEnrolment(actor="kindergarten:sun"))).state is S.ENROLLED
    assert (await r.outcome()).state is S.ENROLLED
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.privilege_confirmed", c.RECORD_ENROLMENT]


async def test_an_input_without_announced_records_the_issue_first_as_before(referral):
    r = await referral(issued=ISSUED)
    assert r.fakes.queue_calls()[0] == f"{c.RECORD_REFERRAL}:referral.issued"
    await r.act(c.CANCEL, c.CancelReferral(actor="parent:1"))
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.issued", f"{c.RETURN_PLACE}:cancelled"]


def test_an_imported_referral_cannot_be_announced_by_the_allocation():
    with pytest.raises(ValidationError, match="announced"):
        c.ReferralInput(referral_id="r1", application_id="a1", kindergarten="sun", cohort=2024, language="ru",
                        category="general", needs_confirmation=False, issued_at=at(*ISSUED), announced=True,
                        resume=c.ResumedReferral(state="awaiting_enrolment", deadline=at(2027, 3, 5, 18)))
