"""National-scale allocation benchmark (issue 4).

Builds a queue in a PostgreSQL cluster of its own (by default 1,000,000
waiting children over 6 birth-year cohorts, 12,000 kindergartens, 3
preferences each, 50,000 free places), then measures in the same run:

- baseline: the obvious implementation, one query per free place for the
  best-ranked eligible child who wants it, plus its writes (rolled back);
- kezek: one full allocation run of the queue service (Queue.allocation.run:
  lock the pools, stream each cohort/language group in rank order, serial
  dictatorship, write referrals, counters, audit rows and the replay record,
  commit);
- the publication of positions (application.position_changed.v1): once for
  the whole freshly loaded queue (every child's first position), then after
  the run, only for the pools the run touched and only for the children
  whose position changed;
- the replay of that run from its recorded inputs;
- one position query (with its explanation) for 1,000 random waiting children.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/allocation.py                      # full scale
    .venv/bin/python bench/allocation.py --children 100000 --kindergartens 1200 --places 5000
    .venv/bin/python bench/allocation.py --no-baseline --built var/alloc-built   # build once, then start on a copy

`--built DIR` keeps the built queue's cluster (after the load, the first
publication of positions and VACUUM) in DIR, and a later run of the same
sizes and seed starts on a copy of it instead of building the queue again
(about 4 GB and a minute to copy at national scale, against 6-7 minutes to
build); the figures of the build are kept beside it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from kezek.db import ensure_database, make_engine, make_session_factory  # noqa: E402
from kezek.sealing import ring_of  # noqa: E402
from kezek.infra.postgres import BENCHMARK_SETTINGS, PostgresCluster  # noqa: E402
from kezek.migrations import upgrade  # noqa: E402
from services.queue import domain as d  # noqa: E402
from services.queue.usecases import Queue  # noqa: E402
from services.queue.usecases.positions import SHARES  # noqa: E402
from system import BenchFolder  # noqa: E402

LANGUAGES = (("ru", 0.6), ("ky", 0.4))
CATEGORIES = (("extraordinary", 0.01), ("privileged", 0.09), ("general", 0.90))
KG_PER_DISTRICT = 20
# The day of the run: 10:00 in Bishkek on the first of September.
NOW = datetime(2026, 9, 1, 4, 0, tzinfo=UTC)


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def _pick(rnd: random.Random, weighted) -> str:
    x, acc = rnd.random(), 0.0
    for value, w in weighted:
        acc += w
        if x < acc:
            return value
    return weighted[-1][0]


def _copy(conn, table: str, columns: list[str], rows) -> None:
    """COPY in chunks, rows given as tab-separated lines."""
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            buf = io.StringIO()
            n = 0
            for line in rows:
                buf.write(line)
                n += 1
                if n % 50_000 == 0:
                    cp.write(buf.getvalue())
                    buf = io.StringIO()
            cp.write(buf.getvalue())


def generate(engine, *, children: int, kindergartens: int, places: int, seed: int) -> dict:
    """The national queue: kindergartens in districts of 20, children who
    pick 3 kindergartens of one district, places in pools per kindergarten,
    cohort and language (10% reserved for the privileged category)."""
    rnd = random.Random(seed)
    on = NOW.date()
    cohorts = list(range(on.year - 7, on.year - 1))  # 6 birth years
    kg_ids = [f"k{i:05d}" for i in range(kindergartens)]
    districts = max(1, kindergartens // KG_PER_DISTRICT)
    created = NOW.isoformat()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        _copy(conn, "kindergartens", ["id", "name", "district", "address", "lat", "lon", "languages", "created_at"], (
            f"{k}\tKindergarten {i}\td{i % districts:04d}\tStreet {i}\t42.8\t74.6\t[\"ru\", \"ky\"]\t{created}\n"
            for i, k in enumerate(kg_ids)))
        by_district = [kg_ids[i::districts] for i in range(districts)]

        serials: Counter = Counter()
        # The queue keeps a child's PIN and names sealed, the PIN with its
        # lookup hash (kezek/sealing.py): COPY writes what the ORM would.
        ring = ring_of(engine)
        names = {}

        def sealed_name(text: str, purpose: str) -> str:
            if (text, purpose) not in names:
                names[text, purpose] = ring.seal(text, purpose)
            return names[text, purpose]

        first_day, span = date(cohorts[0], 1, 1), (date(cohorts[-1], 12, 31) - date(cohorts[0], 1, 1)).days

        def applications():
            for n in range(children):
                born = first_day + timedelta(days=rnd.randrange(span + 1))
                serials[born] += 1
                pin = f"{rnd.choice('12')}{born:%d%m%Y}{serials[born]:05d}"
                # Queue dates between birth and the day before the run.
                qd = datetime(born.year, born.month, born.day, tzinfo=UTC) + timedelta(
                    seconds=rnd.randrange(max(1, int((NOW - datetime(born.year, born.month, born.day, tzinfo=UTC))
                                                     .total_seconds()) - 86_400)))
                qd = qd.replace(microsecond=rnd.randrange(1_000_000))
                prefs = rnd.sample(by_district[rnd.randrange(districts)], 3)
                cat = _pick(rnd, CATEGORIES)
                yield (f"a{n:07d}\t{ring.seal(pin, 'child_pin')}\t{ring.lookup('pin', pin)}\tp{n}\tKG\t"
                       f"{sealed_name(f'Surname{n % 997}', 'child_surname')}\t{sealed_name(f'Name{n % 113}', 'child_name')}"
                       f"\t\\N\t{born}\t{born.year}\t"
                       f"{cat}\t{cat}\t{qd.isoformat()}\t{_pick(rnd, LANGUAGES)}\t{{{','.join(prefs)}}}\tru\tqueued\t"
                       f"{created}\t{created}\n")
        _copy(conn, "applications", ["id", "pin", "pin_hash", "parent_id", "country", "surname", "name", "patronymic",
                                     "birth_date", "cohort", "category", "claimed_category", "queue_date", "language",
                                     "preferences", "locale", "status", "created_at", "updated_at"], applications())

        pools: Counter = Counter()
        left = places
        while left > 0:
            n = min(left, rnd.randint(1, 4))
            cat = "privileged" if rnd.random() < 0.10 else ""
            pools[(rnd.choice(kg_ids), rnd.choice(cohorts), _pick(rnd, LANGUAGES), cat)] += n
            left -= n
        _copy(conn, "places", ["kindergarten_id", "cohort", "language", "for_category", "free", "held", "enrolled"],
              (f"{kg}\t{c}\t{lang}\t{cat}\t{n}\t0\t0\n" for (kg, c, lang, cat), n in sorted(pools.items())))
        conn.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))
    return {"pools": len(pools), "cohorts": cohorts}


def backend_pids(engine) -> list[int]:
    """The backends of every connection the engine's pool keeps, opened
    now: the positions' shares use several (Positions.shares)."""
    conns = [engine.connect() for _ in range(engine.pool.size())]
    try:
        return [c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for c in conns]
    finally:
        for c in conns:
            c.close()


def cpu_of(pid: int) -> float:
    """CPU seconds a process has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds of this process and of the database backends it uses:
    unlike wall time, they hardly change when others load the machine."""

    def __init__(self, engine):
        self.pids = backend_pids(engine)

    def __enter__(self) -> "Cpu":
        self.client, self.server = time.process_time(), sum(map(cpu_of, self.pids))
        return self

    def __exit__(self, *exc) -> None:
        self.client = time.process_time() - self.client
        self.server = sum(map(cpu_of, self.pids)) - self.server

    @property
    def total(self) -> float:
        return self.client + self.server


def warm_up(engine) -> None:
    with engine.connect() as c:
        c.execute(sa.text("SELECT count(*), sum(length(id)), sum(cardinality(preferences)) FROM applications"))
        c.execute(sa.text("SELECT count(*) FROM places"))


def baseline(engine, policy: d.Policy, on: date) -> dict:
    """The obvious implementation: for every free place, one query for the
    best-ranked eligible child of its cohort and language who lists its
    kindergarten (GIN index on preferences), then that child's writes.
    Everything is rolled back afterwards."""
    rank = " ".join(f"WHEN '{c.code}' THEN {c.rank}" for c in policy.categories)
    bound = d.latest_eligible_birth_date(on, policy)
    pick = (f"SELECT id, category FROM applications WHERE status = 'queued' AND cohort = %(c)s "
            f"AND language = %(l)s AND birth_date <= %(b)s AND preferences @> ARRAY[%(k)s]::varchar(100)[] "
            f"AND (%(cat)s = '' OR category = %(cat)s) "
            f"ORDER BY CASE category {rank} ELSE 1000000 END, queue_date, id COLLATE \"C\" LIMIT 1")
    raw = engine.raw_connection()
    conn = raw.driver_connection
    allocated, queries = 0, 0
    started = time.perf_counter()
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO allocation_runs (started_at, on_date, trigger, policy, free_before, candidates, "
                        "candidates_count, allocated, digest) VALUES (now(), %s, 'baseline', '{}', '[]', '', 0, 0, '') "
                        "RETURNING id", (on,))
            run_id = cur.fetchone()[0]
            cur.execute("SELECT id, kindergarten_id, cohort, language, for_category, free FROM places "
                        "WHERE free > 0 ORDER BY id FOR UPDATE")
            for pid, kg, cohort, lang, cat, free in cur.fetchall():
                for _ in range(free):
                    queries += 1
                    cur.execute(pick, {"c": cohort, "l": lang, "b": bound, "k": kg, "cat": cat})
                    row = cur.fetchone()
                    if row is None:
                        break
                    child, child_cat = row
                    cur.execute("UPDATE applications SET status = 'referred' WHERE id = %s", (child,))
                    cur.execute("UPDATE places SET free = free - 1, held = held + 1 WHERE id = %s", (pid,))
                    cur.execute("INSERT INTO referrals (application_id, place_id, kindergarten_id, cohort, language, "
                                "for_category, category, needs_confirmation, preference_index, status, state, run_id, "
                                "issued_at, deadline) VALUES (%s, %s, %s, %s, %s, %s, %s, false, 0, 'live', "
                                "'awaiting_enrolment', %s, now(), now())",
                                (child, pid, kg, cohort, lang, cat, child_cat, run_id))
                    allocated += 1
        seconds = time.perf_counter() - started
    finally:
        conn.rollback()
        raw.close()
    return {"seconds": seconds, "allocated": allocated, "queries": queries}


BASELINE_DIFFERS = (
    "the baseline serves the free places one by one (pool by pool), giving each to the best-ranked eligible "
    "child who lists that kindergarten anywhere in its list; a child can so take a lower preference before "
    "its better one is served, and a place it would have left goes unused or to someone else. That is not "
    "the serial-dictatorship result (children in rank order, each taking its best preference with a place), "
    "so its referral count differs slightly from kezek's (e.g. 4,703 vs 4,726 at 1/10 scale)")


def publish_positions(svc: Queue, engine, everything: bool = False) -> dict:
    """One publication of positions, timed; `everything` marks every pool
    first (what a migration of a whole queue does)."""
    if everything:
        with svc.sessions.begin() as s:
            svc.ctx.within(s).positions_moved(None)
    with engine.connect() as c:
        marked = c.execute(sa.text("SELECT count(DISTINCT (cohort, kindergarten_id)) FROM position_changes")
                           ).scalar()
    t = time.perf_counter()
    events = svc.positions.publish()
    return {"seconds": round(time.perf_counter() - t, 2), "events": events,
            "pools": "all" if everything else marked}


def one_freed_place(svc: Queue, engine) -> dict:
    """The year-round case after the national run: one place comes free in a
    pool the run filled (a family declined it), and the allocator gives it
    to the next child in that pool's order. Timed: the allocation run that
    takes it as the allocator loop runs it (over the pools the pending
    requests name: this one; not every pool that still has places nobody
    wants), then the positions it moves."""
    with engine.connect() as c:
        # A pool the run filled to the last place: somebody is still waiting for it.
        kg, cohort, language = c.execute(sa.text(
            "SELECT kindergarten_id, cohort, language FROM places WHERE free = 0 AND for_category = '' "
            "AND held > 0 ORDER BY id LIMIT 1")).one()
    svc.places.publish(kg, cohort, language, 1, actor="bench")
    t = time.perf_counter()
    with Cpu(engine) as cpu:
        freed = svc.allocation.run(requested=True)
        ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    moved = svc.positions.publish()
    return {"allocated": len(freed.issued), "ms": round(ms, 1), "cpu_ms": round(cpu.total * 1000, 1),
            "pool": [kg, cohort, language],
            "positions_events": moved, "positions_ms": round((time.perf_counter() - t) * 1000, 1)}


def positions(svc: Queue, engine, n: int, seed: int) -> dict:
    with engine.connect() as c:
        ids = [r[0] for r in c.execute(sa.text(
            "SELECT id FROM applications WHERE status = 'queued' ORDER BY random() LIMIT :n"), {"n": n})]
    rnd = random.Random(seed)
    rnd.shuffle(ids)
    times = []
    for app_id in ids:
        t = time.perf_counter()
        explained = svc.views.positions(app_id)
        times.append((time.perf_counter() - t) * 1000)
        assert explained and explained[0].position >= 1
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2), "n": len(times)}


def bench_cluster(keep: Path | None, prefix: str) -> tuple[BenchFolder, PostgresCluster]:
    """The benchmark's folder (`keep`, its --dir, or a temporary one) and a
    PostgreSQL cluster in it set for benchmarks."""
    folder = BenchFolder(keep, prefix)
    return folder, PostgresCluster(folder.path / "pg", durable=False, settings=BENCHMARK_SETTINGS)


def start_queue_database(cluster: PostgresCluster, database: str) -> str:
    """Starts the benchmark's cluster and migrates the queue's database in
    it: the database's URL."""
    cluster.start()
    url = cluster.url(database)
    ensure_database(url)
    upgrade("queue", url)
    return url


def _build_key(args) -> dict:
    return {"children": args.children, "kindergartens": args.kindergartens, "places": args.places,
            "seed": args.seed}


def kept_build(args) -> dict | None:
    """The figures of the kept build at `--built` (None: there is none yet);
    refused when it was built with other sizes or another seed."""
    if args.built is None or not (args.built / "built.json").is_file():
        return None
    built = json.loads((args.built / "built.json").read_text())
    if built["key"] != _build_key(args):
        raise SystemExit(f"{args.built} holds a queue of {built['key']}, not of {_build_key(args)}")
    return built


def copy_cluster(source: Path, target: Path) -> None:
    """A stopped cluster's folder, owners and modes kept (cp -a: the server
    runs as `postgres`)."""
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def keep_build(args, data_dir: Path, figures: dict) -> None:
    args.built.mkdir(parents=True, exist_ok=True)
    copy_cluster(data_dir, args.built / "pg")
    (args.built / "built.json").write_text(json.dumps({"key": _build_key(args), **figures}))
    say(f"the built queue kept in {args.built}")


def queue_options(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark on a generated queue: its size (the
    real one by default), the seed and the cluster's folder."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=1_000_000)
    ap.add_argument("--kindergartens", type=int, default=12_000)
    ap.add_argument("--places", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--dir", type=Path, default=None, help="cluster folder (default: a temporary one)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = queue_options(__doc__)
    ap.add_argument("--positions", type=int, default=1_000, help="random children for the position query")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--built", type=Path, default=None,
                    help="a kept copy of the built queue's cluster (after the load, the first publication of "
                         "positions and VACUUM): made there when absent, copied from when present, never changed")
    args = ap.parse_args(argv)

    folder, cluster = bench_cluster(args.dir, "kezek-bench-")
    with folder:
        result: dict = {}
        load_start = round(os.getloadavg()[0], 1)
        try:
            t = time.perf_counter()
            built = kept_build(args)
            if built is not None:
                copy_cluster(args.built / "pg", cluster.data_dir)
                say(f"the built queue copied from {args.built} in {time.perf_counter() - t:.1f} s")
            url = start_queue_database(cluster, "kezek_queue_bench")
            # A connection for each share of the positions' publication, no
            # more, so these backends do all the database work (see Cpu).
            engine = make_engine(url, pool_size=SHARES, max_overflow=0)
            svc = Queue(make_session_factory(engine), clock=lambda: NOW)
            policy, _ = svc.policy.current()
            on = svc.ctx.today(policy)
            if built is None:
                say(f"PostgreSQL up and migrated in {time.perf_counter() - t:.1f} s; generating the queue ...")
                t = time.perf_counter()
                shape = generate(engine, children=args.children, kindergartens=args.kindergartens,
                                 places=args.places, seed=args.seed)
                load_seconds = time.perf_counter() - t
                say(f"{args.children} children, {args.kindergartens} kindergartens, {args.places} places in "
                    f"{shape['pools']} pools loaded in {load_seconds:.1f} s")
                say("positions: first publication of the whole queue ...")
                initial_positions = publish_positions(svc, engine, everything=True)
                say(f"positions: {initial_positions['events']} position events (every waiting child) in "
                    f"{initial_positions['seconds']} s")
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(sa.text("VACUUM ANALYZE"))
                if args.built is not None:
                    engine.dispose()
                    cluster.stop()
                    keep_build(args, cluster.data_dir, {"shape": shape, "initial_positions": initial_positions,
                                                        "load_seconds": load_seconds})
                    cluster.start()
            else:
                shape, initial_positions, load_seconds = (
                    built["shape"], built["initial_positions"], built["load_seconds"])
            warm_up(engine)

            base_figures = None
            if not args.no_baseline:
                say("baseline: one query per free place ...")
                with Cpu(engine) as base_cpu:
                    base_figures = baseline(engine, policy, on)
                say(f"baseline: {base_figures['allocated']} referrals, {base_figures['queries']} queries in "
                    f"{base_figures['seconds']:.2f} s, {base_cpu.total:.2f} CPU s")
                say(f"note: {BASELINE_DIFFERS}")
                # Its rolled-back writes left dead rows and cleared the visibility
                # map; autovacuum would clean them in production, so clean them
                # here rather than charge them to the next run.
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(sa.text("VACUUM ANALYZE"))
                warm_up(engine)

            say("kezek: one full allocation run ...")
            with Cpu(engine) as cpu:
                t = time.perf_counter()
                run = svc.allocation.run()
                # Allocated and committed; what follows (index upkeep) is not
                # counted in `seconds` but reported as its own phase.
                seconds = time.perf_counter() - t - run.timings.get("index_upkeep", 0.0)
            say(f"kezek: {len(run.issued)} referrals, {run.candidates} children read, in {seconds:.2f} s, "
                f"{cpu.total:.2f} CPU s ({cpu.client:.2f} client, {cpu.server:.2f} database) "
                f"({', '.join(f'{k} {v:.2f}' for k, v in run.timings.items())})")
            problems = svc.audit.check_register()
            assert not problems, problems[:5]

            # The step the allocator loop runs right after the run, in its own transaction.
            with Cpu(engine) as pos_cpu:
                moved = publish_positions(svc, engine)
            say(f"positions after the run: {moved['events']} children moved, {moved['pools']} pools recomputed, in "
                f"{moved['seconds']} s, {pos_cpu.total:.2f} CPU s")
            # The year-round case: one child leaves the queue (its 3 pools).
            with engine.connect() as c:
                leaving = c.execute(sa.text("SELECT id FROM applications WHERE status = 'queued' ORDER BY id LIMIT 1")
                                    ).scalar_one()
            svc.entries.remove(leaving, actor="bench", reason="moved away")
            one = publish_positions(svc, engine)
            say(f"positions after one removal: {one['events']} children moved, {one['pools']} pools, "
                f"in {one['seconds']} s")
            again = publish_positions(svc, engine)
            assert again["events"] == 0
            freed = one_freed_place(svc, engine)
            say(f"one freed place: {freed['allocated']} referral in {freed['ms']} ms "
                f"(the run; {freed['cpu_ms']} CPU ms), "
                f"its positions {freed['positions_events']} events in {freed['positions_ms']} ms")

            replay = None
            if not args.no_replay:
                t = time.perf_counter()
                [report] = svc.audit.replay([run.run_id])
                replay = {"matches": report["matches"], "seconds": round(time.perf_counter() - t, 2)}
                say(f"replay: matches={report['matches']} in {replay['seconds']} s")

            pos = positions(svc, engine, args.positions, args.seed)
            say(f"position query: p50 {pos['p50_ms']} ms, p99 {pos['p99_ms']} ms over {pos['n']} children")
            with engine.connect() as c:
                eligible = c.execute(sa.text("SELECT count(*) FROM applications WHERE birth_date <= :b"),
                                     {"b": d.latest_eligible_birth_date(on, policy)}).scalar()
            result = {
                "children": args.children, "kindergartens": args.kindergartens, "places": args.places,
                "pools": shape["pools"], "eligible_children": eligible, "allocated": len(run.issued),
                "children_read": run.candidates, "seconds": round(seconds, 3),
                "phases": {k: round(v, 3) for k, v in run.timings.items()},
                "baseline_seconds": round(base_figures["seconds"], 3) if base_figures else None,
                "baseline_allocated": base_figures["allocated"] if base_figures else None,
                "speedup": round(base_figures["seconds"] / seconds, 1) if base_figures else None,
                "baseline_differs_because": BASELINE_DIFFERS if base_figures else None,
                "positions_initial_seconds": initial_positions["seconds"],
                "positions_initial_events": initial_positions["events"],
                "positions_after_run_seconds": moved["seconds"], "positions_after_run_events": moved["events"],
                "positions_after_run_pools": moved["pools"], "positions_after_run_cpu_seconds": round(pos_cpu.total, 2),
                "positions_after_one_removal_seconds": one["seconds"], "positions_after_one_removal_events": one["events"],
                "one_freed_place_ms": freed["ms"], "one_freed_place_cpu_ms": freed["cpu_ms"],
                "one_freed_place_allocated": freed["allocated"],
                "one_freed_place_positions_ms": freed["positions_ms"],
                "one_freed_place_positions_events": freed["positions_events"],
                "cpu_seconds": round(cpu.total, 2), "cpu_seconds_client": round(cpu.client, 2),
                "cpu_seconds_database": round(cpu.server, 2),
                "baseline_cpu_seconds": round(base_cpu.total, 2) if base_figures else None,
                "cpu_speedup": round(base_cpu.total / cpu.total, 1) if base_figures else None,
                "replay_matches": replay["matches"] if replay else None,
                "replay_seconds": replay["seconds"] if replay else None,
                "position_p50_ms": pos["p50_ms"], "position_p99_ms": pos["p99_ms"],
                "load_seconds": round(load_seconds, 1), "cpus": os.cpu_count(),
                # Other work on the machine shows in every figure: the 1-minute
                # load average when the run started and when it ended.
                "loadavg_start": load_start, "loadavg_end": round(os.getloadavg()[0], 1),
            }
            engine.dispose()
        finally:
            cluster.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
