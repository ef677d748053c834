"""The outbox relays' claims as marked rows pile up (issue 15). On the
full-size distribution day the relays' claims were among PostgreSQL's most
frequent statements (bench/README.md): marking a row sent leaves its entry
in the index of unsent rows until VACUUM removes it, and VACUUM cannot while
an older transaction is open.

An outbox table on a PostgreSQL cluster of its own takes `--rows` events,
`--rate` a second in writes of `--chunk` rows (`--subjects` subjects, at
random). After each
write, `--relays` relays (kezek/relay.py, the code of this checkout) claim
and mark them in turn until none is left unsent, as on the day; only their
send is left out (each batch goes nowhere), so what is timed is the claim,
its look at earlier rows of its subjects, and the mark. With `--hold` (the
default) a transaction of another connection stays open from the start, as
a long report, a backup or a read model's catch-up would: nothing marked
can be cleaned away meanwhile.

Prints, every `--every` rows marked, the mean time of a claim (the relay's
`_claim`, as its client sees it) over that stretch and the PostgreSQL
buffers the claims read; at the end the first and last stretch and the
time all claims took, and writes bench/results/relay_claims-<time>[-<label>].json.
The last line is one JSON object.

    .venv/bin/python bench/relay_claims.py                     # 120,000 rows behind an open transaction
    .venv/bin/python bench/relay_claims.py --no-hold --label quiet
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402

from system import BenchFolder  # noqa: E402

from kezek.db import make_engine, make_session_factory  # noqa: E402
from kezek.infra.postgres import BENCHMARK_SETTINGS, PostgresCluster  # noqa: E402
from kezek.outbox import Outbox  # noqa: E402
from kezek.relay import OutboxRelay  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class TimedRelay(OutboxRelay):
    """A relay whose claims are timed and whose batches go nowhere."""

    def __init__(self, *a, claims: list[float], **kw):
        super().__init__(*a, **kw)
        self.claims = claims

    def _claim(self, session):
        started = time.perf_counter()
        rows = super()._claim(session)
        self.claims.append(time.perf_counter() - started)
        return rows

    def _publish(self, rows) -> None:
        pass


def buffers_read(engine) -> int:
    """Shared buffers the outbox's table and indexes were read through so far."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        return conn.exec_driver_sql(
            "SELECT coalesce(sum(idx_blks_hit + idx_blks_read), 0) + coalesce(sum(heap_blks_hit + heap_blks_read), 0)"
            " FROM pg_statio_user_tables WHERE relname = 'outbox'").scalar_one()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=120_000)
    ap.add_argument("--rate", type=float, default=1000, help="rows written a second (the day's relays: 450-700)")
    ap.add_argument("--chunk", type=int, default=500, help="rows per write")
    ap.add_argument("--subjects", type=int, default=50_000)
    ap.add_argument("--relays", type=int, default=2)
    ap.add_argument("--batch", type=int, default=500, help="rows a claim takes at most (the relay's default)")
    ap.add_argument("--hold", action=argparse.BooleanOptionalAction, default=True,
                    help="keep a transaction of another connection open meanwhile")
    ap.add_argument("--every", type=int, default=10_000, help="rows marked between two lines")
    ap.add_argument("--label", default="")
    ap.add_argument("--dir", type=Path, help="keep the cluster's folder here")
    args = ap.parse_args(argv)

    with BenchFolder(args.dir, "kezek-relay-claims-") as folder:
        cluster = PostgresCluster(folder.path / "pg", durable=False, settings=BENCHMARK_SETTINGS).start()
        try:
            figures = run(args, cluster)
        finally:
            cluster.stop()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"relay_claims-{stamp}{'-' + args.label if args.label else ''}.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(figures, indent=1))
    figures["results"] = f"bench/results/{name}"
    print(json.dumps({k: v for k, v in figures.items() if k != "stretches"}))
    return 0


def run(args, cluster: PostgresCluster) -> dict:
    engine = make_engine(cluster.url())
    metadata = sa.MetaData()
    outbox = Outbox(metadata, "bench")
    metadata.create_all(engine)
    sessions = make_session_factory(engine)
    claims: list[float] = []
    relays = [TimedRelay(sessions, outbox, "nowhere:9092", batch_size=args.batch, claims=claims)
              for _ in range(args.relays)]
    holder = None
    if args.hold:
        holder = engine.connect()
        holder.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.exec_driver_sql("SELECT count(*) FROM outbox")
    rng = random.Random(15)
    stretches, marked, started = [], 0, time.perf_counter()
    claims_before, buffers_before = 0, buffers_read(engine)
    payload = json.dumps({"specversion": "1.0", "data": {"note": "x" * 200}})
    try:
        while marked < args.rows:
            pause = started + (marked + args.chunk) / args.rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            now = datetime.now(UTC)
            with engine.begin() as conn:
                conn.execute(outbox.table.insert(), [
                    {"event_id": str(uuid.uuid4()), "type": "bench.probe.v1", "subject": f"s{rng.randrange(args.subjects)}",
                     "payload": payload, "created_at": now} for _ in range(args.chunk)])
            while True:
                sent = sum(r.relay_once() for r in relays)
                marked += sent
                if sent == 0:
                    break
            if marked // args.every > len(stretches):
                buffers = buffers_read(engine)
                window = claims[claims_before:]
                stretch = {"marked": marked, "claims": len(window),
                           "claim_ms": round(1000 * statistics.fmean(window), 3),
                           "buffers_per_claim": round((buffers - buffers_before) / max(1, len(window)))}
                stretches.append(stretch)
                print(json.dumps(stretch), flush=True)
                claims_before, buffers_before = len(claims), buffers
    finally:
        if holder is not None:
            holder.close()
        engine.dispose()
    seconds = time.perf_counter() - started
    return {"rows": marked, "rate": args.rate, "hold": args.hold, "relays": args.relays, "batch": args.batch,
            "subjects": args.subjects, "seconds": round(seconds, 1),
            "claims": len(claims), "claiming_s": round(sum(claims), 2),
            "first_claim_ms": stretches[0]["claim_ms"], "last_claim_ms": stretches[-1]["claim_ms"],
            "last_buffers_per_claim": stretches[-1]["buffers_per_claim"], "stretches": stretches}


if __name__ == "__main__":
    sys.exit(main())
