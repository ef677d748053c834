"""What PostgreSQL is busy with (issue 15): `pg_stat_activity` sampled every
`--every` seconds for `--seconds`, its active client backends counted by
database, by wait event ("cpu:" when waiting for nothing) and by statement
(the first 400 characters, parameters as `$`). A count is the number of
samples that found a backend running that statement: divided by the samples,
about how many backends ran it at once on average.

`--claims-every N`: besides, every N seconds, the time of a relay's claim
read from the start of its outbox (`EXPLAIN ANALYZE` of `... WHERE sent_at
IS NULL ORDER BY seq LIMIT 500`, unlocked) in the queue's and notifications'
databases, with the outbox's dead rows: what a claim cost before relays
read from a floor (kezek/relay.py, Floor), and what it would cost now.

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
from urllib.parse import urlsplit, urlunsplit

import psycopg

ACTIVE = """
    SELECT datname, coalesce(wait_event_type, 'cpu') || ':' || coalesce(wait_event, ''),
           regexp_replace(left(query, 400), '\\s+', ' ', 'g')
    FROM pg_stat_activity
    WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"""


CLAIM = "SELECT seq, type, subject, payload FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 500"
DEAD = "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'outbox'"


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def timed_claims(dsn: str) -> dict:
    """{database: [ms of a claim read from the start, live rows, dead rows]}."""
    out = {}
    for database in ("kezek_queue", "kezek_notifications"):
        try:
            with psycopg.connect(with_database(dsn, database), autocommit=True) as conn:
                plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM).fetchone()[0][0]
                live, dead = conn.execute(DEAD).fetchone()
            out[database] = [round(plan["Execution Time"], 1), live, dead]
        except psycopg.Error as exc:
            out[database] = repr(exc)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", required=True, help="a libpq URL of the cluster")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--out", required=True, help="where the counts go (JSON)")
    ap.add_argument("--claims-every", type=float, default=0, help="seconds between two claims timed (0: none)")
    args = ap.parse_args(argv)
    by_db: Counter = Counter()
    by_wait: Counter = Counter()
    by_query: Counter = Counter()
    samples, claims = 0, []
    started = time.monotonic()
    end, next_claims = started + args.seconds, started
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        while time.monotonic() < end:
            if args.claims_every and time.monotonic() >= next_claims:
                next_claims += args.claims_every
                claims.append({"t": round(time.monotonic() - started, 1), **timed_claims(args.dsn)})
            samples += 1
            for db, wait, query in conn.execute(ACTIVE).fetchall():
                by_db[db] += 1
                by_wait[wait] += 1
                by_query[(db, re.sub(r"\$\d+", "$", query))] += 1
            time.sleep(args.every)
    out = {"samples": samples, "every": args.every, "by_db": by_db.most_common(),
           "by_wait": by_wait.most_common(30),
           "by_query": [[db, query, n] for (db, query), n in by_query.most_common(60)]}
    if claims:
        out["claims"] = claims
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["by_db"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
