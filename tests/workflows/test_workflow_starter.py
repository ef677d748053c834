"""The queue's WorkflowStarter starts each referral's workflow once, by its
id `referral-<id>`: a referral started again (a crash between the start and
the mark, two starters taking the same batch) gets no second workflow, even
when the first one has ended meanwhile."""
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


async def test_a_referral_started_again_after_its_workflow_ended_gets_no_second_workflow(env):
    pending = pending_referral()
    queue = Unstarted([pending])
    # No worker listens on this task queue: the workflow stays as started.
    starter = WorkflowStarter(SimpleNamespace(referrals=queue), address="unused",
                              task_queue=f"nobody-{uuid.uuid4().hex[:8]}")
    handle = env.client.get_workflow_handle(c.workflow_id(pending["referral_id"]))
    try:
        assert await starter.start_pending(env.client) == 1
        first = await handle.describe()
        await handle.terminate("the referral's workflow ended")
        # The mark was lost: the same referral comes round again.
        assert await starter.start_pending(env.client) == 1
        after = await handle.describe()
        assert after.run_id == first.run_id and after.status == WorkflowExecutionStatus.TERMINATED
        assert queue.marked == [pending["referral_id"]] * 2
    finally:
        latest = await handle.describe()
        if latest.status == WorkflowExecutionStatus.RUNNING:
            await env.client.get_workflow_handle(handle.id, run_id=latest.run_id).terminate("test over")


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
