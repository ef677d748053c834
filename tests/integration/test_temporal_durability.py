"""A workflow waiting on a timer survives a restart of the Temporal dev
server (killed hard, restarted on the same SQLite file) and of its worker,
and its timer fires exactly once."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from kezek.infra.temporal import TemporalDevServer

pytestmark = pytest.mark.integration
FIRED: list[str] = []


@activity.defn(name="durability_timer_fired")
async def timer_fired(key: str) -> None:
    FIRED.append(key)


@workflow.defn(name="DurabilityProbe")
class DurabilityProbe:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(timedelta(seconds=seconds))
        await workflow.execute_activity(
            timer_fired, workflow.info().workflow_id,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
        return "fired"


def worker(client: Client, task_queue: str) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[DurabilityProbe], activities=[timer_fired],
                  workflow_runner=UnsandboxedWorkflowRunner())


async def test_timer_survives_server_and_worker_restart(tmp_path):
    import os

    os.chmod(tmp_path, 0o755)
    server = TemporalDevServer(tmp_path / "temporal").start()
    task_queue = f"durability-{uuid.uuid4().hex[:8]}"
    workflow_id = f"probe-{uuid.uuid4().hex[:8]}"
    try:
        client = await Client.connect(server.address)
        first_worker = worker(client, task_queue)
        async with first_worker:
            handle = await client.start_workflow(DurabilityProbe.run, 8.0, id=workflow_id, task_queue=task_queue)
            await asyncio.sleep(1.5)  # the workflow is now waiting on its timer
        # The worker is gone; now the server dies hard and comes back on its file.
        server.stop(hard=True)
        server.start()
        client = await Client.connect(server.address)
        async with worker(client, task_queue):
            result = await client.get_workflow_handle(handle.id).result()
        assert result == "fired"
        assert FIRED.count(workflow_id) == 1
    finally:
        server.stop()
