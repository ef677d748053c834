"""The staff's acts reach the referral through its workflow's updates
(workflows/contracts.py): a caseworker's confirm_privilege and
reject_privilege, a kindergarten's enrol and cancel (a family that declined
the place in person ends it as a parent's cancel does). The workflow
validates each one against its own clock and state; its refusal comes back
with its code and parameters, for the page's language."""
from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from workflows import contracts as c
from workflows.client import LazyClient


class ReferralCommands(Protocol):
    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult: ...

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult: ...

    async def enrol(self, referral_id: str, act: c.RecordEnrolment, update_id: str) -> c.ActResult: ...

    async def cancel(self, referral_id: str, act: c.CancelReferral, update_id: str) -> c.ActResult: ...


class TemporalReferrals:
    """ReferralCommands over a Temporal client, connected on first use (so the
    service starts, and answers /ready honestly, while Temporal is down)."""

    def __init__(self, address: str, namespace: str = "default", *, timeout: timedelta = timedelta(seconds=20)):
        self.temporal = LazyClient(address, namespace, timeout=timeout)

    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult:
        return await self.temporal.update(referral_id, c.CONFIRM_PRIVILEGE, act, update_id=update_id)

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult:
        return await self.temporal.update(referral_id, c.REJECT_PRIVILEGE, act, update_id=update_id)

    async def enrol(self, referral_id: str, act: c.RecordEnrolment, update_id: str) -> c.ActResult:
        return await self.temporal.update(referral_id, c.ENROL, act, update_id=update_id)

    async def cancel(self, referral_id: str, act: c.CancelReferral, update_id: str) -> c.ActResult:
        return await self.temporal.update(referral_id, c.CANCEL, act, update_id=update_id)

    async def status(self, referral_id: str) -> c.ReferralStatus:
        return await self.temporal.status(referral_id)
