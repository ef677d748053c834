"""A referral worker in a process of its own, so a test can kill it with
SIGKILL. Its fake services append every call to a JSON Lines file.

    python tests/workflows/durable_worker.py ADDRESS TASK_QUEUE CALLS_FILE
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio import activity  # noqa: E402

from workflows import contracts as c  # noqa: E402
from workflows.worker import build_worker, connect  # noqa: E402


def fakes(calls: Path) -> list:
    out = []
    for name in c.QUEUE_ACTIVITIES + c.NOTIFICATION_ACTIVITIES:
        def make(name: str):
            @activity.defn(name=name)
            async def fake(call: dict) -> None:
                with calls.open("a") as f:
                    f.write(json.dumps({"activity": name, "key": call["idempotency_key"], "at": call["at"]}) + "\n")
            return fake
        out.append(make(name))
    return out


async def main(address: str, task_queue: str, calls: str) -> None:
    client = await connect(address)
    async with build_worker(client, fakes(Path(calls)), task_queue=task_queue):
        print("worker ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
