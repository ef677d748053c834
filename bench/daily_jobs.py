"""The queue's daily jobs at national scale (issue 20).

Builds the queue of bench/allocation.py in a PostgreSQL cluster of its own
(by default 1,000,000 waiting children over 6 birth-year cohorts), publishes
every child's first position, then measures:

- ageing out, first run: every child already past school age leaves (what
  the first run after a deployment, or after a policy change, catches up);
- ageing out, day by day: the job at 00:00 of `--days` following days, each
  reading only that day's birthdays through the partial index
  ix_applications_school_age (the plan is printed), then the publication of
  the positions of the pools those children waited in.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/daily_jobs.py                      # 1,000,000 children
    .venv/bin/python bench/daily_jobs.py --children 100000 --kindergartens 1200 --places 5000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import sqlalchemy as sa  # noqa: E402

from allocation import NOW, generate, publish_positions, say  # noqa: E402
from kezek import calendar as kcal  # noqa: E402
from kezek.db import ensure_database, make_engine, make_session_factory  # noqa: E402
from kezek.infra.postgres import PostgresCluster  # noqa: E402
from kezek.migrations import upgrade  # noqa: E402
from services.queue.domain.ageing import latest_school_age_birth_date  # noqa: E402
from services.queue.usecases import Queue  # noqa: E402


class Clock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


def due_plan(engine, cutoff) -> str:
    """The plan of the job's read: an index range over the day's birthdays."""
    with engine.connect() as c:
        rows = c.execute(sa.text(
            "EXPLAIN SELECT id FROM applications WHERE status IN ('queued', 'paused') AND birth_date <= :b "
            "ORDER BY birth_date, id LIMIT 2000 FOR UPDATE SKIP LOCKED"), {"b": cutoff}).scalars().all()
    return " / ".join(r.strip() for r in rows)


def ageing(svc: Queue, engine, clock: Clock, days: int) -> dict:
    cal = kcal.calendar("KG")
    policy, _ = svc.policy.current()
    first_day = cal.local_date(NOW)
    clock.at = cal.start_of_day(first_day)
    t = time.perf_counter()
    caught_up = svc.ageing.age_out_due()
    first = {"seconds": round(time.perf_counter() - t, 2), "children": caught_up}
    t = time.perf_counter()
    first["positions_events"] = svc.positions.publish()
    first["positions_seconds"] = round(time.perf_counter() - t, 2)
    say(f"ageing, first run: {caught_up} children already past school age left in {first['seconds']} s; "
        f"positions {first['positions_events']} events in {first['positions_seconds']} s")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE applications"))
    plan = due_plan(engine, latest_school_age_birth_date(first_day + timedelta(days=1), policy))
    say(f"plan of the daily read: {plan}")
    per_day = []
    for i in range(1, days + 1):
        day = first_day + timedelta(days=i)
        clock.at = cal.start_of_day(day)
        t = time.perf_counter()
        n = svc.ageing.age_out_due()
        job = time.perf_counter() - t
        t = time.perf_counter()
        events = svc.positions.publish()
        pos = time.perf_counter() - t
        per_day.append({"day": day.isoformat(), "children": n, "seconds": round(job, 3),
                        "positions_seconds": round(pos, 3), "positions_events": events})
        say(f"ageing {day}: {n} children left in {job:.3f} s; positions: {events} events in {pos:.3f} s")
    return {"first_run": first, "days": per_day, "plan": plan,
            "day_seconds_median": round(statistics.median(d["seconds"] for d in per_day), 3),
            "day_seconds_max": round(max(d["seconds"] for d in per_day), 3),
            "day_children_median": statistics.median(d["children"] for d in per_day),
            "day_positions_seconds_median": round(statistics.median(d["positions_seconds"] for d in per_day), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=1_000_000)
    ap.add_argument("--kindergartens", type=int, default=12_000)
    ap.add_argument("--places", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=7, help="consecutive days of the daily ageing job")
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--dir", type=Path, default=None, help="cluster folder (default: a temporary one)")
    args = ap.parse_args(argv)

    base = args.dir or Path(tempfile.mkdtemp(prefix="kezek-bench-daily-"))
    os.chmod(base, 0o755)
    cluster = PostgresCluster(base / "pg", durable=False, settings={
        "shared_buffers": "1GB", "work_mem": "64MB", "maintenance_work_mem": "512MB",
        "max_wal_size": "8GB", "checkpoint_timeout": "30min", "jit": "off"})
    load_start = round(os.getloadavg()[0], 1)
    result: dict = {}
    try:
        cluster.start()
        url = cluster.url("kezek_queue_daily")
        ensure_database(url)
        upgrade("queue", url)
        engine = make_engine(url, pool_size=2, max_overflow=0)
        t = time.perf_counter()
        generate(engine, children=args.children, kindergartens=args.kindergartens, places=args.places,
                 seed=args.seed)
        say(f"{args.children} children loaded in {time.perf_counter() - t:.1f} s; first positions ...")
        clock = Clock(NOW)
        svc = Queue(make_session_factory(engine), clock=clock)
        initial = publish_positions(svc, engine, everything=True)
        say(f"positions: {initial['events']} events in {initial['seconds']} s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("VACUUM ANALYZE"))
        result = {"children": args.children, "kindergartens": args.kindergartens,
                  "ageing": ageing(svc, engine, clock, args.days)}
        engine.dispose()
    finally:
        cluster.stop()
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    result.update(cpus=os.cpu_count(), loadavg_start=load_start, loadavg_end=round(os.getloadavg()[0], 1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
