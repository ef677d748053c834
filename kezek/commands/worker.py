"""`kezek worker`: the Temporal worker for the referral workflows, with the
activities of every service that owns some (see `kezek.wiring`)."""
from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from kezek import connections, wiring
from kezek.logging import configure_logging, get_logger
from kezek.settings import Settings

log = get_logger(__name__)


async def serve(settings: Settings) -> None:
    from workflows.worker import build_worker

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
    argparse.ArgumentParser(prog="kezek worker", description=__doc__).parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service="worker")
    connections.configure(settings)
    asyncio.run(serve(settings))
    return 0
