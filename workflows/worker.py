"""The worker for the referral task queue, and `kezek worker`.

The ReferralWorkflow always runs here; the activities are whoever implements
the contracts of workflows/contracts.py: the queue and notifications services
in production (found by kezek.wiring), fakes in tests, the in-memory register
of `kezek scenario`.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Iterable
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kezek import calendar as kcal
from kezek import connections, wiring
from kezek.logging import configure_logging, get_logger
from kezek.settings import Settings
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


async def serve(settings: Settings) -> None:
    """Runs the worker with every service's activities until SIGINT/SIGTERM."""
    log = get_logger(__name__)
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                  data_converter=pydantic_data_converter, **connections.temporal())
    worker = build_worker(client, task_queue=settings.temporal_task_queue, activities=wiring.activities(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker.started", task_queue=settings.temporal_task_queue, address=settings.temporal_address)
        await stop.wait()
    log.info("worker.stopped")


def main(argv: list[str]) -> int:
    """`kezek worker`: the Temporal worker for the referral workflows, with
    the activities of every service that owns some (see kezek.wiring)."""
    argparse.ArgumentParser(prog="kezek worker", description=main.__doc__).parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service="worker")
    connections.configure(settings)
    asyncio.run(serve(settings))
    return 0
