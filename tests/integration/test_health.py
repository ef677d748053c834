"""Health: /ready fails while a server the process uses is down, and a
relay, consumer or worker is well only while its heartbeat is fresh and
every check in it passes (what `kezek health` and `kezek run` read)."""
from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from kezek.commands import health as health_command
from kezek.health import api_checks, heartbeat_path, kafka_check, temporal_check, write_heartbeat
from kezek.infra.procs import free_port
from kezek.settings import Settings
from kezek.web import create_service_app

pytestmark = pytest.mark.integration


def test_kafka_check_fails_while_the_broker_is_down_and_passes_when_it_is_back(private_kafka):
    check = kafka_check(private_kafka.bootstrap)
    check()
    private_kafka.stop(hard=True)
    with pytest.raises(Exception):
        check()
    private_kafka.start()
    check()


def test_gateway_is_not_ready_without_temporal(temporal_dev):
    def app_for(address: str):
        settings = Settings(_env_file=None, temporal_address=address)
        return TestClient(create_service_app("gateway", ready_checks=[("database", lambda: None),
                                                                     *api_checks("gateway", settings)]))

    ready = app_for(temporal_dev.address).get("/ready")
    assert ready.status_code == 200 and "temporal" in ready.json()["checks"]
    down = app_for(f"127.0.0.1:{free_port()}").get("/ready")
    assert down.status_code == 503 and "temporal" in down.json()["failed"]
    assert api_checks("queue", Settings(_env_file=None)) == [], "the queue's API acts on no workflow"


def test_temporal_check_answers_while_the_server_serves(temporal_dev):
    temporal_check(temporal_dev.address)()


def test_a_part_is_well_only_with_a_fresh_heartbeat_whose_checks_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEZEK_STATE_DIR", str(tmp_path))
    path = heartbeat_path(tmp_path, "relay")
    assert health_command.main(["relay"]) == 1, "no heartbeat yet"
    write_heartbeat(path, loops={"relay-queue": True}, checks={"database:queue": "ok", "kafka": "ok"})
    assert health_command.main(["relay"]) == 0
    write_heartbeat(path, loops={"relay-queue": True}, checks={"database:queue": "ok", "kafka": "KafkaTimeoutError"})
    assert health_command.main(["relay"]) == 1, "a failing check"
    write_heartbeat(path, loops={"relay-queue": False}, checks={"kafka": "ok"})
    assert health_command.main(["relay"]) == 1, "a dead loop"
    report = json.loads(path.read_text()) | {"status": "ok", "time": time.time() - 120}
    path.write_text(json.dumps(report))
    assert health_command.main(["relay"]) == 1, "a stale heartbeat: the process is hung or gone"
    assert "stale" in capsys.readouterr().out
