"""Live referrals moved from the old portal on real PostgreSQL and a real
Temporal dev server: the import records them, the queue's workflow starter
resumes each as a ReferralWorkflow in its recorded state with its recorded
deadline (and extension), a second import changes nothing and starts
nothing, and reconciliation finds every deadline of the export."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus

from kezek import calendar as kcal
from kezek.db import make_engine, make_session_factory
from importer import plan as p
from importer.generate import BISHKEK, generate
from importer.reconcile import reconcile
from importer.run import Importer
from kezek.migrations import upgrade
from services.queue.activities import QueueActivities, WorkflowStarter
from services.queue.usecases import Queue
from workflows import contracts as c
from workflows.worker import build_worker, connect

pytestmark = pytest.mark.integration


def export_with_privileged_referrals(now: datetime):
    """The generator's export on today's date (deadlines ahead), with three
    live referrals made privileged: waiting for confirmation, waiting after
    its one extension, and confirmed and waiting for enrolment."""
    ex = generate(applications=300, kindergartens=8, seed=17, now=now, bad=False)
    live = [r for r in ex["referrals"] if r["state"] == "awaiting_enrolment"][:3]
    apps = {a["id"]: a for a in ex["applications"]}
    for r in live:
        apps[r["application_id"]]["category"] = "extraordinary"
        r.update(category="extraordinary", needs_confirmation="true")
    live[0].update(state="awaiting_confirmation", extended="false")
    live[1].update(state="awaiting_confirmation", extended="true",
                   deadline=(datetime.fromisoformat(live[1]["deadline"]) + timedelta(days=30)).isoformat())
    issued = datetime.fromisoformat(live[2]["issued_at"])
    live[2].update(confirmed_at=(issued + (now - issued) / 2).replace(microsecond=0).isoformat())
    return ex


async def test_imported_live_referrals_run_as_workflows_to_their_recorded_deadlines_once(
        pg_url, temporal_dev, temporal_namespace):
    url = pg_url("queue_import_temporal")
    upgrade("queue", url)
    engine = make_engine(url)
    service = Queue(make_session_factory(engine), country="KG")
    policy = service.policy.current()[0]
    export = export_with_privileged_referrals(datetime.now(BISHKEK))
    plan = p.make_plan(export, policy)
    assert len(plan.referrals) == 12
    assert {(r.state, r.extended, r.confirmed_at is not None) for r in plan.referrals} == {
        ("awaiting_enrolment", False, False), ("awaiting_confirmation", False, False),
        ("awaiting_confirmation", True, False), ("awaiting_enrolment", False, True)}

    first = Importer(service, workers=2).run(plan, export.source)
    assert first.counts["referrals"]["created"] == 12 and not first.refused

    asked: list[str] = []

    @activity.defn(name=c.NOTIFY_PARENT)
    async def notify_parent(call: c.NotifyParent) -> None:
        asked.append(call.kind)

    client = await connect(temporal_dev.address, temporal_namespace)
    task_queue = f"referrals-import-{uuid.uuid4().hex[:8]}"
    starter = WorkflowStarter(service, address=temporal_dev.address, namespace=temporal_namespace,
                              task_queue=task_queue, batch=500)
    cal = kcal.calendar("KG")
    async with build_worker(client, [*QueueActivities(service).all(), notify_parent], task_queue=task_queue):
        assert await starter.start_pending(client) == 12
        runs = {}
        for r in plan.referrals:
            ref_id = service.views.application(r.application_id)["referral"]["id"]
            handle = client.get_workflow_handle(c.workflow_id(str(ref_id)))
            st = await handle.query(c.STATUS, result_type=c.ReferralStatus)
            assert (st.state.value, st.deadline, st.extended) == (r.state, r.deadline, r.extended), r.old_id
            assert st.confirmed_at == r.confirmed_at
            if r.state == "awaiting_confirmation" and not r.extended:
                assert st.extension_day == cal.last_working_day_before(r.deadline)
            else:
                assert st.extension_day is None
            runs[r.referral_id] = (await handle.describe()).run_id

        # Nothing was announced again: the queue published no "issued" fact
        # and the parents were sent no "issued" message.
        assert "referral.issued.v1" not in asked
        assert not [e for e in service.audit.trail(limit=5000) if e["action"] == "referral.issued"]

        second = Importer(service, workers=2).run(p.make_plan(export, policy), export.source)
        assert second.changed() == 0 and second.counts["referrals"]["unchanged"] == 12
        assert service.referrals.unstarted() == [] and await starter.start_pending(client) == 0
        for r in plan.referrals:
            ref_id = service.views.application(r.application_id)["referral"]["id"]
            described = await client.get_workflow_handle(c.workflow_id(str(ref_id))).describe()
            assert described.status == WorkflowExecutionStatus.RUNNING and described.run_id == runs[r.referral_id]

        result = reconcile(service, plan, policy, sample=20)
        assert result.ok and result.referrals == 12, result.differences[:5]
        assert service.audit.check_register() == []

        for r in plan.referrals:  # leave no workflow running on the shared server
            ref_id = service.views.application(r.application_id)["referral"]["id"]
            await client.get_workflow_handle(c.workflow_id(str(ref_id))).terminate("test over")
    engine.dispose()
