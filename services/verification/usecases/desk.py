"""What the kindergarten and district pages share (issue 19): the queue's
answers turned into the pages' refusals and outages, the scope check of a
kindergarten or district (a refused one audited, then "not found"), and the
audit of each act in this service's trail, refused and failed ones too (the
queue records what it changed; a refusal changes nothing there)."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from kezek.client import UpstreamError
from kezek.db import unit_of_work
from services.verification import domain as d
from services.verification.usecases.context import Context, Forbidden, NotFound, StaffView


class QueueUnavailable(Exception):
    """The queue service did not answer (or not as it should)."""


def refusal_of(exc: UpstreamError) -> d.Refused:
    """The queue's refusal as the pages' field errors (its codes are said
    in the reader's language by templates/_messages.html)."""
    errors = [d.err(str(e.get("field") or "form").split(".")[0] or "form", str(e.get("code") or "refused"),
                    **{k: v for k, v in (e.get("params") or {}).items() if isinstance(k, str)})
              for e in exc.errors if isinstance(e, dict)]
    return d.Refused(errors or [d.err("form", exc.code or "refused")])


@asynccontextmanager
async def asking_the_queue():
    """404 -> not found, 403 -> not allowed, 409/422 -> the form's errors,
    anything else -> the queue is unavailable."""
    try:
        yield
    except UpstreamError as exc:
        if exc.status == 404:
            raise NotFound(exc.detail or "not found") from None
        if exc.status == 403:
            raise Forbidden(exc.detail or "forbidden") from None
        if exc.status in (400, 409, 413, 422):
            raise refusal_of(exc) from None
        raise QueueUnavailable(f"{exc.status}: {exc.detail}") from None


class Desk:
    """The queue (services/verification/queue.py) and the context."""

    def __init__(self, ctx: Context, queue: Any):
        self.ctx = ctx
        self._queue = queue

    @property
    def queue(self):
        if self._queue is None:
            raise QueueUnavailable("no queue client configured")
        return self._queue

    async def audit(self, actor: StaffView, action: str, subject: str, *, district: str | None = None,
                    outcome: str = "ok", **details: Any) -> None:
        """One entry of this service's trail, in a transaction of its own."""
        def write() -> None:
            with unit_of_work(self.ctx.sessions) as s:
                self.ctx.audit(s, actor, action, subject_id=subject, district=district, outcome=outcome, **details)
        await asyncio.to_thread(write)

    async def audited(self, actor: StaffView, action: str, subject: str, call, *, district: str | None = None,
                      **details: Any):
        """Runs the queue call `call()` (a coroutine function) and records
        the act: ok, refused (with the queue's codes) or failed."""
        try:
            async with asking_the_queue():
                result = await call()
        except d.Refused as exc:
            await self.audit(actor, action, subject, district=district, outcome="refused",
                             refusal=[e.code for e in exc.errors], **details)
            raise
        except QueueUnavailable as exc:
            await self.audit(actor, action, subject, district=district, outcome="failed", error=str(exc)[:300],
                             **details)
            raise
        await self.audit(actor, action, subject, district=district, **details)
        return result

    async def kindergarten_in_scope(self, actor: StaffView, kg: str, action: str) -> dict:
        """The kindergarten, if the member of staff's scope reaches it; else
        the attempt is audited and it is "not found" (its existence is not
        disclosed)."""
        if d.SCOPES[actor.role] is d.Scope.KINDERGARTEN and actor.kindergarten != kg:
            await self.denied(actor, action, f"kindergarten:{kg}")
        found = await self.found_or_denied(actor, action, f"kindergarten:{kg}",
                                           lambda: self.queue.kindergarten(actor.principal, kg))
        if not d.reaches(actor.role, actor.kindergarten, actor.district, kg, found.get("district")):
            await self.denied(actor, action, f"kindergarten:{kg}")
        return found

    async def found_or_denied(self, actor: StaffView, action: str, subject: str, call) -> Any:
        """What the queue's `call()` reads; "not found" there is an attempt
        outside the scope (or at nothing), audited like one."""
        try:
            async with asking_the_queue():
                return await call()
        except NotFound:
            await self.denied(actor, action, subject)
            raise

    async def district_in_scope(self, actor: StaffView, district: str, action: str) -> None:
        if not d.all_districts(actor.role) and actor.district != district:
            await self.denied(actor, action, f"district:{district}")

    async def denied(self, actor: StaffView, action: str, subject: str) -> None:
        await self.audit(actor, action, subject, outcome="denied")
        raise NotFound(subject)
