"""`kezek rekey [--service NAME] [--check]`: moves every sealed value and
file of each service to its current data key (the first of
KEZEK_DATA_KEYS or KEZEK_<SERVICE>_DATA_KEYS), so that an old key can be
dropped (kezek/rekey.py). Safe to run while the system serves and to run
again. `--check` changes nothing and counts what is still on another key;
it exits 1 while anything is. The last line is one JSON object."""
from __future__ import annotations

import argparse
import json
import sys
import time

from kezek.settings import SEALING_SERVICES


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kezek rekey", description=__doc__)
    ap.add_argument("--service", action="append", choices=SEALING_SERVICES, help="only this service (repeatable)")
    ap.add_argument("--check", action="store_true", help="count what is on another key; change nothing")
    args = ap.parse_args(argv)

    from kezek import rekey, wiring
    from kezek.db import service_engine
    from kezek.settings import Settings

    settings = Settings()
    reports, left = [], 0
    for service in args.service or SEALING_SERVICES:
        started = time.monotonic()
        engine = service_engine(settings, service)
        try:
            meta = wiring.metadata(service)
            report = (rekey.check if args.check else rekey.rekey)(engine, meta, service)
        finally:
            engine.dispose()
        files = wiring.files(service, settings)
        if files is not None:
            report.files = files.rekey(check=args.check)[0]
        left += sum(report.rows.values()) + report.files
        out = {**report.as_dict(), "seconds": round(time.monotonic() - started, 2)}
        reports.append(out)
        rows = ", ".join(f"{t} {n}" for t, n in report.rows.items()) or "no rows"
        verb = "on other keys" if args.check else "moved"
        print(f"{service}: key {report.key}; {verb}: {rows}; files {report.files} ({out['seconds']} s)")
    print(json.dumps({"check": args.check, "services": reports}))
    sys.stdout.flush()
    return 1 if args.check and left else 0
