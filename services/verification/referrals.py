"""The caseworker's acts reach the referral through its workflow's updates
(workflows/contracts.py): confirm_privilege, reject_privilege. The workflow
validates each one against its own clock and state; its refusal reason comes
back to the caseworker as it was given."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Protocol

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows import contracts as c


class WorkflowRefused(Exception):
    """The referral workflow refused the act; `reason` is its own words.
    `state` is set when the referral turned out to be closed already (its
    workflow has completed), so the caller can bring its view up to date."""

    def __init__(self, reason: str, state: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.state = state


class WorkflowUnavailable(Exception):
    """The referral could not be reached (Temporal down, no such workflow)."""


class ReferralCommands(Protocol):
    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult: ...

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult: ...


class TemporalReferrals:
    """ReferralCommands over a Temporal client, connected on first use (so the
    service starts, and answers /ready honestly, while Temporal is down)."""

    def __init__(self, address: str, namespace: str = "default", *, timeout: timedelta = timedelta(seconds=20)):
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._client: Client | None = None
        self._lock: asyncio.Lock | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(Client.connect(
                            self.address, namespace=self.namespace,
                            data_converter=pydantic_data_converter), self.timeout.total_seconds())
                    except Exception as exc:
                        raise WorkflowUnavailable(f"Temporal at {self.address}: {exc}") from exc
        return self._client

    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult:
        return await self._update(referral_id, c.CONFIRM_PRIVILEGE, act, update_id)

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult:
        return await self._update(referral_id, c.REJECT_PRIVILEGE, act, update_id)

    async def status(self, referral_id: str) -> c.ReferralStatus:
        handle = (await self.client()).get_workflow_handle(c.workflow_id(referral_id))
        return await handle.query(c.STATUS, result_type=c.ReferralStatus)

    async def _update(self, referral_id: str, name: str, act, update_id: str) -> c.ActResult:
        handle = (await self.client()).get_workflow_handle(c.workflow_id(referral_id))
        try:
            # The update id makes a resubmitted form (same nonce) one act.
            return await asyncio.wait_for(
                handle.execute_update(name, act, id=update_id, result_type=c.ActResult),
                self.timeout.total_seconds())
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise WorkflowRefused(cause.message) from exc
            raise WorkflowRefused(str(cause or exc)) from exc
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise WorkflowUnavailable(str(exc)) from exc
            # A closed referral's workflow has completed: updates are refused
            # by the server, but its last state can still be queried.
            try:
                final = await handle.query(c.STATUS, result_type=c.ReferralStatus)
            except Exception:
                raise WorkflowRefused(f"no workflow for referral {referral_id}: {exc.message}") from exc
            raise WorkflowRefused(f"the referral is already closed: {final.state.value}",
                                  state=final.state.value) from exc
        except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
            raise WorkflowUnavailable(repr(exc)) from exc
