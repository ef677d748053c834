"""How the services start referrals and act on them, by business key.

An act the rules refuse raises `ReferralRefused` with the reason for the
caller (the API answers 409 with it), whether the running workflow's
validator refused it or the referral is already closed.
"""
from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows import contracts as c


class ReferralRefused(Exception):
    """The act is not allowed; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def issue(client: Client, inp: c.ReferralInput, *, task_queue: str = c.TASK_QUEUE) -> WorkflowHandle:
    """Starts the referral's workflow; its id comes from the referral id, so
    issuing the same referral twice starts it once."""
    return await client.start_workflow(
        c.WORKFLOW_TYPE, inp, id=c.workflow_id(inp.referral_id), task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, result_type=c.ReferralOutcome)


async def act(client: Client, referral_id: str, update: str, req: c.Act) -> c.ActResult:
    """Runs an update (c.CONFIRM_PRIVILEGE, c.EXTEND, ...) and returns what it did."""
    handle = client.get_workflow_handle(c.workflow_id(referral_id), result_type=c.ReferralOutcome)
    try:
        return await handle.execute_update(update, req, result_type=c.ActResult)
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.type == c.REFUSED:
            raise ReferralRefused(cause.message) from None
        raise
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
        reason = await _why_closed(handle, referral_id)
        if reason is None:
            raise
    raise ReferralRefused(reason)


async def status(client: Client, referral_id: str) -> c.ReferralStatus:
    handle = client.get_workflow_handle(c.workflow_id(referral_id))
    return await handle.query(c.STATUS, result_type=c.ReferralStatus)


async def _why_closed(handle: WorkflowHandle, referral_id: str) -> str | None:
    """The reason for a referral whose workflow has ended (None: it has not)."""
    try:
        described = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return f"there is no referral {referral_id}"
        raise
    if described.status == WorkflowExecutionStatus.RUNNING:
        return None
    if described.status != WorkflowExecutionStatus.COMPLETED:
        return f"the referral was closed ({described.status.name.lower()})"
    outcome: c.ReferralOutcome = await handle.result()
    return c.closed_reason(outcome.state, outcome.closed_at, outcome.stoplist_until)
