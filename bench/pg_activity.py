"""What PostgreSQL is busy with (issue 15): `pg_stat_activity` sampled every
`--every` seconds for `--seconds`, its active client backends counted by
database, by wait event ("cpu:" when waiting for nothing) and by statement
(the first 400 characters, parameters as `$`). A count is the number of
samples that found a backend running that statement: divided by the samples,
about how many backends ran it at once on average.

One light query a second, from a process of its own, beside a running
system: the distribution day's `--dir` folder names the cluster's port in
`kezek/run.json`.

    .venv/bin/python bench/pg_activity.py --dsn postgresql://postgres@127.0.0.1:PORT/postgres \\
        --seconds 400 --out bench/results/pg-activity-<stamp>.json
"""
from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter

import psycopg

ACTIVE = """
    SELECT datname, coalesce(wait_event_type, 'cpu') || ':' || coalesce(wait_event, ''),
           regexp_replace(left(query, 400), '\\s+', ' ', 'g')
    FROM pg_stat_activity
    WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", required=True, help="a libpq URL of the cluster")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--out", required=True, help="where the counts go (JSON)")
    args = ap.parse_args(argv)
    by_db: Counter = Counter()
    by_wait: Counter = Counter()
    by_query: Counter = Counter()
    samples = 0
    end = time.monotonic() + args.seconds
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        while time.monotonic() < end:
            samples += 1
            for db, wait, query in conn.execute(ACTIVE).fetchall():
                by_db[db] += 1
                by_wait[wait] += 1
                by_query[(db, re.sub(r"\$\d+", "$", query))] += 1
            time.sleep(args.every)
    out = {"samples": samples, "every": args.every, "by_db": by_db.most_common(),
           "by_wait": by_wait.most_common(30),
           "by_query": [[db, query, n] for (db, query), n in by_query.most_common(60)]}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["by_db"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
