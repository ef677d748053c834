"""The settings `kezek run` gives the Temporal dev server, read back from
the running server: its SQLite file keeps the WAL journal, and it caches
its search attributes as a production server does instead of reading them
from its database for every workflow started."""
from __future__ import annotations

import asyncio
import re
import sqlite3
import urllib.request
import uuid

import pytest

from kezek.infra.procs import free_port
from kezek.infra.temporal import TemporalDevServer
from workflows.worker import connect

pytestmark = pytest.mark.integration


def persistence_requests(server: TemporalDevServer, operation: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    pattern = re.compile(r'^persistence_requests\{(.*)\} ([0-9.e+]+)$')
    return sum(float(m[2]) for m in map(pattern.match, text.splitlines())
               if m and f'operation="{operation}"' in m[1])


async def test_dev_server_reads_no_search_attributes_per_workflow_started_and_keeps_its_wal(tmp_path):
    server = TemporalDevServer(tmp_path / "temporal", metrics_port=free_port()).start()
    try:
        client = await connect(server.address)
        task_queue = f"nobody-{uuid.uuid4().hex[:8]}"
        await client.start_workflow("Warmup", id=f"warmup-{uuid.uuid4().hex}", task_queue=task_queue)
        before = persistence_requests(server, "GetCurrentClusterMetadata")
        starts = 40
        for i in range(starts):
            await client.start_workflow("Probe", id=f"probe-{i}-{uuid.uuid4().hex[:6]}", task_queue=task_queue)
        for _ in range(100):    # until the server has recorded them all for listing
            if (await client.count_workflows(f'TaskQueue="{task_queue}"')).count == starts + 1:
                break
            await asyncio.sleep(0.1)
        # Uncached, each start read the cluster's search attributes once.
        assert persistence_requests(server, "GetCurrentClusterMetadata") - before < starts / 4
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "temporal" / "temporal.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
