"""The policy (DOMAIN.md sections 3 and 4): categories and their ranks, the
minimum age, the windows, the stop-list. A change is a new, audited version;
the old ones stay; it may move every position and asks for an allocation."""
from __future__ import annotations

from typing import Any

from services.queue.domain.policy import Policy
from services.queue.domain.refusals import Invalid, Refused
from services.queue.store import entries, policies
from services.queue.usecases.work import Actor, Context, name


class Policies:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def current(self) -> tuple[Policy, int | None]:
        with self.ctx.read() as w:
            return w.policy()

    def change(self, changes: dict[str, Any], *, actor: Actor, reason: str) -> tuple[Policy, int]:
        """A new policy version; the old ones stay, and the change is audited."""
        if not reason or not reason.strip():
            raise Invalid("policy_reason_missing", field="reason")
        with self.ctx.uow() as w:
            current, _ = w.policy()
            new = current.replace(**changes)
            removed = {c.code for c in current.categories} - {c.code for c in new.categories}
            in_use = entries.category_in_use(w.s, removed)
            if in_use:
                raise Refused("category_in_use", field="categories", category=in_use)
            version = policies.add(w.s, new, at=w.now(), actor=name(actor), reason=reason.strip())
            before, after = current.to_dict(), new.to_dict()
            diff = {k: {"from": before[k], "to": after[k]} for k in after if before.get(k) != after[k]}
            w.audit(actor, "policy.changed", f"policy:{version}", {"changes": diff, "reason": reason})
            w.request_allocation(f"policy version {version}")
            w.positions_moved(None)  # category ranks may have changed: every pool
            return new, version

    def history(self) -> list[dict]:
        with self.ctx.read() as w:
            return policies.history(w.s)
