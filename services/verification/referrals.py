"""The caseworker's acts reach the referral through its workflow's updates
(workflows/contracts.py): confirm_privilege, reject_privilege. The workflow
validates each one against its own clock and state; its refusal reason comes
back to the caseworker as it was given."""
from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from workflows import contracts as c
from workflows.client import LazyClient


class ReferralCommands(Protocol):
    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult: ...

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult: ...


class TemporalReferrals:
    """ReferralCommands over a Temporal client, connected on first use (so the
    service starts, and answers /ready honestly, while Temporal is down)."""

    def __init__(self, address: str, namespace: str = "default", *, timeout: timedelta = timedelta(seconds=20)):
        self.temporal = LazyClient(address, namespace, timeout=timeout)

    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult:
        return await self.temporal.update(referral_id, c.CONFIRM_PRIVILEGE, act, update_id=update_id)

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult:
        return await self.temporal.update(referral_id, c.REJECT_PRIVILEGE, act, update_id=update_id)

    async def status(self, referral_id: str) -> c.ReferralStatus:
        return await self.temporal.status(referral_id)
