"""ReferralWorkflows through Temporal alone: how fast they start and run to
their first record, and what each costs the server and the worker.

A Temporal dev server of its own (SQLite, as `kezek run` starts it), one
worker with the real workflow (workflows/worker.py: the sandbox, the
converter) and stand-in activities that only note the call, so the figures
are Temporal's and the worker's, not the services' (bench/distribution_day.py
runs the whole system). First `--workflows` are started, `--concurrency` at
a time, with no worker polling (starts/s, CPU per start); then the worker
runs them until each has recorded its issue (workflows/s, CPU per workflow
of the server's process and of this one, which runs the worker). CPU
figures hold on a loaded machine; wall figures do not: the load average is
printed beside them. The last line is one JSON object.

    .venv/bin/python bench/referral_workflows.py                     # 300 workflows, 50 starts in flight
    .venv/bin/python bench/referral_workflows.py --workflows 2000 --concurrency 100
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio import activity  # noqa: E402

from kezek.infra.temporal import TemporalDevServer  # noqa: E402
from workflows import contracts as c  # noqa: E402
from workflows.worker import build_worker, connect  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> float:
    return round(os.getloadavg()[0], 1)


async def measure(address: str, server_pid: int, n: int, concurrency: int) -> dict:
    client = await connect(address)
    recorded: list[float] = []

    @activity.defn(name=c.RECORD_REFERRAL)
    async def record_referral(call: c.RecordReferral) -> bool:
        recorded.append(time.monotonic())
        return True

    others = []
    for name in (*c.QUEUE_ACTIVITIES, *c.NOTIFICATION_ACTIVITIES):
        if name != c.RECORD_REFERRAL:
            @activity.defn(name=name)
            async def other(call: dict) -> None:
                return None
            others.append(other)

    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    fields = dict(application_id="a", kindergarten="k", cohort=2023, language="ru", category="general",
                  for_category=None, needs_confirmation=False, issued_at=datetime.now(UTC), country="KG",
                  policy=c.ReferralPolicy(), parent_id="p")
    gate = asyncio.Semaphore(concurrency)

    async def start(i: int) -> None:
        async with gate:
            await client.start_workflow(c.WORKFLOW_TYPE, c.ReferralInput(referral_id=str(i), **fields),
                                        id=f"{task_queue}-{i}", task_queue=task_queue)

    def stage(since: tuple[float, float, float], ours: str, what: str) -> tuple[dict, tuple[float, float, float]]:
        """The figures of a stage of `n` items since `since` (server CPU, our
        CPU, time), and the new mark."""
        now = cpu_seconds(server_pid), time.process_time(), time.monotonic()
        seconds = now[2] - since[2]
        figures = {"seconds": round(seconds, 2), "per_second": round(n / seconds, 1),
                   "server_cpu_ms_each": round((now[0] - since[0]) / n * 1000, 2),
                   f"{ours}_cpu_ms_each": round((now[1] - since[1]) / n * 1000, 2), "load": load()}
        print(f"{what} {n:,} in {seconds:.1f} s: {figures['per_second']}/s; CPU each: server "
              f"{figures['server_cpu_ms_each']} ms, {ours} {figures[f'{ours}_cpu_ms_each']} ms "
              f"(load {figures['load']})", flush=True)
        return figures, now

    out: dict = {"workflows": n, "concurrency": concurrency, "load_before": load()}
    mark = cpu_seconds(server_pid), time.process_time(), time.monotonic()
    await asyncio.gather(*(start(i) for i in range(n)))
    out["starts"], mark = stage(mark, "client", "started")
    async with build_worker(client, [record_referral, *others], task_queue=task_queue):
        mark = (mark[0], mark[1], time.monotonic())
        while len(recorded) < n:
            await asyncio.sleep(0.05)
        out["run"], _ = stage(mark, "worker", "ran to their first record")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workflows", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=50, help="starts in flight at once")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kezek-wf-") as tmp:
        server = TemporalDevServer(Path(tmp) / "temporal").start()
        try:
            out = asyncio.run(measure(server.address, server.proc.pid, args.workflows, args.concurrency))
        finally:
            server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
