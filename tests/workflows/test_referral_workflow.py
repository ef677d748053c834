"""Every path of DOMAIN.md section 4 on a time-skipping Temporal server, with
real dates around Kyrgyz and Kazakh holidays. Fakes stand in for the queue
and notifications services (same activity names)."""
from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from workflows import client
from workflows import contracts as c
from workflows.contracts import ReferralState as S

PRIVILEGED = dict(category="extraordinary", needs_confirmation=True)


# ------------------------------------------------------------ general category


async def test_general_referral_gives_five_working_days_to_enrol_skipping_kyrgyz_may_holidays(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))          # Thursday; 1-9 May are days off
    st = await r.status()
    assert st.state is S.AWAITING_ENROLMENT and st.window == "enrolment"
    assert st.deadline == r.local(2026, 5, 16)               # 24:00 of Friday 15 May
    issued = r.fakes.named(c.RECORD_REFERRAL)[0]
    assert issued.event == "referral.issued" and issued.deadline == r.local(2026, 5, 16)

    result = await r.act(c.ENROL, c.RecordEnrolment(actor="kindergarten:sun"), at=r.local(2026, 5, 15, 17, 30))
    assert result.state is S.ENROLLED
    out = await r.outcome()
    assert out.state is S.ENROLLED and out.closed_at == r.local(2026, 5, 15, 17, 30)
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.issued", c.RECORD_ENROLMENT]
    # The issue is told from the queue's fact (its record above); the workflow asks for the reminder only.
    assert r.fakes.notified() == ["referral.deadline_approaching.v1"]


async def test_missed_deadline_expires_returns_place_and_stoplists_for_ten_calendar_days_kz_nauryz(referral):
    # Friday 20 March 2026; Nauryz 21-23 March plus 24 and 25 made up in Kazakhstan.
    r = await referral(issued=(2026, 3, 20, 10, 0), country="KZ")
    assert (await r.status()).deadline == r.local(2026, 4, 2)
    out = await r.outcome()                                   # the server skips to the end
    assert out.state is S.RESUMED
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.issued",
                                     f"{c.RETURN_PLACE}:expired", c.PUT_ON_STOPLIST, c.LIFT_STOPLIST]
    returned = r.fakes.named(c.RETURN_PLACE)[0]
    assert returned.at == r.local(2026, 4, 2) and returned.place.kindergarten == "sun"
    assert r.fakes.named(c.PUT_ON_STOPLIST)[0].until == r.local(2026, 4, 12)
    assert r.fakes.named(c.LIFT_STOPLIST)[0].at == r.local(2026, 4, 12)
    assert r.fakes.notified() == ["referral.deadline_approaching.v1"]   # expiry and return: the queue's facts


async def test_child_is_on_the_stop_list_until_it_ends_and_acts_are_refused_meanwhile(referral):
    r = await referral(issued=(2026, 3, 20, 10, 0), country="KZ")
    await r.advance_to(r.local(2026, 4, 5, 12))
    st = await r.status()
    assert st.state is S.PAUSED and st.stoplist_until == r.local(2026, 4, 12)
    reason = await r.refused(c.ENROL, c.RecordEnrolment(), at=r.local(2026, 4, 6, 9))
    assert "expired at 2026-04-02T00:00:00" in reason and "stop-list until 2026-04-12T00:00:00" in reason
    assert (await r.outcome()).state is S.RESUMED


async def test_enrolment_at_the_deadline_is_refused_the_window_has_ended(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))
    await r.advance_to(r.local(2026, 5, 15, 23, 59, 30))
    assert (await r.act(c.ENROL, c.RecordEnrolment())).state is S.ENROLLED
    r2 = await referral(issued=(2026, 4, 30, 10, 0))
    await r2.advance_to(r2.local(2026, 5, 16, 0, 0, 30))
    reason = await r2.refused(c.ENROL, c.RecordEnrolment())
    assert "expired" in reason


# ---------------------------------------------------------- privilege to confirm


async def test_privileged_referral_opens_a_confirmation_window_of_five_working_days(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)  # 8 and 9 March are days off in KG
    st = await r.status()
    assert st.state is S.AWAITING_CONFIRMATION and st.window == "confirmation"
    assert st.deadline == st.confirmation_deadline == r.local(2027, 3, 11)
    assert st.extension_day == date(2027, 3, 10)
    assert r.fakes.named(c.RECORD_REFERRAL)[0].needs_confirmation is True


async def test_confirmed_privilege_gives_five_working_days_to_enrol_counted_from_confirmation(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    res = await r.confirm(date(2027, 2, 26), at=r.local(2027, 3, 5, 11, 0))
    # From Friday 5 March: Mon 8 and Tue 9 are holidays; Wed 10 .. Tue 16.
    assert res.event == "referral.privilege_confirmed" and res.deadline == r.local(2027, 3, 17)
    st = await r.status()
    assert st.state is S.AWAITING_ENROLMENT and st.confirmed_at == r.local(2027, 3, 5, 11, 0)
    assert (await r.act(c.ENROL, c.RecordEnrolment(), at=r.local(2027, 3, 16, 15))).state is S.ENROLLED
    assert (await r.outcome()).state is S.ENROLLED
    assert r.fakes.notified() == ["referral.deadline_approaching.v1", "referral.deadline_approaching.v1"]


async def test_enrolment_before_confirmation_is_refused(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    reason = await r.refused(c.ENROL, c.RecordEnrolment(), at=r.local(2027, 3, 2, 10))
    assert "before the privilege is confirmed" in reason
    assert (await r.status()).state is S.AWAITING_CONFIRMATION


async def test_confirmed_privilege_not_enrolled_in_time_expires_to_the_stop_list(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.confirm(date(2027, 3, 1), at=r.local(2027, 3, 2, 10))
    assert (await r.outcome()).state is S.RESUMED
    # From Tuesday 2 March: Wed 3, Thu 4, Fri 5, (8, 9 holidays) Wed 10, Thu 11.
    assert r.fakes.named(c.RETURN_PLACE)[0].at == r.local(2027, 3, 12)
    assert r.fakes.named(c.PUT_ON_STOPLIST)[0].until == r.local(2027, 3, 22)


async def test_missed_confirmation_window_expires_to_the_stop_list(referral):
    r = await referral(issued=(2027, 3, 18, 10, 0), country="KZ", **PRIVILEGED)
    assert (await r.status()).deadline == r.local(2027, 3, 31)   # Nauryz 22-24 March skipped
    assert (await r.outcome()).state is S.RESUMED
    assert r.fakes.named(c.RETURN_PLACE)[0].outcome == "expired"
    assert r.fakes.named(c.PUT_ON_STOPLIST)[0].until == r.local(2027, 4, 10)


async def test_certificate_issued_on_day_d_is_in_date_up_to_and_including_d_plus_10(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    res = await r.confirm(date(2027, 2, 23), at=r.local(2027, 3, 5, 16, 0))
    assert res.event == "referral.privilege_confirmed"


async def test_out_of_date_certificate_is_requested_again_and_the_clock_keeps_running(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    res = await r.confirm(date(2027, 2, 22), at=r.local(2027, 3, 5, 16, 0))
    assert res.event == "referral.certificate_requested"
    assert "valid up to and including 2027-03-04" in res.reason
    assert res.state is S.AWAITING_CONFIRMATION and res.deadline == r.local(2027, 3, 11)
    st = await r.status()
    assert st.certificate_requests == 1 and st.deadline == r.local(2027, 3, 11)
    # A fresh certificate on the next working day confirms the privilege.
    res = await r.confirm(date(2027, 3, 9), at=r.local(2027, 3, 10, 10, 0))
    assert res.event == "referral.privilege_confirmed" and res.deadline == r.local(2027, 3, 18)
    events = [p.event for p in r.fakes.named(c.RECORD_REFERRAL)]
    assert events == ["referral.issued", "referral.certificate_requested", "referral.privilege_confirmed"]


async def test_out_of_date_certificate_then_nothing_expires_at_the_original_deadline(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.confirm(date(2027, 1, 10), at=r.local(2027, 3, 3, 12))
    assert (await r.outcome()).state is S.RESUMED
    assert r.fakes.named(c.RETURN_PLACE)[0].at == r.local(2027, 3, 11)


async def test_certificate_dated_in_the_future_is_refused(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    reason = await r.refused(c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 3, 4)),
                             at=r.local(2027, 3, 3, 12))
    assert "in the future" in reason


async def test_a_refusal_reaches_the_caller_with_its_code_and_parameters(referral):
    """Pages say a refusal in the reader's language: the code and its
    parameters travel with the English words."""
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.advance_to(r.local(2027, 3, 3, 12))
    with pytest.raises(client.ReferralRefused) as e:
        await client.act(r.env.client, r.referral_id, c.CONFIRM_PRIVILEGE,
                         c.ConfirmPrivilege(certificate_issued=date(2027, 3, 4)))
    assert e.value.code == "certificate_date_in_future" and e.value.params == {"issued": "2027-03-04"}
    assert e.value.reason == "the certificate's issue date 2027-03-04 is in the future"


async def test_rejected_privilege_returns_place_and_child_goes_to_general_queue(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    res = await r.act(c.REJECT_PRIVILEGE, c.RejectPrivilege(reason="no such employee", actor="caseworker:7"),
                      at=r.local(2027, 3, 4, 15))
    assert res.state is S.PRIVILEGE_REJECTED and res.deadline is None
    assert (await r.outcome()).state is S.PRIVILEGE_REJECTED
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.issued",
                                     f"{c.RETURN_PLACE}:privilege_rejected", c.RETURN_TO_GENERAL_QUEUE]
    back = r.fakes.named(c.RETURN_TO_GENERAL_QUEUE)[0]
    assert back.from_category == "extraordinary" and back.reason == "no such employee"
    assert back.actor == "caseworker:7"
    assert "referral.privilege_rejected.v1" not in r.fakes.notified()   # the queue's fact tells it


async def test_privilege_cannot_be_confirmed_twice_nor_for_a_general_referral(referral):
    g = await referral(issued=(2027, 3, 1, 10, 0))
    reason = await g.refused(c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 3, 1)))
    assert "category 'general' has no confirmation window" in reason
    assert "no privilege to reject" in await g.refused(c.REJECT_PRIVILEGE, c.RejectPrivilege())
    p = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await p.confirm(date(2027, 3, 1), at=p.local(2027, 3, 2, 10))
    reason = await p.refused(c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 3, 1)))
    assert "already confirmed" in reason


async def test_privilege_found_false_after_confirmation_is_revoked_and_the_child_goes_to_general_queue(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.confirm(date(2027, 3, 1), at=r.local(2027, 3, 2, 10))
    res = await r.act(c.REJECT_PRIVILEGE, c.RejectPrivilege(reason="certificate forged", actor="system"),
                      at=r.local(2027, 3, 4, 12))
    assert res.state is S.PRIVILEGE_REJECTED
    assert r.fakes.queue_calls()[-2:] == [f"{c.RETURN_PLACE}:privilege_rejected", c.RETURN_TO_GENERAL_QUEUE]
    q = await referral(issued=(2027, 3, 1, 10, 0), category="privileged")   # checked by the system itself
    assert (await q.act(c.REJECT_PRIVILEGE, c.RejectPrivilege(reason="registry says no"))).state \
        is S.PRIVILEGE_REJECTED


# ------------------------------------------------------------------ extension


async def test_extension_granted_on_the_last_working_day_of_the_confirmation_window(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    res = await r.act(c.EXTEND, c.ExtendReferral(actor="parent:1"), at=r.local(2027, 3, 10, 9, 0))
    assert res.event == "referral.extended"
    assert res.deadline == r.local(2027, 4, 10)               # 11 March 00:00 + 30 calendar days
    st = await r.status()
    assert st.extended and st.extension_day is None and st.state is S.AWAITING_CONFIRMATION
    # The old deadline passes without expiring the referral.
    await r.advance_to(r.local(2027, 3, 20))
    assert (await r.status()).state is S.AWAITING_CONFIRMATION
    assert (await r.outcome()).state is S.RESUMED
    assert r.fakes.named(c.RETURN_PLACE)[0].at == r.local(2027, 4, 10)


async def test_extension_on_the_last_working_day_in_kazakhstan_after_nauryz(referral):
    r = await referral(issued=(2027, 3, 18, 10, 0), country="KZ", **PRIVILEGED)
    res = await r.act(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 30, 18, 0))
    assert res.deadline == r.local(2027, 4, 30)


async def test_extension_refused_before_last_working_day(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    reason = await r.refused(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 5, 12))
    assert "only on the last working day of the confirmation window, 2027-03-10, not on 2027-03-05" in reason
    # 9 March (Eid al-Fitr) is not a working day of the window either.
    reason = await r.refused(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 9, 12))
    assert "not on 2027-03-09" in reason
    assert not (await r.status()).extended


async def test_second_extension_is_refused(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.act(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 10, 9, 0))
    reason = await r.refused(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 10, 9, 5))
    assert "already been extended once" in reason


async def test_extension_refused_without_a_confirmation_window(referral):
    g = await referral(issued=(2027, 3, 1, 10, 0))
    reason = await g.refused(c.EXTEND, c.ExtendReferral(), at=g.local(2027, 3, 10, 9))
    assert "category 'general' has no confirmation window" in reason
    p = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await p.confirm(date(2027, 3, 1), at=p.local(2027, 3, 2, 10))
    reason = await p.refused(c.EXTEND, c.ExtendReferral(), at=p.local(2027, 3, 10, 9))
    assert "already confirmed" in reason


# --------------------------------------------------------------------- cancel


async def test_cancel_returns_the_place_and_drops_that_kindergarten_from_preferences(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))
    res = await r.act(c.CANCEL, c.CancelReferral(actor="parent:1"), at=r.local(2026, 5, 11, 8))
    assert res.state is S.CANCELLED
    assert (await r.outcome()).state is S.CANCELLED
    returned = r.fakes.named(c.RETURN_PLACE)[0]
    assert returned.outcome == "cancelled" and returned.drop_preference
    assert returned.at == r.local(2026, 5, 11, 8)
    assert c.PUT_ON_STOPLIST not in r.fakes.queue_calls()     # no stop-list after a cancel


async def test_cancel_during_the_confirmation_window(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.act(c.CANCEL, c.CancelReferral(), at=r.local(2027, 3, 10, 23, 0))
    assert (await r.outcome()).state is S.CANCELLED
    assert r.fakes.named(c.RETURN_PLACE)[0].outcome == "cancelled"


async def test_acts_on_a_closed_referral_are_refused(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))
    await r.act(c.ENROL, c.RecordEnrolment(), at=r.local(2026, 5, 12, 9))
    assert "already enrolled" in await r.refused(c.CANCEL, c.CancelReferral())
    r2 = await referral(issued=(2026, 4, 30, 10, 0))
    await r2.act(c.CANCEL, c.CancelReferral(), at=r2.local(2026, 5, 12, 9))
    assert "was cancelled" in await r2.refused(c.ENROL, c.RecordEnrolment())


# ------------------------------------------------------------------ reminder


async def test_parent_is_reminded_at_nine_on_the_morning_two_working_days_before_the_deadline(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))          # deadline 16 May: Thu 14 and Fri 15 are left
    await r.advance_to(r.local(2026, 5, 14, 8, 59))
    assert r.fakes.notified() == []
    await r.advance_to(r.local(2026, 5, 14, 9, 1))
    reminder = r.fakes.named(c.NOTIFY_PARENT)[-1]
    assert reminder.kind == "referral.deadline_approaching.v1" and reminder.at == r.local(2026, 5, 14, 9)
    assert reminder.data["deadline"] == "2026-05-16T00:00:00" and reminder.data["working_days_left"] == 2
    assert reminder.data["window"] == "enrolment"


async def test_no_reminder_once_the_child_is_enrolled_or_when_the_policy_says_none(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))
    await r.act(c.ENROL, c.RecordEnrolment(), at=r.local(2026, 5, 11, 10))
    await r.outcome()
    assert r.fakes.notified() == []
    r = await referral(issued=(2026, 4, 30, 10, 0), policy=c.ReferralPolicy(reminder_working_days=0))
    await r.outcome()
    assert "referral.deadline_approaching.v1" not in r.fakes.notified()


async def test_extended_window_reminds_again_before_the_new_deadline(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.act(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 10, 12, 0))   # new deadline 10 April (Sat)
    await r.outcome()
    reminders = [p.at for p in r.fakes.named(c.NOTIFY_PARENT) if p.kind == "referral.deadline_approaching.v1"]
    # Before 11 March: Fri 5 and Wed 10 left (8, 9 off). Before 10 April: Thu 8 and Fri 9.
    assert reminders == [r.local(2027, 3, 5, 9), r.local(2027, 4, 8, 9)]


# ---------------------------------------------------------------- plumbing


async def test_acted_at_far_from_the_workflow_clock_is_refused(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))
    await r.advance_to(r.local(2026, 5, 12, 9))
    reason = await r.refused(c.ENROL, c.RecordEnrolment(acted_at=r.local(2026, 5, 12, 11)))
    assert "in the future" in reason
    reason = await r.refused(c.ENROL, c.RecordEnrolment(acted_at=r.local(2026, 5, 11, 9)))
    assert "too far in the past" in reason


async def test_every_activity_carries_an_idempotency_key_per_workflow_step(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.confirm(date(2027, 1, 1), at=r.local(2027, 3, 2, 10))
    await r.confirm(date(2027, 1, 2), at=r.local(2027, 3, 3, 10))
    await r.outcome()
    keys = [p.idempotency_key for _, p in r.fakes.calls]
    assert len(keys) == len(set(keys))
    assert all(k.startswith(f"{r.handle.id}:") for k in keys)


@pytest.mark.parametrize("days", [7])
async def test_window_lengths_come_from_the_policy_in_the_input(referral, days):
    policy = c.ReferralPolicy(confirm_working_days=days, stoplist_days=3)
    r = await referral(issued=(2027, 3, 1, 10, 0), policy=policy, **PRIVILEGED)
    st = await r.status()
    # 7 working days from Monday 1 March 2027 in Kyrgyzstan: 2,3,4,5,10,11,12.
    assert st.deadline == r.local(2027, 3, 13) and st.extension_day == date(2027, 3, 12)
    await r.outcome()
    assert r.fakes.named(c.PUT_ON_STOPLIST)[0].until == r.local(2027, 3, 13) + timedelta(days=3)


async def test_two_acts_at_once_are_applied_one_after_the_other(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0))
    await r.advance_to(r.local(2026, 5, 12, 9))
    results = await asyncio.gather(r.act(c.CANCEL, c.CancelReferral()), r.act(c.ENROL, c.RecordEnrolment()),
                                   return_exceptions=True)
    done = [x for x in results if isinstance(x, c.ActResult)]
    refused = [x for x in results if isinstance(x, client.ReferralRefused)]
    assert len(done) == 1 and len(refused) == 1, results
    assert ("was cancelled" in refused[0].reason) or ("already enrolled" in refused[0].reason)
    # One effect: the queue applies a call once per idempotency key, and a
    # local activity may run again when its workflow task is retried.
    effects = {(n, p.idempotency_key) for n, p in r.fakes.calls if n in c.QUEUE_ACTIVITIES}
    assert len(effects - {(c.RECORD_REFERRAL, f"{r.handle.id}:issued:record")}) == 1


async def test_the_workflow_asks_notifications_only_for_the_kinds_no_queue_fact_tells(referral):
    r = await referral(issued=(2027, 3, 1, 10, 0), **PRIVILEGED)
    await r.confirm(date(2027, 1, 1), at=r.local(2027, 3, 2, 10))
    await r.act(c.EXTEND, c.ExtendReferral(), at=r.local(2027, 3, 10, 10))
    await r.outcome()
    assert set(r.fakes.notified()) == c.ACTIVITY_NOTIFICATION_KINDS <= set(c.NOTIFICATION_KINDS)
    assert len(r.fakes.notified()) >= 2


async def test_a_failing_notification_service_does_not_hold_up_the_referral(referral):
    r = await referral(issued=(2026, 4, 30, 10, 0), notifications_down=True)
    await r.act(c.ENROL, c.RecordEnrolment(), at=r.local(2026, 5, 12, 9))
    assert (await r.outcome()).state is S.ENROLLED
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.issued", c.RECORD_ENROLMENT]
