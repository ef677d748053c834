"""The worker for the referral task queue, and `kezek worker`.

The ReferralWorkflow always runs here; the activities are whoever implements
the contracts of workflows/contracts.py: the queue and notifications services
in production (found by kezek.wiring), fakes in tests, the in-memory register
of `kezek scenario`.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
from collections.abc import Callable, Iterable
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kezek import calendar as kcal
from kezek import connections, metrics, wiring
from kezek.commands.background import add_name_option, heartbeat_of, started
from kezek.db import service_engine
from kezek.health import HEARTBEAT_SECONDS, database_check, run_checks, temporal_check_async, write_heartbeat
from kezek.logging import get_logger
from kezek.settings import Settings
from workflows.contracts import TASK_QUEUE
from workflows.referral import ReferralWorkflow

WORKFLOWS = [ReferralWorkflow]

# Modules the sandbox shares with the host instead of re-importing them for
# every workflow run: pure code (the calendar and its holiday tables, the
# pydantic contracts, the referral rules) that is deterministic and slow to
# import; and OpenTelemetry, whose context the tracing interceptor must share
# with the host. The workflow's own module (workflows.referral) is not shared:
# the sandbox's checks on calls such as datetime.now() hold only for modules
# it imports itself (a shared module calls the real datetime).
PASSTHROUGH = ("kezek", "workflows.contracts", "workflows.rules", "holidays", "yaml", "pydantic",
               "pydantic_core", "annotated_types", "typing_extensions", "opentelemetry")
# The modules the sandbox imports anew for every workflow it runs.
SANDBOXED = ("workflows/__init__.py", "workflows/referral.py")


def compile_sandboxed() -> None:
    """Writes the bytecode of the modules the sandbox imports for every
    workflow run, when it is missing: under PYTHONDONTWRITEBYTECODE (set in
    development and in the image) with no .pyc beside the source (an editable
    install), each run compiled workflows/referral.py from source, most of a
    workflow's start. A wheel installed by pip has its bytecode already; code
    that cannot be written to is left as it is."""
    import py_compile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in SANDBOXED:
        source = root / name
        try:
            cached = Path(importlib.util.cache_from_source(str(source)))
            if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
                py_compile.compile(str(source), cfile=str(cached), doraise=True)
        except (OSError, py_compile.PyCompileError, NotImplementedError):
            pass


def sandbox_runner(*, passthrough_all: bool = False) -> SandboxedWorkflowRunner:
    """The workflow sandbox. `passthrough_all` shares every module with the
    host instead of re-importing the workflow's modules for each run (faster
    to start a workflow, but the workflow's module then calls the real
    datetime.now() and the like unchecked); the scenario runner uses it to
    start thousands."""
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
    compile_sandboxed()
    options.setdefault("workflow_runner", sandbox_runner())
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=list(activities), **options)


async def heartbeat(settings: Settings, name: str, client: Client, running: asyncio.Task,
                    stop: asyncio.Event, extra: dict | None = None) -> None:
    """The worker's heartbeat (kezek.health): its databases and Temporal,
    every few seconds, until it stops."""
    path = heartbeat_of(settings, name)
    databases = [(f"database:{s}", database_check(service_engine(settings, s)))
                 for s in wiring.services_with_activities()]
    try:
        while not stop.is_set():
            checks = await asyncio.to_thread(run_checks, databases)
            try:
                await temporal_check_async(client)
                checks["temporal"] = "ok"
            except Exception as exc:
                checks["temporal"] = repr(exc)[:300]
            await asyncio.to_thread(write_heartbeat, path, loops={"worker": not running.done()}, checks=checks,
                                    extra=extra)
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                pass
    finally:
        path.unlink(missing_ok=True)


def sdk_runtime(settings: Settings) -> Runtime | None:
    """A runtime whose Temporal SDK metrics (task slots, pollers, schedule-to-
    start and execution latencies, sticky cache) Prometheus reads on
    host:temporal_metrics_port; None (the default runtime, no metrics) when 0."""
    if not settings.temporal_metrics_port:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=f"{settings.host}:{settings.temporal_metrics_port}")))


async def serve(settings: Settings, name: str = "worker") -> None:
    """Runs the worker with every service's activities until SIGINT/SIGTERM;
    a worker that fails on its own ends the process with an error, so that
    its supervisor starts it again."""
    log = get_logger(__name__)
    ports = {"metrics_port": metrics.serve(settings.metrics_port, settings.host)}
    runtime = sdk_runtime(settings)
    if runtime is not None:
        ports["temporal_metrics_port"] = settings.temporal_metrics_port
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                  data_converter=pydantic_data_converter, runtime=runtime, **connections.temporal())
    worker = build_worker(client, task_queue=settings.temporal_task_queue, activities=wiring.activities(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(worker.run())
    beat = asyncio.create_task(heartbeat(settings, name, client, running, stop,
                                         {k: v for k, v in ports.items() if v}))
    log.info("worker.started", task_queue=settings.temporal_task_queue, address=settings.temporal_address)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    if not running.done():
        await worker.shutdown()
    await beat
    await running   # a worker that failed on its own raises here
    log.info("worker.stopped")


def main(argv: list[str]) -> int:
    """`kezek worker`: the Temporal worker for the referral workflows, with
    the activities of every service that owns some (see kezek.wiring). Run
    as many as you like on one task queue: Temporal spreads the workflow and
    activity tasks among them, and gives a task a dead worker held to
    another when its timeout ends."""
    p = argparse.ArgumentParser(prog="kezek worker", description=main.__doc__)
    add_name_option(p, "worker")
    args = p.parse_args(argv)
    name = args.name or "worker"
    asyncio.run(serve(started(name), name))
    return 0
