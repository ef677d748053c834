"""The supervisor's rules on stand-in processes (the whole system killed
part by part is tests/e2e/test_supervision.py): a part that exits is started
again after a pause that doubles while it keeps failing, and a part that
stops beating is killed and started again."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kezek import supervisor as sup
from kezek.commands import stop as stop_command
from kezek.health import heartbeat_path
from kezek.settings import Settings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def supervisor(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(sup.time, "monotonic", clock)
    s = sup.Supervisor(Settings(_env_file=None, state_dir=tmp_path), postgres=False)
    spawned: list[sup.Part] = []

    def spawn(part: sup.Part, command=("true",)) -> None:
        part.proc = subprocess.Popen(list(part.args) or list(command), start_new_session=True)
        part.started = clock()
        part.due = part.unwell_since = None
        spawned.append(part)

    monkeypatch.setattr(s, "spawn", spawn)
    s.clock, s.spawned = clock, spawned
    yield s
    for part in spawned:
        if part.proc.poll() is None:
            part.proc.kill()
            part.proc.wait()


def test_a_part_that_keeps_exiting_is_started_again_after_a_pause_that_doubles(supervisor, capsys):
    part = sup.Part("relay", "relay", ["false"])
    supervisor.spawn(part)
    pauses = []
    for _ in range(7):
        part.proc.wait()
        supervisor.tend_part(part)              # notices the exit, schedules the start
        pauses.append(part.due - supervisor.clock())
        supervisor.clock.now = part.due
        supervisor.tend_part(part)              # starts it again
    assert pauses == [1, 2, 4, 8, 16, 30, 30]
    assert part.restarts == 7
    assert "relay (pid" in capsys.readouterr().out


def test_a_part_that_ran_steadily_is_started_again_at_once(supervisor):
    part = sup.Part("worker", "worker", ["false"], delay=16)
    supervisor.spawn(part)
    part.proc.wait()
    supervisor.clock.now += sup.STEADY_AFTER
    supervisor.tend_part(part)
    assert part.due - supervisor.clock() == sup.FIRST_DELAY


def beat(state, name: str, pid: int, age: float) -> None:
    path = heartbeat_path(state, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "time": time.time() - age, "status": "ok", "loops": {}, "checks": {}}))


def test_a_part_whose_heartbeat_went_stale_is_killed_and_started_again(supervisor, tmp_path):
    part = sup.Part("consume-queue", "consumer", ["sleep", "600"])
    supervisor.spawn(part)
    hung = part.proc
    beat(tmp_path, "consume-queue", hung.pid, age=1)
    supervisor.clock.now += sup.START_GRACE + 1
    supervisor.tend_part(part)
    assert part.unwell_since is None and hung.poll() is None, "a fresh heartbeat: well"
    beat(tmp_path, "consume-queue", hung.pid, age=sup.STALE_AFTER_SECONDS + 1)
    supervisor.clock.now += sup.CHECK_EVERY
    supervisor.tend_part(part)
    assert part.unwell_since is not None and hung.poll() is None, "stale, but not for long yet"
    supervisor.clock.now += sup.HUNG_AFTER
    supervisor.tend_part(part)
    assert hung.poll() is not None, "hung for HUNG_AFTER: killed"
    supervisor.clock.now = part.due
    supervisor.tend_part(part)
    assert part.proc is not hung and part.proc.poll() is None and part.restarts == 1


def test_a_heartbeat_left_by_the_previous_process_does_not_count(supervisor, tmp_path):
    part = sup.Part("relay", "relay", ["sleep", "600"])
    supervisor.spawn(part)
    beat(tmp_path, "relay", part.proc.pid + 1, age=0)
    assert supervisor.well(part) is None


def test_a_part_dies_with_the_supervisor_even_when_it_is_killed_with_minus_9(tmp_path):
    """The parent-death signal: nothing of ours outlives `kezek run`."""
    pid_file = tmp_path / "part.pid"
    supervisor_stand_in = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
from kezek.infra.procs import die_with_parent
part = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=die_with_parent)
open({str(pid_file)!r}, "w").write(str(part.pid))
time.sleep(600)
"""])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    part = int(pid_file.read_text())
    supervisor_stand_in.kill()
    supervisor_stand_in.wait()
    while stop_command.alive(part):
        assert time.monotonic() < deadline, "the part outlived its supervisor"
        time.sleep(0.05)


def test_stop_kills_what_a_dead_supervisor_left_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEZEK_STATE_DIR", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", str(tmp_path)])
    try:
        (tmp_path / "run.pid").write_text(str(gone.pid))
        (tmp_path / "run.json").write_text(json.dumps({"pid": gone.pid, "servers": {"kafka": {"pid": left.pid}},
                                                       "parts": {"relay": {"pid": None}}}))
        assert stop_command.main([]) == 0
        assert left.wait(timeout=10) == -9
        assert not (tmp_path / "run.pid").exists() and not (tmp_path / "run.json").exists()
        assert f"pids {left.pid}" in capsys.readouterr().out
    finally:
        if left.poll() is None:
            left.kill()


def test_kezek_run_plans_a_consumer_process_per_service_and_the_replicas_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("KEZEK_DATABASE_URL", raising=False)
    pg = Settings(_env_file=None, state_dir=tmp_path, database_url="postgresql+psycopg://k@db/kezek",
                  run_relays=2, run_consumers_per_service=2, run_workers=3)
    names = [p.name for p in sup.Supervisor(pg, postgres=False).plan()]
    assert [n for n in names if n.startswith("relay")] == ["relay-1", "relay-2"]
    assert [n for n in names if n.startswith("worker")] == ["worker-1", "worker-2", "worker-3"]
    for service in ("registration", "queue", "verification", "notifications", "gateway"):
        assert {f"consume-{service}-1", f"consume-{service}-2", service} <= set(names)
    sqlite = Settings(_env_file=None, state_dir=tmp_path, run_relays=2)
    plan = sup.Supervisor(sqlite, postgres=False).plan()
    assert [p.name for p in plan if p.kind == "relay"] == ["relay"], "relays claim rows only on PostgreSQL"
    assert ["consume", "--service", "queue", "--name", "consume-queue"] in [p.args for p in plan]


def test_kezek_run_starts_the_jobs_of_the_services_named_apart_from_their_consumers(tmp_path):
    def args_of(**settings) -> dict[str, list[str]]:
        plan = sup.Supervisor(Settings(_env_file=None, state_dir=tmp_path, **settings), postgres=False).plan()
        return {p.name: p.args for p in plan if p.kind == "consumer"}

    assert not any(name.startswith("jobs-") for name in args_of()), "none apart unless asked"
    apart = args_of(run_jobs_apart="notifications")
    assert apart["consume-notifications"] == ["consume", "--service", "notifications", "--only", "consumers",
                                              "--name", "consume-notifications"]
    assert apart["jobs-notifications"] == ["consume", "--service", "notifications", "--only", "jobs",
                                           "--name", "jobs-notifications"]
    assert apart["consume-queue"] == ["consume", "--service", "queue", "--name", "consume-queue"]
    two = args_of(run_jobs_apart="queue, notifications", run_consumers_per_service=2)
    assert {n for n in two if n.startswith("jobs-")} == {"jobs-queue-1", "jobs-queue-2",
                                                         "jobs-notifications-1", "jobs-notifications-2"}
    assert two["consume-queue-2"][3:5] == ["--only", "consumers"]


def test_kezek_run_starts_the_consumer_and_jobs_processes_asked_for_a_service_and_the_others_theirs(tmp_path):
    settings = Settings(_env_file=None, state_dir=tmp_path, run_consumer_replicas="notifications=3, queue=1",
                        run_consumers_per_service=2, run_jobs_apart="notifications")
    names = [p.name for p in sup.Supervisor(settings, postgres=False).plan() if p.kind == "consumer"]
    assert [n for n in names if n.startswith("consume-notifications")] == [
        "consume-notifications-1", "consume-notifications-2", "consume-notifications-3"]
    assert [n for n in names if n.startswith("jobs-notifications")] == [
        "jobs-notifications-1", "jobs-notifications-2", "jobs-notifications-3"]
    assert [n for n in names if n.startswith("consume-queue")] == ["consume-queue"]
    assert [n for n in names if n.startswith("consume-gateway")] == ["consume-gateway-1", "consume-gateway-2"]


@pytest.mark.parametrize("raw", ["notifications", "notification=2", "queue=0", "queue=two"])
def test_consumer_replicas_not_written_service_equals_count_are_refused_naming_the_setting(tmp_path, raw):
    with pytest.raises(ValueError, match=r"run_consumer_replicas[\s\S]*is not SERVICE=N"):
        Settings(_env_file=None, state_dir=tmp_path, run_consumer_replicas=raw)


def test_a_service_named_apart_that_does_not_exist_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r"run_jobs_apart[\s\S]*names no service: notification"):
        Settings(_env_file=None, state_dir=tmp_path, run_jobs_apart="notification")


def test_the_services_health_is_asked_over_one_kept_connection(supervisor, monkeypatch):
    """Not a new client (and TLS context, 36 ms of CPU) for every check."""
    connections = []

    class Health(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            connections.append(self.client_address)
            super().setup()

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(type(supervisor.settings), "url_of",
                            lambda _self, _name: f"http://127.0.0.1:{server.server_port}")
        part = sup.Part("queue", "service", ())
        assert all(supervisor.well(part) for _ in range(3))
        assert len(connections) == 1
    finally:
        server.shutdown()
        server.server_close()


def _niceness(pid: int) -> list[int]:
    """The niceness of each of the process's threads."""
    return [os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def _group_niceness(pid: int) -> int | None:
    """The niceness of the process's autogroup ("/autogroup-16503 nice 0");
    None where the kernel has none, or shows the file empty (as some
    sandboxed kernels do)."""
    try:
        shown = re.search(r"\bnice (-?\d+)", open(f"/proc/{pid}/autogroup").read())
    except OSError:
        return None
    return int(shown.group(1)) if shown else None


AUTOGROUPS = _group_niceness(os.getpid()) is not None


def test_a_process_named_in_run_nice_starts_at_that_niceness_and_so_do_its_replicas(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    settings = Settings(_env_file=None, state_dir=tmp_path, run_nice="consume-gateway=10, relay=3")
    s = sup.Supervisor(settings, postgres=False)
    (tmp_path / "logs").mkdir()
    parts = [sup.Part("consume-gateway", "consumer", []), sup.Part("consume-gateway-2", "consumer", []),
             sup.Part("relay-1", "relay", []), sup.Part("consume-notifications", "consumer", [])]
    try:
        for part in parts:
            s.spawn(part)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert [_niceness(p.proc.pid) for p in parts] == [[min(own + 10, 19)], [min(own + 10, 19)],
                                                          [min(own + 3, 19)], [own]]
        if AUTOGROUPS:      # each in a session of its own: its group's niceness is what the scheduler weighs
            assert [_group_niceness(p.proc.pid) for p in parts] == [10, 10, 3, 0]
    finally:
        for part in parts:
            part.proc.kill()
            part.proc.wait()


def test_a_server_named_in_run_nice_gets_that_niceness_on_every_thread_and_its_session(tmp_path):
    settings = Settings(_env_file=None, state_dir=tmp_path, run_nice="temporal=7,kafka=9")
    code = ("import threading, time\n"
            "for _ in range(3): threading.Thread(target=time.sleep, args=(30,)).start()\n"
            "print('ready', flush=True); time.sleep(30)")
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    # not leading a session of its own: its group is ours, and is left alone
    beside = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n" and beside.stdout.readline() == "ready\n"
        ours, own = _group_niceness(os.getpid()), os.getpriority(os.PRIO_PROCESS, 0)
        s = sup.Supervisor(settings, postgres=False)
        s.lower_priority("temporal", server.pid)
        assert _niceness(server.pid) == [min(own + 7, 19)] * 4
        s.lower_priority("worker", server.pid)     # not named: left alone
        assert _niceness(server.pid) == [min(own + 7, 19)] * 4
        s.lower_priority("kafka", beside.pid)
        assert _niceness(beside.pid) == [min(own + 9, 19)] * 4
        if AUTOGROUPS:
            assert _group_niceness(server.pid) == 7
            assert _group_niceness(os.getpid()) == ours != 9
    finally:
        for proc in (server, beside):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("raw", ["consume-gateway", "consume-gateway=20", "=5", "relay=-1", "relay=low"])
def test_run_nice_not_written_name_equals_level_is_refused_naming_the_setting(tmp_path, raw):
    with pytest.raises(ValueError, match=r"run_nice[\s\S]*is not NAME=N"):
        Settings(_env_file=None, state_dir=tmp_path, run_nice=raw)


def test_run_nice_naming_no_process_of_kezek_run_is_refused_before_anything_starts(tmp_path):
    known = Settings(_env_file=None, state_dir=tmp_path, run_nice="consume-gateway=10,relay=5,temporal=5,worker=2",
                     run_relays=2)
    sup.Supervisor(known, postgres=False).check_niceness()
    for raw in ("consume-gateways=10", "postgres=5"):   # no such part; no PostgreSQL without --postgres
        s = sup.Supervisor(Settings(_env_file=None, state_dir=tmp_path, run_nice=raw), postgres=False)
        with pytest.raises(SystemExit, match=f"KEZEK_RUN_NICE names no process of `kezek run`: {raw.split('=')[0]}"):
            s.check_niceness()


@pytest.mark.parametrize("raw", ["work_mem", "work_mem=", "=16MB", "work_mem=16 MB", "search_path='x'",
                                 "Work_Mem=16MB"])
def test_run_postgres_settings_not_written_name_equals_value_is_refused_naming_the_setting(tmp_path, raw):
    with pytest.raises(ValueError, match=r"run_postgres_settings[\s\S]*is not NAME=VALUE"):
        Settings(_env_file=None, state_dir=tmp_path, run_postgres_settings=raw)


@pytest.mark.parametrize("name", ["port", "listen_addresses", "unix_socket_directories"])
def test_run_postgres_settings_may_not_move_the_server_kezek_run_places_itself(tmp_path, name):
    with pytest.raises(ValueError, match=rf"run_postgres_settings[\s\S]*'{name}' is set by `kezek run` itself"):
        Settings(_env_file=None, state_dir=tmp_path, run_postgres_settings=f"{name}=5433")


def test_run_postgres_settings_are_read_as_pairs_of_a_setting_and_its_value(tmp_path):
    from kezek.settings import postgres_settings_of
    settings = Settings(_env_file=None, state_dir=tmp_path,
                        run_postgres_settings="shared_preload_libraries=pg_stat_statements, work_mem=16MB")
    assert postgres_settings_of(settings.run_postgres_settings) == {
        "shared_preload_libraries": "pg_stat_statements", "work_mem": "16MB"}
