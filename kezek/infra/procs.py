"""Small helpers shared by the launchers: free ports, waiting, stopping."""
from __future__ import annotations

import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path


PORT_HOLD_SECONDS = 300     # how long a port handed out stays promised to its caller
LOWEST_PORT = 20000         # free ports are drawn from here up to the kernel's ephemeral range


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes ports from for outgoing connections and
    for servers that ask it for any free port."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A port on which nothing listens (the first of `span` consecutive
    ones, for a server that takes the next port too), promised to the
    caller for PORT_HOLD_SECONDS against every other caller on this
    machine, through a ledger in the temporary folder.

    Drawn below the kernel's ephemeral range: a port the kernel handed out
    and took back (bind to port 0) may go to an outgoing connection, or to
    another server asking for any free port, before ours binds it. That
    happened in the suite: Kafka or Temporal then exited, "Address already
    in use". Where the ephemeral range leaves no room below it, the kernel
    chooses (a span still free in a row)."""
    low, high = LOWEST_PORT, ephemeral_ports()[0] - span
    if high - low < 1000:
        return _any_port(span)
    try:
        with open(Path(tempfile.gettempdir()) / "kezek-ports", "a+") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)
            ledger.seek(0)
            now = time.time()
            held = {port: until for port, until in map(_promise, ledger.read().splitlines()) if until > now}
            for port in random.sample(range(low, high), min(high - low, 2000)):
                wanted = range(port, port + span)
                if not any(p in held for p in wanted) and all(_bindable(p) for p in wanted):
                    break
            else:               # all but promised: the kernel's choice
                return _any_port(span)
            held.update((p, now + PORT_HOLD_SECONDS) for p in wanted)
            ledger.seek(0)
            ledger.truncate()
            ledger.write("".join(f"{p} {until:.0f}\n" for p, until in held.items()))
            return port
    except OSError:             # no ledger to be had (a read-only temporary folder): the kernel's choice
        return _any_port(span)


def _promise(line: str) -> tuple[int, float]:
    """A ledger line, "port until" (a line that is not one promises nothing)."""
    try:
        port, until = line.split()
        return int(port), float(until)
    except ValueError:
        return 0, 0.0


def _any_port(span: int = 1) -> int:
    """The kernel's choice of a free port, the first of `span` free in a row."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if all(_bindable(p) for p in range(port + 1, port + span)):
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when the thread that started
    it ends (Linux's parent-death signal), so a supervisor or a test run
    killed with -9 leaves no server behind. Start servers from the main
    thread, which ends only with the process."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 15, hard: bool = False) -> None:
    """Stops a process started in its own session (and its children):
    SIGTERM, then SIGKILL to the whole group after `timeout`. It always ends."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def stop_processes(procs: Iterable[subprocess.Popen], timeout: float = 15) -> None:
    """Stops processes started in their own sessions together: SIGTERM to
    every group first, so that they stop side by side, then each as
    `stop_process` does."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        stop_process(proc, timeout)
