"""A referral that expires after the child's school-age birthday (DOMAIN.md
section 3): the queue says the child left the queue, so the workflow puts
it on no stop-list and closes at once; a cancel or a rejection needs no
change in the workflow (the queue decides in return_place)."""
from __future__ import annotations

from workflows import contracts as c
from workflows.contracts import ReferralState as S


async def test_expiry_of_a_child_past_school_age_puts_it_on_no_stoplist(referral):
    r = await referral(issued=(2026, 3, 20, 10, 0), country="KZ", child_aged_out=True)
    out = await r.outcome()
    assert out.state is S.PAUSED and out.stoplist_until is None and out.closed_at == r.local(2026, 4, 2)
    assert r.fakes.queue_calls() == [f"{c.RECORD_REFERRAL}:referral.issued", f"{c.RETURN_PLACE}:expired"]
    assert not r.fakes.named(c.PUT_ON_STOPLIST) and "referral.expired.v1" not in r.fakes.notified()
    st = await r.status()
    assert st.state is S.PAUSED and st.stoplist_until is None and st.deadline is None


async def test_acts_after_such_an_expiry_are_refused_as_expired_not_stoplisted(referral):
    r = await referral(issued=(2026, 3, 20, 10, 0), country="KZ", child_aged_out=True)
    await r.outcome()
    reason = await r.refused(c.CANCEL, c.CancelReferral())
    assert "expired at 2026-04-02T00:00:00" in reason and "stop-list" not in reason


async def test_a_child_not_past_school_age_still_goes_on_the_stoplist(referral):
    r = await referral(issued=(2026, 3, 20, 10, 0), country="KZ")
    assert (await r.outcome()).state is S.RESUMED
    assert c.PUT_ON_STOPLIST in r.fakes.queue_calls()
