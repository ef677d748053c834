"""Recorded histories (workflows/histories/*.json, every version that ran)
replay against the current ReferralWorkflow: a change that would break the
referrals already running fails here, not in production."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from workflows import contracts as c
from workflows.referral import ReferralWorkflow
from workflows.worker import sandbox_runner

HISTORIES = sorted((Path(__file__).resolve().parents[2] / "workflows" / "histories").glob("*.json"))


def history(path: Path) -> WorkflowHistory:
    name = path.stem.split("-", 1)[1]
    return WorkflowHistory.from_json(f"referral-{name}", path.read_text())


def test_histories_of_every_path_are_recorded():
    names = {p.stem.split("-", 1)[1] for p in HISTORIES}
    assert {"general-enrolled", "general-expired-stoplist-resumed", "privileged-rejected", "general-cancelled",
            "privileged-certificate-extended-confirmed-enrolled", "general-expired-aged-out"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_on_the_current_workflow(path):
    replayer = Replayer(workflows=[ReferralWorkflow], data_converter=pydantic_data_converter,
                        workflow_runner=sandbox_runner())
    await replayer.replay_workflow(history(path))


@workflow.defn(name="ReferralWorkflow")
class ChangedWithoutPatch(ReferralWorkflow):
    """A careless change: one more timer before anything else."""

    @workflow.run
    async def run(self, inp: c.ReferralInput) -> c.ReferralOutcome:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


async def test_a_change_without_workflow_patched_breaks_replay():
    # Unsandboxed: the sandbox would re-import this test module, which reads files.
    replayer = Replayer(workflows=[ChangedWithoutPatch], data_converter=pydantic_data_converter,
                        workflow_runner=UnsandboxedWorkflowRunner())
    path = next(p for p in HISTORIES if p.stem.endswith("general-enrolled"))
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history(path))
