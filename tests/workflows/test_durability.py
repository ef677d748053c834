"""A referral waiting on its deadline survives a killed worker and a killed
and restarted Temporal server (same SQLite file, same port), and the
deadline fires exactly once."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kezek import calendar as kcal
from kezek.infra.temporal import TemporalDevServer
from workflows import client
from workflows import contracts as c
from workflows.worker import connect

WORKER = Path(__file__).with_name("durable_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def start_worker(address: str, task_queue: str, calls: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(WORKER), address, task_queue, str(calls)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "worker ready"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def read_calls(calls: Path) -> list[dict]:
    return [json.loads(x) for x in calls.read_text().splitlines()] if calls.exists() else []


async def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration   # starts a Temporal dev server of its own, and restarts it
async def test_referral_deadline_survives_worker_kill_and_server_restart_and_fires_once(tmp_path):
    os.chmod(tmp_path, 0o755)
    server = TemporalDevServer(state_dir=tmp_path / "temporal").start()
    calls = tmp_path / "calls.jsonl"
    task_queue = f"durable-{uuid.uuid4().hex[:8]}"
    worker = start_worker(server.address, task_queue, calls)
    try:
        cal = kcal.calendar("KG")
        issued = datetime(2027, 3, 1, 10, 0, tzinfo=cal.tz)
        deadline = cal.window_end(issued, 5)                 # 11 March 2027, 00:00 in Bishkek
        # Business time runs 12 real seconds short of the deadline.
        offset = (deadline - timedelta(seconds=12)) - datetime.now(tz=cal.tz)
        referral_id = uuid.uuid4().hex[:10]
        inp = c.ReferralInput(referral_id=referral_id, application_id="a1", kindergarten="sun", cohort=2024,
                              language="ru", category="general", needs_confirmation=False, issued_at=issued,
                              clock_offset=offset)
        temporal = await connect(server.address)
        handle = await client.issue(temporal, inp, task_queue=task_queue)
        await wait_for(lambda: any(x["activity"] == c.RECORD_REFERRAL for x in read_calls(calls)), 30,
                       "the referral to be recorded")
        assert (await client.status(temporal, referral_id)).deadline == deadline

        # The worker dies, then the server dies hard and comes back on its file and port.
        kill(worker)
        assert not [x for x in read_calls(calls) if x["activity"] == c.RETURN_PLACE], "fired before the kill"
        server.stop(hard=True)
        server.start()
        worker = start_worker(server.address, task_queue, calls)
        temporal = await connect(server.address)

        def expired():
            return [x for x in read_calls(calls) if x["activity"] == c.PUT_ON_STOPLIST]
        await wait_for(expired, 90, "the deadline to fire")
        await asyncio.sleep(3)  # a second firing would show up by now
        fired = [x for x in read_calls(calls) if x["activity"] == c.RETURN_PLACE]
        assert len(fired) == 1 and len(expired()) == 1
        assert datetime.fromisoformat(fired[0]["at"]) == deadline
        status = await client.status(temporal, referral_id)
        assert status.state is c.ReferralState.PAUSED
        assert status.stoplist_until == deadline + timedelta(days=10)
        await temporal.get_workflow_handle(handle.id).terminate("test over")
    finally:
        kill(worker)
        server.stop(hard=True)
