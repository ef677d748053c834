"""`kezek queue-replay`: recomputes every recorded allocation run from the
inputs it recorded (the policy, the free places, the children it considered)
with the rules of services/queue/domain/, and compares with the referrals
it issued. Exit code 0 when every run matches, 1 otherwise."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kezek queue-replay", description=__doc__)
    ap.add_argument("--run", type=int, action="append", help="only this run (repeatable)")
    ap.add_argument("--database-url", help="the queue database (default: from the settings)")
    ap.add_argument("--json", action="store_true", help="one JSON object per run")
    args = ap.parse_args(argv)

    from kezek.db import make_session_factory, service_engine
    from kezek.settings import Settings
    from services.queue.usecases import Queue

    settings = Settings()
    engine = service_engine(settings, "queue", url=args.database_url or None)
    try:
        queue = Queue(make_session_factory(engine), country=settings.country)
        reports = queue.audit.replay(args.run)
    finally:
        engine.dispose()
    bad = [r for r in reports if not r["matches"]]
    for r in reports:
        if args.json:
            print(json.dumps(r))
        else:
            status = "matches" if r["matches"] else "DIFFERS"
            print(f"run {r['run_id']} on {r['on']}: {r['allocations']} allocations from "
                  f"{r['candidates']} children considered: {status}")
            for p in r["problems"]:
                print(f"    {p}")
    total = sum(r["allocations"] for r in reports)
    print(f"{len(reports)} runs, {total} allocations recomputed: "
          f"{'all match' if not bad else f'{len(bad)} runs differ'}", file=sys.stderr)
    return 1 if bad else 0
