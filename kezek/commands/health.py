"""`kezek health NAME`: is the relay, consumer or worker named NAME well?

Reads its heartbeat (<state_dir>/health/NAME.json, kezek.health), prints it
and exits 0 when it is fresh and every check passed, 1 otherwise. The
compose file's health checks run it; HTTP services answer /ready instead."""
from __future__ import annotations

import argparse
import json

from kezek.health import STALE_AFTER_SECONDS, heartbeat_age, heartbeat_path, read_heartbeat
from kezek.settings import Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek health", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="the process's name (its --name: relay, consume-queue, worker ...)")
    p.add_argument("--max-age", type=float, default=STALE_AFTER_SECONDS,
                   help="seconds after which a heartbeat counts as stale")
    args = p.parse_args(argv)
    path = heartbeat_path(Settings().state_dir, args.name)
    report = read_heartbeat(path)
    age = heartbeat_age(report)
    if report is None or age is None:
        print(f"{args.name}: no heartbeat at {path}")
        return 1
    print(json.dumps({**report, "age_seconds": round(age, 1)}))
    if age > args.max_age:
        print(f"{args.name}: heartbeat is {age:.0f} s old (stale after {args.max_age:.0f} s)")
        return 1
    return 0 if report.get("status") == "ok" else 1
