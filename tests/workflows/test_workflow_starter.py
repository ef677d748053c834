"""The queue's WorkflowStarter starts each referral's workflow once, by its
id `referral-<id>`: two starters taking the same batch start no second
workflow of a running referral."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from temporalio.client import WorkflowExecutionStatus

from services.queue.activities import WorkflowStarter
from workflows import contracts as c


class Unstarted:
    """The queue's referrals as the starter sees them: the same pending
    referrals every round until they are marked started (as after a crash
    before the mark)."""

    def __init__(self, pending: list[dict]):
        self.pending = pending
        self.marked: list[str] = []

    def unstarted(self, limit: int) -> list[dict]:
        return self.pending[:limit]

    def mark_started_many(self, referral_ids: list[str]) -> None:
        self.marked += referral_ids


def pending_referral() -> dict:
    referral_id = f"s{uuid.uuid4().hex[:12]}"
    return {"referral_id": referral_id, "application_id": f"app-{referral_id}", "kindergarten": "sun",
            "cohort": 2024, "language": "ru", "category": "general", "for_category": None,
            "needs_confirmation": False, "issued_at": datetime(2027, 3, 1, 4, tzinfo=UTC), "announced": True,
            "resume": None, "country": "KG", "parent_id": None, "policy": {}}


async def test_two_starters_taking_the_same_referrals_start_each_workflow_once(env):
    batch = [pending_referral() for _ in range(3)]
    task_queue = f"nobody-{uuid.uuid4().hex[:8]}"
    one, two = Unstarted(batch), Unstarted(batch)
    starters = [WorkflowStarter(SimpleNamespace(referrals=q), address="unused", task_queue=task_queue)
                for q in (one, two)]
    handles = [env.client.get_workflow_handle(c.workflow_id(p["referral_id"])) for p in batch]
    try:
        for starter in starters:
            assert await starter.start_pending(env.client) == 3
        runs = [await h.describe() for h in handles]
        assert all(r.status == WorkflowExecutionStatus.RUNNING for r in runs)
        assert sorted(one.marked) == sorted(two.marked) == sorted(p["referral_id"] for p in batch)
    finally:
        for h in handles:
            await h.terminate("test over")
