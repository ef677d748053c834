"""`kezek run` (what `make run` calls) brings the whole stack up on real
Temporal and Kafka, the URLs it prints answer, and Ctrl-C stops it all."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from kezek.infra.procs import free_port, port_open

pytestmark = pytest.mark.integration   # `make run` starts every server

pytestmark = pytest.mark.integration


def test_run_starts_everything_prints_answering_urls_and_stops_cleanly_on_ctrl_c(tmp_path):
    os.chmod(tmp_path, 0o755)
    temporal, kafka = free_port(span=2), free_port(span=2)
    env = dict(os.environ,
               KEZEK_STATE_DIR=str(tmp_path / "state"),
               KEZEK_TEMPORAL_ADDRESS=f"127.0.0.1:{temporal}",
               KEZEK_TEMPORAL_UI_PORT=str(free_port()),
               KEZEK_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka}",
               KEZEK_LOG_LEVEL="WARNING",
               **{f"KEZEK_{s.upper()}_PORT": str(free_port())
                  for s in ("gateway", "registration", "queue", "verification", "notifications", "mailbox", "smtp")})
    proc = subprocess.Popen([sys.executable, "-m", "kezek.cli", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "logs in" in line:
                break
        output = "".join(lines)
        assert "Kezek is running" in output, output
        urls = re.findall(r"^\s+[\w ]+?\s+(http://\S+)$", output, re.M)
        for label in ("Parent portal", "API docs", "Event catalogue", "Mailbox", "Staff pages", "Temporal UI"):
            assert any(label in line for line in lines), f"{label} missing from:\n{output}"
        assert re.search(r"demo data: 8 kindergartens, 300 children joined the queue", output), output
        for url in urls:
            r = httpx.get(url, timeout=10, follow_redirects=True)
            assert r.status_code == 200, f"{url} answered {r.status_code}"
        # The demo staff printed beside the staff pages sign in, each role landing on its first page.
        password = re.search(r"demo staff, password (\S+):", output).group(1)
        staff_url = re.search(r"Staff pages\s+(http://\S+)", output).group(1)
        landing = {"kg-bishkek-12": "/kindergarten", "district-leninsky": "/district",
                   "caseworker-leninsky": "/worklist", "operator": "/audit"}
        for login, first_page in landing.items():
            assert re.search(rf"^\s+{login}\s", output, re.M), f"{login} not printed:\n{output}"
            with httpx.Client(base_url=staff_url, timeout=10) as staff:
                r = staff.post("/login", data={"login": login, "password": password, "next": "/"})
                assert r.status_code == 303, (login, r.status_code)
                assert staff.get("/").headers["location"] == first_page, login
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped" in rest
    assert not port_open(temporal) and not port_open(kafka)
