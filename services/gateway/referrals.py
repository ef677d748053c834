"""A parent's acts on a referral ("Cancel direction", "Extend direction")
reach the referral's workflow as Temporal updates (workflows/contracts.py);
the workflow checks them against its own clock and state, and its refusal
comes back in its own words. The status query tells the cabinet which
buttons the rules allow right now."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from services.gateway.clients import UpstreamError
from workflows import contracts as c


class Referrals(Protocol):
    async def status(self, referral_id: str) -> dict | None: ...
    async def cancel(self, referral_id: str, actor: str) -> dict: ...
    async def extend(self, referral_id: str, actor: str) -> dict: ...


def refused(reason: str, status: int = 409) -> UpstreamError:
    return UpstreamError(status, [{"field": "referral", "code": "", "message": reason}], reason)


class TemporalReferrals:
    """Referrals over a Temporal client connected on first use, so the
    gateway starts and serves pages while Temporal is down."""

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
                            self.address, namespace=self.namespace, data_converter=pydantic_data_converter),
                            self.timeout)
                    except Exception as exc:
                        raise UpstreamError(503, detail=f"Temporal at {self.address}: {exc!r}") from exc
        return self._client

    async def status(self, referral_id: str) -> dict | None:
        """None when the workflow cannot say (gone, or Temporal unreachable):
        the cabinet then offers no extension, the safe side."""
        try:
            handle = (await self.client()).get_workflow_handle(c.workflow_id(referral_id))
            found = await asyncio.wait_for(handle.query(c.STATUS, result_type=c.ReferralStatus), self.timeout)
        except (UpstreamError, RPCError, asyncio.TimeoutError, OSError, Exception):
            return None
        return found.model_dump(mode="json")

    async def cancel(self, referral_id: str, actor: str) -> dict:
        return await self._update(referral_id, c.CANCEL, c.CancelReferral(acted_at=datetime.now(UTC), actor=actor))

    async def extend(self, referral_id: str, actor: str) -> dict:
        return await self._update(referral_id, c.EXTEND, c.ExtendReferral(acted_at=datetime.now(UTC), actor=actor))

    async def _update(self, referral_id: str, name: str, act) -> dict:
        handle = (await self.client()).get_workflow_handle(c.workflow_id(referral_id))
        try:
            result = await asyncio.wait_for(handle.execute_update(name, act, result_type=c.ActResult), self.timeout)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise refused(cause.message if isinstance(cause, ApplicationError) else str(cause or exc)) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise refused("this direction is no longer open", 404) from exc
            raise UpstreamError(503, detail=str(exc)) from exc
        except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
            raise UpstreamError(503, detail=repr(exc)) from exc
        return result.model_dump(mode="json")
