"""An act on a referral whose workflow is not started yet. The allocation
announces a referral (the parent is told, the caseworker's case opens, the
cabinet shows it) in the transaction that issues it; the queue's starter
starts its workflow afterwards, minutes later on a distribution day. An act
that comes in between reaches a Temporal server that has no such workflow:
the caller is told to try again in a few seconds (503 with Retry-After,
naming the reason), never that the referral is closed nor a 500."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.gateway.referrals import TemporalReferrals
from tests.fakes.gateway import Stack
from tests.unit.test_gateway_api import register
from workflows import contracts as c
from workflows.client import LazyClient, ReferralNotStarted, ReferralUnavailable

pytestmark = pytest.mark.integration


async def test_an_act_on_a_referral_without_its_workflow_yet_is_to_be_retried_not_refused(temporal_dev):
    temporal = LazyClient(temporal_dev.address)
    with pytest.raises(ReferralNotStarted) as exc:
        await temporal.update("4711", c.CANCEL, c.CancelReferral(acted_at=datetime.now(UTC), actor="parent:1"))
    assert isinstance(exc.value, ReferralUnavailable) and exc.value.retry_after == 10
    assert "not started yet" in str(exc.value) and "4711" in str(exc.value)
    with pytest.raises(ReferralNotStarted):
        await temporal.status("4711")


def test_a_parents_cancel_before_the_workflow_starts_is_a_503_with_retry_after_naming_the_reason(
        tmp_path, temporal_dev):
    stack = Stack(tmp_path, rate_limit_per_minute=100_000)
    stack.gateway.state.gateway.referrals = TemporalReferrals(temporal_dev.address)
    api = stack.browser()
    token, app = register(api, stack)
    ref = stack.queue.publish_place(app)     # issued and announced; no workflow on Temporal yet
    r = api.post(f"/api/v1/me/referrals/{ref['referral_id']}/cancel", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    problem = r.json()
    assert problem["code"] == "referral_not_started" and problem["errors"][0]["field"] == "referral"
    # In the reader's language (Kyrgyz, the country's default here), with the seconds.
    assert "азыр эле берилди" in problem["errors"][0]["message"] and "10 секунд" in problem["errors"][0]["message"]
    assert stack.queue.referrals[ref["referral_id"]]["status"] == "live"
