"""How the services start referrals and act on them, by business key.

An act the rules refuse raises `ReferralRefused` with the reason for the
caller (the API answers 409 with it), whether the running workflow's
validator refused it or the referral is already closed. `LazyClient` is
what a web service holds: it connects on first use, so the service starts
(and answers /ready honestly) while Temporal is down, and it turns
Temporal's failures into `ReferralRefused` or `ReferralUnavailable`; a
referral whose workflow the queue has not started yet (the allocation
announces a referral before its workflow starts) into `ReferralNotStarted`,
a `ReferralUnavailable` with the seconds to wait (503 with Retry-After).
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from kezek import connections
from workflows import contracts as c


class ReferralRefused(Exception):
    """The act is not allowed; `reason` says why in English, `code` and
    `params` (workflows/rules.TEXTS) when the rules gave one, for pages in the
    reader's language. `closed` is set when the referral's workflow has ended
    (or never existed), with its last `state` when that is known, so the
    caller can bring its own view up to date."""

    def __init__(self, reason: str, *, closed: bool = False, state: str | None = None, code: str | None = None,
                 params: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.closed = closed
        self.state = state
        self.code = code if code is not None else getattr(reason, "code", None)
        self.params = params if params is not None else dict(getattr(reason, "params", {}))

    @classmethod
    def of(cls, cause: ApplicationError) -> "ReferralRefused":
        """The workflow's refusal, with the code its details carry."""
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return cls(cause.message, code=details.get("code"), params=details.get("params") or {})


class ReferralUnavailable(Exception):
    """The referral could not be reached: Temporal down or too slow."""


class ReferralNotStarted(ReferralUnavailable):
    """The referral has no workflow yet: the allocation issued and announced
    it (the parent, the caseworker and the cabinet know of it), and the
    queue's starter has not started its workflow yet, which on a
    distribution day can take minutes. Nothing was done; the same act
    `retry_after` seconds later reaches the workflow. Callers act only on
    referrals their own view shows live, so a missing workflow is one still
    to be started."""

    def __init__(self, referral_id: str, retry_after: int = 10) -> None:
        super().__init__(f"referral {referral_id} was issued moments ago and its workflow is not started yet: "
                         f"nothing was done, try again in {retry_after} seconds")
        self.referral_id = referral_id
        self.retry_after = retry_after


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
            raise ReferralRefused.of(cause) from None
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


class LazyClient:
    """A Temporal client connected on first use; every call has a time limit."""

    def __init__(self, address: str, namespace: str = "default", *, timeout: timedelta = timedelta(seconds=10)):
        self.address = address
        self.namespace = namespace
        self.timeout = timeout.total_seconds()
        self._client: Client | None = None
        self._lock: asyncio.Lock | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(Client.connect(
                            self.address, namespace=self.namespace, data_converter=pydantic_data_converter,
                            **connections.temporal()),
                            self.timeout)
                    except Exception as exc:
                        raise ReferralUnavailable(f"Temporal at {self.address}: {exc!r}") from exc
        return self._client

    async def status(self, referral_id: str) -> c.ReferralStatus:
        handle = (await self.client()).get_workflow_handle(c.workflow_id(referral_id))
        try:
            return await asyncio.wait_for(handle.query(c.STATUS, result_type=c.ReferralStatus), self.timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ReferralNotStarted(referral_id) from exc
            raise ReferralUnavailable(str(exc)) from exc
        except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
            raise ReferralUnavailable(repr(exc)) from exc

    async def update(self, referral_id: str, name: str, act: c.Act, *, update_id: str | None = None) -> c.ActResult:
        """Runs the update `name` (c.CANCEL, c.CONFIRM_PRIVILEGE, ...). The
        update id makes a resubmitted form (same nonce) one act."""
        handle = (await self.client()).get_workflow_handle(c.workflow_id(referral_id))
        try:
            return await asyncio.wait_for(
                handle.execute_update(name, act, id=update_id, result_type=c.ActResult), self.timeout)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ReferralRefused.of(cause) from exc
            raise ReferralRefused(str(cause or exc)) from exc
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise ReferralUnavailable(str(exc)) from exc
            # A closed referral's workflow has completed: the server refuses
            # updates, but its last state can still be queried. No workflow
            # at all: the referral's is still to be started.
            try:
                final = await asyncio.wait_for(handle.query(c.STATUS, result_type=c.ReferralStatus), self.timeout)
            except RPCError as missing:
                if missing.status == RPCStatusCode.NOT_FOUND:
                    raise ReferralNotStarted(referral_id) from exc
                raise ReferralRefused(f"there is no open referral {referral_id}", closed=True) from exc
            except Exception:
                raise ReferralRefused(f"there is no open referral {referral_id}", closed=True) from exc
            raise ReferralRefused(f"the referral is already closed: {final.state.value}", closed=True,
                                  state=final.state.value) from exc
        except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
            raise ReferralUnavailable(repr(exc)) from exc
