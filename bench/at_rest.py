"""The whole system at rest (issue 15): what Kezek spends when nobody uses
it. Every poller, heartbeat and idle consumer costs CPU on each replica all
day, and takes its share of the cores from the work of a busy one.

The whole of Kezek runs as `kezek run --postgres` runs it (bench/system.py,
this checkout's code), with no queue and no users. After `--settle` seconds
the benchmark reads, over `--seconds`, each part's CPU (its children's
included: PostgreSQL's backends, the dev server's) and each thread's of
the Python parts, from /proc. Python's thread names are not the
operating system's, so a thread is named by a `py-spy dump` of its process
when py-spy is on the PATH (or given with `--py-spy`), by its id otherwise.

Prints CPU milliseconds a second by part and by thread (those of 0.5 or
more); writes bench/results/at_rest-<time>[-<label>].json; the last line is
one JSON object.

    .venv/bin/python bench/at_rest.py                     # 60 s after 30 s of settling
    .venv/bin/python bench/at_rest.py --seconds 20 --label before
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from system import ROOT, BenchFolder, System, cpu_seconds_of, stat_fields  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOT_PYTHON = ("postgres", "kafka", "temporal")


def say(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, by thread id."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    return {tid: cpu_seconds_of(fields) for tid in tids
            if (fields := stat_fields(f"/proc/{pid}/task/{tid}/stat")) is not None}


def thread_names(py_spy: str | None, pid: int) -> dict[str, str]:
    """Python's names of a process's threads, by thread id (py-spy dump)."""
    if not py_spy:
        return {}
    try:
        dump = subprocess.run([py_spy, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for line in dump.splitlines():
        if line.startswith("Thread ") and '"' in line:
            names[line.split()[1]] = line.split('"')[1]
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--seconds", type=float, default=60, help="how long the CPU is read")
    ap.add_argument("--settle", type=float, default=30, help="seconds after start-up before reading")
    ap.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy, to name the threads")
    ap.add_argument("--dir", type=Path, default=None, help="the system's folder, kept (default: a temporary one)")
    ap.add_argument("--label", default="", help="appended to the results file's name (before, after ...)")
    args = ap.parse_args(argv)

    folder = BenchFolder(args.dir, "kezek-at-rest-")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kezek = System(folder.path / "kezek", env={"PYTHONPATH": path}, log=say)
    try:
        kezek.start()
        say(f"settling {args.settle:.0f} s, then reading {args.seconds:.0f} s")
        time.sleep(args.settle)
        pids = kezek.pids()
        python = {name: pid for name, pid in pids.items() if name not in NOT_PYTHON}
        parts0, threads0 = kezek.cpu_seconds(), {name: thread_cpu(pid) for name, pid in python.items()}
        time.sleep(args.seconds)
        parts1, threads1 = kezek.cpu_seconds(), {name: thread_cpu(pid) for name, pid in python.items()}
        names = {name: thread_names(args.py_spy, pid) for name, pid in python.items()}
        load = os.getloadavg()[0]
    finally:
        kezek.stop()
        folder.close()

    def per_second(seconds: float) -> float:
        return round(1000 * seconds / args.seconds, 1)

    by_part = {name: per_second(cpu - parts0.get(name, 0)) for name, cpu in parts1.items()}
    by_thread = {}
    for part, threads in threads1.items():
        for tid, cpu in threads.items():
            ms = per_second(cpu - threads0[part].get(tid, 0))
            if ms >= 0.5:
                by_thread[f"{part}/{names[part].get(tid, tid)}"] = ms
    figures = {"seconds": args.seconds, "settle": args.settle, "cpus": os.cpu_count(), "load": round(load, 2),
               "total_ms_per_s": round(sum(by_part.values()), 1),
               "by_part": dict(sorted(by_part.items(), key=lambda kv: -kv[1])),
               "by_thread": dict(sorted(by_thread.items(), key=lambda kv: -kv[1])),
               "threads_named": any(names.values())}
    print(f"\nthe system at rest: {figures['total_ms_per_s']} ms of CPU a second "
          f"(load {figures['load']}, {args.seconds:.0f} s after {args.settle:.0f} s of settling)")
    for name, ms in figures["by_part"].items():
        print(f"  {name:28s} {ms:7.1f}")
    print("by thread:")
    for name, ms in figures["by_thread"].items():
        print(f"  {name:60s} {ms:7.1f}")
    RESULTS.mkdir(exist_ok=True)
    name = f"at_rest-{time.strftime('%Y%m%d-%H%M%S')}{'-' + args.label if args.label else ''}.json"
    (RESULTS / name).write_text(json.dumps(figures, indent=1))
    figures["results"] = f"bench/results/{name}"
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
