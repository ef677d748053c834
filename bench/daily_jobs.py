"""The queue's daily jobs at national scale (issue 20).

Builds the queue of bench/allocation.py in a PostgreSQL cluster of its own
(by default 1,000,000 waiting children over 6 birth-year cohorts), publishes
every child's first position, then measures:

- ageing out, first run: every child already past school age leaves (what
  the first run after a deployment, or after a policy change, catches up);
- ageing out, day by day: the job at 00:00 of `--days` following days, each
  reading only that day's birthdays through the partial index
  ix_applications_school_age (the plan is printed), then the publication of
  the positions of the pools those children waited in;
- retention (the queue's job; kezek/retention.py): `--closed` of the children
  are made closed applications (removed) at moments spread over the last
  four years, each with three audit rows holding the family's words; then
  the dry run, the first run (everything past the 3 years of `removed`)
  and `--days` daily runs, each anonymising that day's share.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/daily_jobs.py                      # 1,000,000 children
    .venv/bin/python bench/daily_jobs.py --children 100000 --kindergartens 1200 --places 5000
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import sqlalchemy as sa  # noqa: E402

from allocation import NOW, bench_cluster, generate, publish_positions, queue_options, say, start_queue_database  # noqa: E402
from kezek import calendar as kcal  # noqa: E402
from kezek.db import make_engine, make_session_factory  # noqa: E402
from kezek.retention import RetentionPolicy  # noqa: E402
from services.queue.domain.ageing import latest_school_age_birth_date  # noqa: E402
from services.queue.retention import retention_job  # noqa: E402
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


def close_history(engine, share: float, seed: int) -> int:
    """Makes `share` of the waiting children closed applications (removed)
    at moments over the four years before the run, with the audit rows a
    removal leaves (the family's words in them)."""
    with engine.begin() as c:
        c.execute(sa.text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        c.execute(sa.text(
            "CREATE TEMP TABLE closing ON COMMIT DROP AS SELECT id, parent_id, "
            "CAST(:now AS timestamptz) - random() * interval '1461 days' AS at "
            "FROM applications WHERE status = 'queued' AND random() < :share"), {"now": NOW, "share": share})
        n = c.execute(sa.text("UPDATE applications a SET status = 'removed', removed_at = k.at, "
                              "removal_reason = 'moved to ' || a.name || ', ' || a.surname FROM closing k "
                              "WHERE a.id = k.id")).rowcount
        c.execute(sa.text("INSERT INTO retention_clock (application_id, parent_id, outcome, closed_at) "
                          "SELECT id, parent_id, 'removed', at FROM closing"))
        c.execute(sa.text(
            "INSERT INTO audit_trail (at, kind, actor, actor_role, action, subject, outcome, details) "
            "SELECT k.at, 'act', 'parent:' || k.parent_id, 'parent', x.action, 'application:' || k.id, 'ok', "
            "CAST(x.details AS json) FROM closing k CROSS JOIN (VALUES "
            "('application.queued', '{\"category\": \"general\", \"preferences\": [\"k00001\"]}'), "
            "('application.preferences_changed', '{\"from\": [\"k00001\"], \"to\": [\"k00002\"]}'), "
            "('application.removed', '{\"reason\": \"moved to Osh, Lenina 5, flat 7\"}')) AS x(action, details)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))
    return n


def retention(engine, clock: Clock, days: int, share: float, seed: int) -> dict:
    t = time.perf_counter()
    closed = close_history(engine, share, seed)
    say(f"retention: {closed} closed applications over four years (3 audit rows each) in "
        f"{time.perf_counter() - t:.1f} s")
    job = retention_job(make_session_factory(engine), RetentionPolicy(), now=clock)
    clock.at = NOW
    t = time.perf_counter()
    dry = job.run(dry_run=True).as_dict()
    dry_seconds = round(time.perf_counter() - t, 2)
    say(f"retention dry run: {dry['applications']} due ({dry['by_outcome']}) in {dry_seconds} s")
    t = time.perf_counter()
    first = job.run().as_dict()
    first_seconds = round(time.perf_counter() - t, 2)
    say(f"retention, first run: {first['applications']} anonymised in {first_seconds} s")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))
    per_day = []
    for i in range(1, days + 1):
        clock.at = NOW + timedelta(days=i)
        t = time.perf_counter()
        r = job.run().as_dict()
        per_day.append({"children": r["applications"], "seconds": round(time.perf_counter() - t, 3)})
        say(f"retention day +{i}: {r['applications']} anonymised in {per_day[-1]['seconds']} s")
    with engine.connect() as c:
        left = c.execute(sa.text("SELECT count(*) FROM audit_trail WHERE details::text LIKE '%Lenina%' "
                                 "AND subject IN (SELECT 'application:' || application_id FROM retention_clock "
                                 "WHERE anonymised_at IS NOT NULL)")).scalar()
    assert left == 0, f"{left} audit rows of anonymised applications still hold the family's words"
    return {"closed": closed, "dry_run_seconds": dry_seconds, "dry_run_due": dry["applications"],
            "first_run": {"seconds": first_seconds, "children": first["applications"]}, "days": per_day,
            "day_seconds_median": round(statistics.median(d["seconds"] for d in per_day), 3),
            "day_children_median": statistics.median(d["children"] for d in per_day)}


def main(argv: list[str] | None = None) -> int:
    ap = queue_options(__doc__)
    ap.add_argument("--days", type=int, default=7, help="consecutive days of the daily ageing job")
    ap.add_argument("--closed", type=float, default=0.3, help="share of the children made closed applications")
    ap.add_argument("--no-ageing", action="store_true")
    ap.add_argument("--no-retention", action="store_true")
    args = ap.parse_args(argv)

    folder, cluster = bench_cluster(args.dir, "kezek-bench-daily-")
    load_start = round(os.getloadavg()[0], 1)
    result: dict = {}
    try:
        url = start_queue_database(cluster, "kezek_queue_daily")
        engine = make_engine(url, pool_size=2, max_overflow=0)
        t = time.perf_counter()
        generate(engine, children=args.children, kindergartens=args.kindergartens, places=args.places,
                 seed=args.seed)
        say(f"{args.children} children loaded in {time.perf_counter() - t:.1f} s; first positions ...")
        clock = Clock(NOW)
        svc = Queue(make_session_factory(engine), clock=clock)
        result = {"children": args.children, "kindergartens": args.kindergartens}
        if not args.no_ageing:
            initial = publish_positions(svc, engine, everything=True)
            say(f"positions: {initial['events']} events in {initial['seconds']} s")
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(sa.text("VACUUM ANALYZE"))
            result["ageing"] = ageing(svc, engine, clock, args.days)
        if not args.no_retention:
            result["retention"] = retention(engine, clock, args.days, args.closed, args.seed)
        engine.dispose()
    finally:
        cluster.stop()
        folder.close()
    result.update(cpus=os.cpu_count(), loadavg_start=load_start, loadavg_end=round(os.getloadavg()[0], 1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
