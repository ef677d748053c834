"""The worker for the referral task queue.

The ReferralWorkflow always runs here; the activities are whoever implements
the contracts of workflows/contracts.py: the queue and notifications services
in production, fakes in tests, the in-memory register of `kezek scenario`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kezek import calendar as kcal
from workflows.contracts import TASK_QUEUE
from workflows.referral import ReferralWorkflow

WORKFLOWS = [ReferralWorkflow]

# Modules the sandbox shares with the host instead of re-importing them for
# every workflow run: pure code (the calendar and its holiday tables, the
# pydantic contracts) that is deterministic and slow to import.
PASSTHROUGH = ("kezek", "workflows.contracts", "holidays", "yaml", "pydantic", "pydantic_core",
               "annotated_types", "typing_extensions")


def sandbox_runner(*, passthrough_all: bool = False) -> SandboxedWorkflowRunner:
    """The workflow sandbox. `passthrough_all` shares every module with the
    host instead of re-importing the workflow's modules for each run (much
    faster to start a workflow) while keeping the checks on calls such as
    datetime.now(); the scenario runner uses it to start thousands."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    if passthrough_all:
        restrictions = restrictions.with_passthrough_all_modules()
    return SandboxedWorkflowRunner(restrictions=restrictions)


async def connect(address: str, namespace: str = "default") -> Client:
    """A client with the pydantic converter the contracts need."""
    from kezek import connections

    return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter,
                                **connections.temporal())


def build_worker(client: Client, activities: Iterable[Callable[..., Any]], *,
                 task_queue: str = TASK_QUEUE, **options: Any) -> Worker:
    """A Worker running the ReferralWorkflow with the given activities (each
    registered under its contract name with @activity.defn(name=...)).
    `options` go to temporalio's Worker (executors, concurrency limits...)."""
    if client.data_converter.payload_converter_class is not pydantic_data_converter.payload_converter_class:
        raise ValueError("the client needs temporalio.contrib.pydantic.pydantic_data_converter")
    # Holiday tables and decrees are loaded here, outside the sandbox.
    for country in kcal.TIMEZONES:
        kcal.calendar(country)
    options.setdefault("workflow_runner", sandbox_runner())
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=list(activities), **options)
