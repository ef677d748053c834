"""How fast the Temporal dev server accepts ReferralWorkflow starts (issue 15),
for the queue's starter's settings: `concurrency` starts in flight at once,
`batch` referrals taken per round (a round waits for its slowest start, as
services/queue/activities.py WorkflowStarter.start_pending does).

Each setting gets a fresh dev server (`temporal server start-dev` on a
SQLite file, as `kezek run` runs it) and, unless --no-worker, the real
workflow worker on the same task queue, so the server runs the workflows'
first tasks while the starts go in, as on a distribution day. The inputs
are announced referrals (the allocation wrote their referral.issued): the
first task only sets the first window's timer. Prints, per setting, the
starts per second, the server's CPU seconds per start (from /proc), its
persistence calls per start by operation (from its /metrics) and the load
average before and after; the last line is one JSON object.

    .venv/bin/python bench/workflow_starts.py --starts 10000 --settings 50x500,200x500,10x500,50x2000
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.common import WorkflowIDReusePolicy  # noqa: E402

from kezek.infra.procs import free_port  # noqa: E402
from kezek.infra.temporal import TemporalDevServer  # noqa: E402
from workflows import contracts as c  # noqa: E402
from workflows.worker import build_worker, connect  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def persistence_requests(metrics_port: int) -> dict[str, float]:
    """The server's persistence calls so far, by operation (its /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    calls: dict[str, float] = {}
    for m in map(re.compile(r'^(?:visibility_)?persistence_requests\{(.*)\} ([0-9.e+]+)$').match, text.splitlines()):
        op = re.search(r'operation="([^"]+)"', m[1]) if m else None
        if op:
            calls[op[1]] = calls.get(op[1], 0.0) + float(m[2])
    return calls


def load() -> float:
    return os.getloadavg()[0]


def inputs(n: int) -> list[c.ReferralInput]:
    issued = datetime.now(UTC)
    return [c.ReferralInput(referral_id=f"b{uuid.uuid4().hex[:12]}", application_id=f"a{i}", kindergarten="kg-1",
                            cohort=2023, language="ru", category="general", needs_confirmation=False,
                            issued_at=issued, parent_id=f"p{i}", announced=True) for i in range(n)]


async def run_setting(folder: Path, starts: int, concurrency: int, batch: int, worker: bool) -> dict:
    server = TemporalDevServer(folder, metrics_port=free_port()).start()
    try:
        client = await connect(server.address)
        task_queue = "referrals"
        pending = inputs(starts)
        calls0 = persistence_requests(server.metrics_port)
        cpu0, load0 = cpu_seconds(server.proc.pid), load()
        t0 = time.monotonic()

        async def go() -> None:
            gate = asyncio.Semaphore(concurrency)

            async def start(inp: c.ReferralInput) -> None:
                async with gate:
                    await client.start_workflow(c.WORKFLOW_TYPE, inp, id=c.workflow_id(inp.referral_id),
                                                task_queue=task_queue, execution_timeout=timedelta(days=400),
                                                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
            for i in range(0, len(pending), batch):
                await asyncio.gather(*(start(p) for p in pending[i:i + batch]))

        if worker:
            async with build_worker(client, [], task_queue=task_queue):
                await go()
                took = time.monotonic() - t0
        else:
            await go()
            took = time.monotonic() - t0
        cpu = cpu_seconds(server.proc.pid) - cpu0
        calls = {op: round((n - calls0.get(op, 0.0)) / starts, 2)
                 for op, n in sorted(persistence_requests(server.metrics_port).items())}
        return {"starts": starts, "concurrency": concurrency, "batch": batch, "worker": worker,
                "seconds": round(took, 2), "starts_per_second": round(starts / took, 1),
                "server_cpu_ms_per_start": round(1000 * cpu / starts, 2),
                "load_before": round(load0, 2), "load_after": round(load(), 2),
                "persistence_calls_per_start": {op: n for op, n in calls.items() if n >= 0.05}}
    finally:
        server.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=2000)
    ap.add_argument("--settings", default="50x500,10x500,200x500,50x100",
                    help="concurrency x batch, comma-separated (the starter's default: 50x500)")
    ap.add_argument("--no-worker", action="store_true", help="no worker runs the first tasks meanwhile")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="kezek-starts-") as tmp:
        for n, setting in enumerate(args.settings.split(",")):
            concurrency, batch = (int(x) for x in setting.split("x"))
            r = await run_setting(Path(tmp) / f"s{n}", args.starts, concurrency, batch, not args.no_worker)
            print(f"concurrency {concurrency:>4}, batch {batch:>5}: {r['starts']} starts in {r['seconds']} s, "
                  f"{r['starts_per_second']}/s, server {r['server_cpu_ms_per_start']} ms CPU a start "
                  f"(load {r['load_before']} -> {r['load_after']})", flush=True)
            print("  persistence calls a start: " + ", ".join(
                f"{op} {n}" for op, n in r["persistence_calls_per_start"].items()), flush=True)
            results.append(r)
    print(json.dumps({"workflow_starts": results}))


if __name__ == "__main__":
    asyncio.run(main())
