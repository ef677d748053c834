"""Distribution day (issue 15): places published at one moment, followed to
the parents' SMS, with the whole of Kezek running as `kezek run --postgres`
runs it (bench/system.py, bench/queue_data.py: PostgreSQL, Kafka, the Temporal dev server, the
five services, relays, a consumer process per service, the workflow worker).

1. A queue of 200,000 children (`--children 1000000` for a national one)
   comes in through the import path (`kezek import` of a generated export of
   the old portal: the parents' accounts, the queue entries, the children in
   the parents' cabinets), and the system takes in what that sets off (the
   first positions, contacts) until every outbox and consumer is idle.
2. `--readers` parents (real accounts, activated, signed in through the
   gateway) read `GET /api/v1/me` from then on, each its next request when
   the last is answered (locust, bench/load.py), from a minute before the
   publication to the end: their latency before and during the day.
3. 10,000 places are published at one moment (the queue's bulk publication,
   one transaction), spread over the pools in proportion to the children
   who want them first, so that every place is taken.
4. Sampled every second until everything is done: referrals issued (the
   allocator), ReferralWorkflows started (the queue's starter), their
   referral.issued facts written by the queue (by the allocation itself
   since the allocation announces its referrals; by each workflow's first
   step before), "referral issued" SMS
   accepted by the development SMS gateway, caseworker cases in the
   verification service's worklist, position events written, relayed and
   consumed by each consumer group; the relays' events/s per service.

The table gives each stage's end (seconds after the publication), its
throughput and how long it took after the stage it waits on; the slowest
stage is named. Samples go to bench/results/distribution_day-<time>.json and
a picture of the stages over time to bench/results/distribution_day-<time>.png.
The last line printed is one JSON object.

    .venv/bin/python bench/distribution_day.py                        # 200,000 children
    .venv/bin/python bench/distribution_day.py --children 20000 --places 1000   # a quick look
    .venv/bin/python bench/distribution_day.py --children 1000000     # national
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402

import load as loadgen  # noqa: E402
from queue_data import (  # noqa: E402
    STATEMENTS_SETTING, Watch, built_queue_of, load, say, settle, sign_in_parents, snapshot_options, top_statements)
from system import BenchFolder, System, process_cpu  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# The consumer groups that take position events (the others skip them).
POSITION_GROUPS = ("notifications", "gateway-public-projector", "gateway-cabinet")


def daytime_zone() -> str:
    """A time zone where it is day now (09:00-19:00): SMS wait out the night
    (quiet hours, 22:00-08:00 in the parents' zone), and the places of a
    distribution day are published in the daytime. The notifications
    service is run in it (KEZEK_NOTIFICATIONS_TIMEZONE)."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        name = "Etc/GMT" + ("+" if offset <= 0 else "-") + str(abs(offset)) if offset else "Etc/GMT"
        if 9 <= now.astimezone(ZoneInfo(name)).hour < 19:
            if ZoneInfo(name).utcoffset(now) == timedelta(hours=6):
                return "Asia/Bishkek"
            return name
    return "Asia/Bishkek"


# ------------------------------------------------------------------ the places

def plan_places(watch: Watch, places: int) -> list[tuple[str, int, str, int]]:
    """(kindergarten, cohort, language, places): in proportion to the
    eligible children who list the pool first, never more than them, so
    that every place published is taken."""
    from services.queue.domain.ranking import latest_eligible_birth_date
    from services.queue.domain.policy import Policy

    bound = latest_eligible_birth_date(datetime.now(ZoneInfo("Asia/Bishkek")).date(), Policy())
    with watch.engines["queue"].connect() as c:
        rows = c.execute(sa.text(
            "SELECT preferences[1], cohort, language, count(*) FROM applications WHERE status = 'queued' "
            "AND birth_date <= :b GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3"), {"b": bound}).all()
    total = sum(r[3] for r in rows)
    if total < places:
        raise SystemExit(f"only {total} eligible children for {places} places: more children, fewer places")
    out, left = [], places
    for kg, cohort, lang, n in rows:
        k = min(n, max(1, round(places * n / total)), left)
        if k:
            out.append((kg, cohort, lang, k))
            left -= k
    i = 0
    while left:          # rounding: the biggest pools take the rest
        kg, cohort, lang, k = out[i % len(out)]
        n = next(r[3] for r in rows if (r[0], r[1], r[2]) == (kg, cohort, lang))
        if k < n:
            out[i % len(out)] = (kg, cohort, lang, k + 1)
            left -= 1
        i += 1
    return out


# ------------------------------------------------------------------ the day

STAGES = [
    # name, unit, what it waits on
    ("referrals issued", "referrals/s", None),
    ("workflows started", "starts/s", "referrals issued"),
    # referral.issued.v1 in the queue's outbox: written with the referrals
    # by the allocation (announced); before, by each workflow's first step,
    # when this stage was named "workflows ran" and waited on the starts.
    ("referral.issued written", "facts/s", "referrals issued"),
    ("referral.issued relayed", "facts/s", "referral.issued written"),
    # "referral issued" SMS in the notifications service's messages table
    # (its consumer made them from the relayed facts), then accepted by the
    # development SMS gateway (its dispatcher sent them).
    ("SMS made", "SMS/s", "referral.issued relayed"),
    ("SMS accepted", "SMS/s", "SMS made"),
    ("cases in the worklist", "cases/s", "referral.issued written"),
    ("position events written", "events/s", "referrals issued"),
    ("position events relayed", "events/s", "position events written"),
    *((f"position events consumed by {g}", "events/s", "position events relayed") for g in POSITION_GROUPS),
]


# The outboxes' counts are read every OUTBOX_EVERY samples once the
# referral facts are relayed (every sample before: a few thousand rows
# then). Read every second, the count of the queue's outbox (the day's
# 170,000 rows) kept a PostgreSQL backend busy a quarter of the time
# (pg_stat_activity sampled over a full-size day): CPU taken from the
# system measured. The position stages' times are read to 5 s. A count
# that can no longer change (`final`) is not read again.
OUTBOX_EVERY = 5


def sample(watch: Watch, sms, t0: float, seq0: dict[str, int], ref0: int, started_at: datetime,
           cpu: dict[str, float], last: dict | None = None, number: int = 0,
           final: frozenset[str] = frozenset()) -> dict:
    """The day's progress now. `final` names the counts that can no longer
    change, taken from `last`: "outbox" (the queue's facts and position
    events, once every fact is relayed and the positions are written and
    relayed), "made" (the "referral issued" SMS, once every one is made).
    pg_stat_statements over a full-size day put the two counts among what
    took PostgreSQL most time: about 0.5 s a read of the queue's outbox,
    60-80 ms of the messages table, read to the end of the day."""
    q = watch.row("queue", """
        SELECT count(*), count(*) FILTER (WHERE workflow_started_at IS NOT NULL),
               count(*) FILTER (WHERE needs_confirmation)
        FROM referrals WHERE id > :r""", r=ref0)
    read = "outbox" not in final and (last is None or last["ran_relayed"] < last["referrals"]
                                      or last["referrals"] < q[0] or number % OUTBOX_EVERY == 0)
    if read:
        ran, ran_sent, pos_written, pos_unsent = watch.row("queue", """
            SELECT count(*) FILTER (WHERE type = 'referral.issued.v1'),
                   count(*) FILTER (WHERE type = 'referral.issued.v1' AND sent_at IS NOT NULL),
                   count(*) FILTER (WHERE type = 'application.position_changed.v1'),
                   count(*) FILTER (WHERE type = 'application.position_changed.v1' AND sent_at IS NULL)
            FROM outbox WHERE seq > :s""", s=seq0["queue"])
    else:
        ran, ran_sent, pos_written, pos_unsent = (last[k] for k in ("ran", "ran_relayed", "positions_written",
                                                                    "positions_unsent"))
    # Every outbox's totals (the relays' rates), every OUTBOX_EVERY samples to the end.
    outboxes = {s: list(v) for s, v in watch.outbox_totals().items()} if read or number % OUTBOX_EVERY == 0 \
        else last["outbox"]
    cases = watch.scalar("verification", "SELECT count(*) FROM referrals WHERE needs_confirmation "
                                         "AND issued_at >= :t", t=started_at - timedelta(seconds=5))
    # A read of the whole table, about 60 ms; along the index of the
    # messages' source event it took twice as long (the day's 30,000
    # messages of referral facts, read from all over the table).
    made = last["sms_made"] if "made" in final else watch.scalar(
        "notifications", "SELECT count(*) FROM messages WHERE kind = 'referral_issued' "
                         "AND channel = 'sms' AND created_at >= :t", t=started_at)
    accepted = sum(1 for r in list(sms.accepted.values()) if r.at >= started_at.timestamp())
    lags = watch.lags()
    consumed = {g: lags.get(g, {}).get("kezek.application") or watch.behind_all("kezek.application")
                for g in POSITION_GROUPS}
    return {"t": round(time.monotonic() - t0, 2), "referrals": q[0], "started": q[1], "needs_confirmation": q[2],
            "ran": ran, "ran_relayed": ran_sent, "sms_made": made, "sms": accepted, "cases": cases, "positions_written": pos_written,
            "positions_unsent": pos_unsent, "consumed": {g: list(v) for g, v in consumed.items()},
            "outbox": outboxes, "outbox_read": read, "load": load(), "cpu": cpu}


def outbox_final(written: list[int], allocated: bool, s: dict) -> bool:
    """Whether the queue's outbox counts can no longer change: the
    allocation done, every fact relayed, position events written and none
    unsent, and the same number written at the last two reads (a moment
    after the run, before its positions were written, looked done too)."""
    return (allocated and s["ran_relayed"] >= s["referrals"] and s["positions_unsent"] == 0
            and len(written) >= 2 and written[-1] == written[-2] > 0)


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process spent between two readings, the most first
    (a process restarted meanwhile counts from its new start)."""
    spent = {name: round(t - before.get(name, 0) if t >= before.get(name, 0) else t, 1) for name, t in after.items()}
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


def stage_series(samples: list[dict], expected: dict[str, int]) -> dict[str, list[tuple[float, int]]]:
    """(t, done so far) of each stage."""
    series: dict[str, list[tuple[float, int]]] = {name: [] for name, _, _ in STAGES}
    for s in samples:
        t = s["t"]
        series["referrals issued"].append((t, s["referrals"]))
        series["workflows started"].append((t, s["started"]))
        series["referral.issued written"].append((t, s["ran"]))
        series["referral.issued relayed"].append((t, s.get("ran_relayed", 0)))
        series["SMS made"].append((t, s.get("sms_made", 0)))
        series["SMS accepted"].append((t, s["sms"]))
        series["cases in the worklist"].append((t, s["cases"]))
        series["position events written"].append((t, s["positions_written"]))
        series["position events relayed"].append((t, s["positions_written"] - s["positions_unsent"]))
        for g in POSITION_GROUPS:
            done, behind = s["consumed"][g]
            base = expected.get(f"_offset0:{g}", 0)
            series[f"position events consumed by {g}"].append((t, max(0, done - base)))
    return series


def summarise(series: dict, expected: dict[str, int]) -> list[dict]:
    rows = []
    ends: dict[str, float | None] = {}
    for name, unit, after in STAGES:
        want = expected.get(name, 0)
        points = series[name]
        # the stage began after the last sample that saw none of it done
        first = next((t for t, n in points if n > 0), None)
        if first is not None:
            first = max((t for t, n in points if n == 0 and t < first), default=0.0)
        end = next((t for t, n in points if n >= want), None) if want else (points[0][0] if points else None)
        ends[name] = end
        rate = None
        if end is not None and first is not None and want:
            rate = round(want / max(end - first, 0.5), 1)
        peak = None
        for (t1, n1), (t2, n2) in zip(points, points[5:]):
            if t2 > t1:
                peak = max(peak or 0, (n2 - n1) / (t2 - t1))
        rows.append({"stage": name, "items": want, "done_at_s": end, "first_at_s": first, "unit": unit,
                     "rate": rate, "peak_rate": round(peak, 1) if peak is not None else None, "after": after})
    for row in rows:
        before = ends.get(row["after"]) if row["after"] else 0.0
        row["took_after_its_input_s"] = (round(row["done_at_s"] - before, 1)
                                         if row["done_at_s"] is not None and before is not None else None)
    return rows


def plot(samples: list[dict], series: dict, expected: dict, readers: list, t0: float, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for name, _, _ in STAGES:
        want = expected.get(name, 0)
        if not want:
            continue
        xs = [t for t, _ in series[name]]
        ys = [100 * n / want for _, n in series[name]]
        ax.plot(xs, ys, label=f"{name} ({want:,})", linewidth=1.6)
    ax.set_ylabel("% done")
    ax.set_title("Distribution day: stages after the places are published")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    if readers:
        xs = [s - t0 for s, d, st in readers if s >= t0]
        ys = [d * 1000 for s, d, st in readers if s >= t0]
        bx.scatter(xs, ys, s=2, alpha=0.4)
        bx.set_yscale("log")
    bx.set_ylabel("GET /api/v1/me, ms")
    bx.set_xlabel("seconds after the publication")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--children", type=int, default=200_000)
    ap.add_argument("--places", type=int, default=10_000)
    ap.add_argument("--kindergartens", type=int, default=0, help="default: one per 170 children")
    ap.add_argument("--readers", type=int, default=8, help="concurrent parents reading /api/v1/me meanwhile")
    ap.add_argument("--parents", type=int, default=200,
                    help="parents signed in (the readers' families; each may read 300 times a minute, as in production)")
    ap.add_argument("--relays", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=1, help="consumer processes per service")
    ap.add_argument("--workers", type=int, default=1, help="workflow workers")
    ap.add_argument("--setting", action="append", default=[], metavar="KEZEK_NAME=VALUE",
                    help="a setting of the system's processes (repeatable), e.g. "
                         "KEZEK_RUN_CONSUMER_REPLICAS=notifications=2")
    ap.add_argument("--pg-statements", action="store_true",
                    help="load pg_stat_statements into the system's PostgreSQL and print the statements that took "
                         "most of its time, from the publication to the last SMS and to the end")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds after the publication")
    ap.add_argument("--seed", type=int, default=15)
    snapshot_options(ap)
    args = ap.parse_args(argv)
    if bad := [item for item in args.setting if not item.startswith("KEZEK_") or "=" not in item]:
        ap.error(f"--setting {bad[0]!r}: not KEZEK_NAME=VALUE")
    settings = dict(item.split("=", 1) for item in args.setting)
    if args.pg_statements:
        given = settings.get("KEZEK_RUN_POSTGRES_SETTINGS")
        settings["KEZEK_RUN_POSTGRES_SETTINGS"] = f"{given},{STATEMENTS_SETTING}" if given else STATEMENTS_SETTING

    from services.notifications.devservers import DevSmsGateway

    kgs = args.kindergartens or max(20, args.children // 170)
    folder = BenchFolder(args.dir, "kezek-day-")
    base = folder.path
    figures: dict = {"children": args.children, "places": args.places, "kindergartens": kgs,
                     "readers": args.readers, "relays": args.relays, "consumers_per_service": args.consumers,
                     "workers": args.workers, "settings": settings, "cpus": os.cpu_count(), "load_start": load()}
    sms = DevSmsGateway(receipts=True).start()
    zone = daytime_zone()
    env = {"KEZEK_NOTIFICATIONS_TIMEZONE": zone, **settings}
    kezek = System(base / "kezek", relays=args.relays, consumers_per_service=args.consumers, workers=args.workers,
                   sms_gateway_url=sms.url, env=env, log=say)
    readers = None
    watch = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # stop the system on the way out
    try:
        t = time.monotonic()
        figures["queue"] = built_queue_of(kezek, args, kgs)
        figures["queue_s"] = round(time.monotonic() - t, 1)
        watch = Watch(kezek)

        tokens = sign_in_parents(kezek, watch, args.parents, args.seed)
        pools = plan_places(watch, args.places)
        say(f"{len(tokens)} parents signed in; {args.places:,} places over {len(pools):,} pools")
        figures["pools"] = len(pools)
        settle(watch, 600, "after signing in")

        from kezek.trust import staff_principal
        from services.queue.domain.commands import PublishPlaces
        from services.queue.runtime import build_queue

        queue = build_queue(kezek.settings)
        seq0 = {s: v[0] for s, v in watch.outbox_totals().items()}
        ref0 = watch.scalar("queue", "SELECT coalesce(max(id), 0) FROM referrals")
        offsets0 = {g: watch.lags().get(g, {}).get("kezek.application", (0, 0))[0] for g in POSITION_GROUPS}
        readers = loadgen.start(kezek.url("gateway"), "me", {"tokens": tokens}, users=args.readers,
                                seconds=args.timeout + 3600, warmup=0, folder=base / "readers")
        time.sleep(30)
        wall0 = time.time()

        def cpu_now() -> dict[str, float]:
            return {**kezek.cpu_seconds(), **process_cpu({"readers": readers.proc.pid}),
                    "benchmark (SMS gateway, sampling)": round(sum(os.times()[:2]), 2)}

        statements: dict[str, dict] = {}
        if args.pg_statements:
            watch.reset_statements()
        cpu0 = cpu_now()
        say(f"publishing {args.places:,} places at once (load {load()}) ...")
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        outcome = queue.imports.publish_places_many([PublishPlaces(kg, c, lang, n) for kg, c, lang, n in pools],
                                                    actor=staff_principal("bench", "admin"))
        refused = [o for o in outcome if o is not True]
        if refused:
            raise RuntimeError(f"{len(refused)} publications refused: {refused[:3]}")
        figures["publication_s"] = round(time.monotonic() - t0, 2)

        samples: list[dict] = []
        expected: dict[str, int] = {"referrals issued": args.places}
        expected.update({f"_offset0:{g}": offsets0[g] for g in POSITION_GROUPS})
        last_say = 0.0
        done = False
        final: set[str] = set()
        written: list[int] = []        # the position events written, at each read of the outbox
        while time.monotonic() - t0 < args.timeout and not done:
            s = sample(watch, sms, t0, seq0, ref0, started_at, cpu_now(), samples[-1] if samples else None,
                       len(samples), frozenset(final))
            samples.append(s)
            if args.pg_statements and "to the last SMS" not in statements and s["sms"] >= args.places:
                statements["to the last SMS"] = watch.statements()
            n = s["referrals"]
            if n >= args.places:
                expected.update({"workflows started": n, "referral.issued written": n, "referral.issued relayed": n,
                                 "SMS made": n, "SMS accepted": n,
                                 "cases in the worklist": s["needs_confirmation"]})
            if s["sms_made"] >= args.places:
                final.add("made")
            allocated = n >= args.places and not watch.scalar(
                "queue", "SELECT count(*) FROM position_changes") and not watch.scalar(
                "queue", "SELECT count(*) FROM allocation_requests WHERE done_at IS NULL")
            if allocated:
                expected["position events written"] = expected["position events relayed"] = s["positions_written"]
                for g in POSITION_GROUPS:
                    expected[f"position events consumed by {g}"] = s["positions_written"]
            if s["outbox_read"]:
                written.append(s["positions_written"])
            if outbox_final(written, allocated, s):
                final.add("outbox")
            if allocated and s["positions_unsent"] == 0:
                # consumed: every group has read its topic to the end
                behind = sum(v[1] for v in s["consumed"].values())
                done = (behind == 0 and s["started"] >= n and s["ran"] >= n and s["sms"] >= n
                        and s["cases"] >= s["needs_confirmation"])
                if done:
                    # The groups' offsets count every event of the topic: the
                    # position events are all of what came after offsets0
                    # that the queue wrote, so take the groups as done.
                    for g in POSITION_GROUPS:
                        s["consumed"][g] = [offsets0[g] + s["positions_written"], 0]
            if time.monotonic() - last_say > 15:
                say(f"  t={s['t']:.0f}s referrals {n}, started {s['started']}, issued facts {s['ran']} "
                    f"(relayed {s['ran_relayed']}), sms made {s['sms_made']}, accepted {s['sms']}, "
                    f"cases {s['cases']}/{s['needs_confirmation']}, positions {s['positions_written']} "
                    f"(unsent {s['positions_unsent']}), consumed "
                    f"{ {g: v for g, v in s['consumed'].items()} }, load {s['load']}")
                last_say = time.monotonic()
            time.sleep(1)
        t_end = time.monotonic()
        wall_end = time.time()
        if args.pg_statements:
            statements["to the end"] = watch.statements()
        readers.stop()
        reads = readers.samples
        before = loadgen.figures([r for r in reads if wall0 - 25 <= r[0] < wall0], 25, args.readers)
        me = loadgen.figures([r for r in reads if wall0 <= r[0] < wall_end], wall_end - wall0, args.readers)
        series = stage_series(samples, expected)
        rows = summarise(series, expected)
        # The consumed counts above are offsets of the whole topic; the
        # position events are the bulk of them: take each group's end as the
        # moment it had read the topic to the end after the positions were out.
        for row in rows:
            if row["stage"].startswith("position events consumed by "):
                g = row["stage"].rsplit(" ", 1)[1]
                end = next((s["t"] for s in samples if s["positions_unsent"] == 0
                            and s["consumed"][g][1] == 0 and s["positions_written"] >= expected.get(
                                "position events written", 1)), None)
                row["done_at_s"] = end
                before_t = next((r["done_at_s"] for r in rows if r["stage"] == "position events relayed"), None)
                row["took_after_its_input_s"] = round(end - before_t, 1) if end and before_t else None
                first = row["first_at_s"]
                if end and first is not None and row["items"]:
                    row["rate"] = round(row["items"] / max(end - first, 0.5), 1)
        finished = [r for r in rows if r["done_at_s"] is not None]
        slowest = max((r for r in rows if r["took_after_its_input_s"] is not None),
                      key=lambda r: r["took_after_its_input_s"], default=None)
        sms_row = next(r for r in rows if r["stage"] == "SMS accepted")
        relay_rates = {}
        for svc in ("queue", "notifications", "verification", "gateway", "registration"):
            pts = [(s["t"], s["outbox"][svc][0] - s["outbox"][svc][1]) for s in samples]
            sent = pts[-1][1] - pts[0][1] if pts else 0
            busy = [t for (t, n), (_, m) in zip(pts, pts[1:]) if m > n]
            relay_rates[svc] = {"events": sent, "per_second": round(sent / max(busy[-1] - busy[0] + 1, 1), 1)
                                if busy else 0}
        sms_done = next((x["t"] for x in samples if x["sms"] >= args.places), None)
        cpu_day = cpu_spent(cpu0, samples[-1]["cpu"]) if samples else {}
        cpu_to_sms = cpu_spent(cpu0, next(x["cpu"] for x in samples if x["t"] == sms_done)) if sms_done else {}
        figures.update({
            "cpu_s_by_process": cpu_day, "cpu_s_by_process_to_last_sms": cpu_to_sms,
            "complete": done, "seconds": round(t_end - t0, 1), "stages": rows,
            "referrals_to_sms_s": sms_row["done_at_s"], "slowest_stage": slowest["stage"] if slowest else None,
            "relays": relay_rates, "me_before": before, "me_during": me, "load_end": load(),
            "load_during": round(statistics.mean(s["load"] for s in samples), 1) if samples else None,
            "sms_timezone": zone, "restarts": kezek.restarts(),
        })
        print(f"\n{'stage':<50} {'items':>8} {'done at s':>10} {'rate':>10} {'peak':>9}  unit   after input s",
              flush=True)
        for r in rows:
            print(f"{r['stage']:<50} {r['items']:>8,} {r['done_at_s'] if r['done_at_s'] is not None else '-':>10} "
                  f"{r['rate'] if r['rate'] is not None else '-':>10} {r['peak_rate'] or '-':>9}  {r['unit']:<13} "
                  f"{r['took_after_its_input_s'] if r['took_after_its_input_s'] is not None else '-'}", flush=True)
        print(f"slowest stage: {figures['slowest_stage']}; publication to the last SMS: "
              f"{figures['referrals_to_sms_s']} s; relays {relay_rates}", flush=True)
        print("CPU seconds by process, publication to the last SMS / to the end: " + ", ".join(
            f"{name} {cpu_to_sms.get(name, '-')} / {spent}" for name, spent in cpu_day.items()), flush=True)
        if statements:
            figures["pg_statements"] = {window: top_statements({}, read) for window, read in statements.items()}
            for window, top in figures["pg_statements"].items():
                print(f"PostgreSQL statements, publication {window}: {top['calls']:,} calls of {top['statements']} "
                      f"statements, {top['ms'] / 1000:.1f} s executing; the most:", flush=True)
                for x in top["top"]:
                    print(f"  {x['ms'] / 1000:8.1f} s {x['share']:6.1%} {x['calls']:>9,} calls {x['rows']:>9,} rows  "
                          f"{x['database']}: {x['query'][:160]}", flush=True)
        print(f"parts the supervisor started again: {figures['restarts'] or 'none'}", flush=True)
        print(f"GET /api/v1/me, {args.readers} concurrent readers of {len(tokens)} families: before {before}; "
              f"during {me}", flush=True)
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (RESULTS / f"distribution_day-{stamp}.json").write_text(json.dumps(
            {"figures": figures, "samples": samples}, indent=1))
        if plot(samples, series, expected, [(a - wall0, d, st) for a, d, st in reads], 0.0, RESULTS / f"distribution_day-{stamp}.png"):
            figures["plot"] = f"bench/results/distribution_day-{stamp}.png"
        del finished
    finally:
        if readers is not None and readers.proc.poll() is None:
            readers.stop()
        if watch is not None:
            watch.close()
        kezek.stop()
        sms.stop()
        folder.close()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
