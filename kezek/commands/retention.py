"""`kezek retention`: every service's retention job now (what each runs
daily by itself under `kezek consume`): the closed applications whose
period ended are anonymised in place, per service and outcome, and audited.
`--dry-run` prints what would be anonymised and changes nothing. The last
line is one JSON object with the figures."""
from __future__ import annotations

import argparse
import json
import sys

from kezek.settings import SERVICES


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kezek retention", description=__doc__)
    ap.add_argument("--dry-run", action="store_true", help="report what is due; change nothing")
    ap.add_argument("--service", action="append", choices=SERVICES, help="only this service (repeatable)")
    args = ap.parse_args(argv)

    from kezek.settings import Settings
    from kezek.wiring import retention_jobs

    settings = Settings()
    reports = [job.run(dry_run=args.dry_run).as_dict()
               for job in retention_jobs(settings, tuple(args.service or SERVICES))]
    verb = "would anonymise" if args.dry_run else "anonymised"
    for r in reports:
        outcomes = ", ".join(f"{o} {n}" for o, n in r["by_outcome"].items()) or "nothing due"
        print(f"{r['service']}: {verb} {r['applications']} application(s) ({outcomes})")
        if r["applications"]:
            print(f"  fields: {', '.join(r['fields'])}")
            if r["rows"]:
                print(f"  rows: {', '.join(f'{t} {n}' for t, n in r['rows'].items())}")
    print(json.dumps({"dry_run": args.dry_run, "services": reports}))
    sys.stdout.flush()
    return 0
