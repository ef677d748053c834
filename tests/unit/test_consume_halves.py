"""`kezek consume --only`: a service's Kafka consumers and its background
jobs in processes of their own (notifications' dispatchers apart from the
consumer that makes their messages), each process checking only what its
half uses."""
from __future__ import annotations

import pytest

from kezek import wiring
from kezek.commands import consume


class Consumer:
    def __init__(self, name):
        self.name = name

    def run(self, stop):
        pass


def job(name):
    def loop(stop):
        pass
    loop.__name__ = name
    return loop


@pytest.fixture
def ran(monkeypatch, tmp_path):
    """What `kezek consume` would run: its name, loops and checks."""
    seen = {}

    def started(name):
        seen["name"] = name
        from kezek.settings import Settings
        return Settings(_env_file=None, state_dir=tmp_path)

    def run_loops(loops, *, heartbeat, checks, settings):
        seen.update(loops=[name for name, _ in loops], checks=[name for name, _ in checks], heartbeat=heartbeat.name)
        return 0

    monkeypatch.setattr(consume, "started", started)
    monkeypatch.setattr(consume, "run_loops", run_loops)
    monkeypatch.setattr(consume, "service_engine", lambda settings, service: None)
    monkeypatch.setattr(consume, "database_check", lambda engine: None)
    monkeypatch.setattr(wiring, "consumers", lambda settings, services: [Consumer(f"{s}.consumer") for s in services])
    monkeypatch.setattr(wiring, "jobs", lambda settings, services: [job(f"{s}.job") for s in services])
    return seen


def test_the_consumers_half_runs_the_consumers_only_and_checks_kafka(ran):
    assert consume.main(["--service", "notifications", "--only", "consumers"]) == 0
    assert ran["name"] == "consume-notifications" and ran["heartbeat"] == "consume-notifications.json"
    assert ran["loops"] == ["notifications.consumer"]
    assert ran["checks"] == ["database:notifications", "kafka"]


def test_the_jobs_half_runs_the_jobs_only_under_its_own_name_and_checks_what_they_use(ran):
    assert consume.main(["--service", "notifications", "--only", "jobs"]) == 0
    assert ran["name"] == "jobs-notifications" and ran["heartbeat"] == "jobs-notifications.json"
    assert ran["loops"] == ["notifications.job"]
    assert ran["checks"] == ["database:notifications"], "the dispatchers work on the database alone"
    assert consume.main(["--service", "queue", "--only", "jobs"]) == 0
    assert ran["checks"] == ["database:queue", "temporal"], "the queue's jobs start workflows"
    assert consume.main(["--service", "gateway", "--only", "jobs"]) == 0
    assert ran["checks"] == ["database:gateway", "kafka"], "the public projector and relay use Kafka"


def test_without_only_a_service_runs_its_consumers_and_jobs_together(ran):
    assert consume.main(["--service", "queue"]) == 0
    assert ran["name"] == "consume-queue"
    assert ran["loops"] == ["queue.consumer", "queue.job"]
    assert ran["checks"] == ["database:queue", "kafka", "temporal"]
    assert consume.main(["--service", "queue", "--only", "consumers"]) == 0
    assert ran["checks"] == ["database:queue", "kafka"], "the consumers start no workflow"


def test_an_unknown_half_is_refused(ran, capsys):
    with pytest.raises(SystemExit) as exit_:
        consume.main(["--service", "queue", "--only", "dispatchers"])
    assert exit_.value.code == 2 and "--only: invalid choice: 'dispatchers'" in capsys.readouterr().err
