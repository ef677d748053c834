"""`kezek backup DIR` and `kezek restore DIR [--force]`: every service's
database (SQLite through its online backup API, PostgreSQL through pg_dump
and pg_restore), the services' sealed files and the Temporal development
server's SQLite file, into one folder and back (kezek/backup.py). The data
keys never go into a backup: restore with the same KEZEK_DATA_KEYS. The
last line printed is one JSON object."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str], *, restoring: bool = False) -> int:
    name = "restore" if restoring else "backup"
    ap = argparse.ArgumentParser(prog=f"kezek {name}", description=__doc__)
    ap.add_argument("folder", type=Path, help="the backup's folder" + ("" if restoring else " (new or empty)"))
    if restoring:
        ap.add_argument("--force", action="store_true", help="restore over databases that already hold data")
    args = ap.parse_args(argv)

    from kezek import backup
    from kezek.settings import Settings

    settings = Settings()
    started = time.monotonic()
    try:
        if restoring:
            out = backup.restore(settings, args.folder, force=args.force)
        else:
            out = backup.backup(settings, args.folder).as_dict()
    except backup.BackupError as exc:
        print(f"kezek {name}: {exc}", file=sys.stderr)
        return 1
    out["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(out))
    return 0
