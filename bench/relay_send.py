"""What relaying an event costs, sent for real (issue 15). A distribution
day relays some 170,000 position events and 10,000 referral facts of the
queue, and as many of notifications; each passes through a relay's claim,
its producer and the broker.

A PostgreSQL cluster and a Kafka broker of the benchmark's own (own ports
and folder). The queue's outbox takes `--events` position events (the
queue's own event data, `--subjects` children); one relay
(kezek/relay.py, the code of this checkout) then claims, sends and marks
them until none is left, with the relay's producer as it is and with
kafka-python's own batching (16 KiB, 5 ms linger), in turn, `--rounds`
times. Measured for each: the CPU seconds of this process (the relay and
its producer's sender thread), of the relay's database backend and of the
broker, per event sent, and the producer's records a request.

    .venv/bin/python bench/relay_send.py                 # 30,000 events, 3 rounds

Writes bench/results/relay_send-<time>[-<label>].json; the last line is one
JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402

from system import BenchFolder, process_cpu  # noqa: E402

import kezek.relay  # noqa: E402
from kezek.db import make_engine, make_session_factory  # noqa: E402
from kezek.infra.kafka import KafkaBroker, ensure_topics  # noqa: E402
from kezek.infra.postgres import BENCHMARK_SETTINGS, PostgresCluster  # noqa: E402
from kezek.migrations import upgrade  # noqa: E402
from kezek.relay import OutboxRelay, make_producer  # noqa: E402
from services.queue.models import outbox  # noqa: E402
from services.queue.usecases.positions import POSITION_CHANGED, event_data  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# kafka-python's own batching, which the relay's producer had before.
KAFKA_PYTHON = {"batch_size": 16_384, "linger_ms": 5}


def fill(sessions, events: int, subjects: int) -> None:
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        for start in range(0, events, 5_000):
            outbox.write(s, [outbox.new(POSITION_CHANGED, f"application:app-{i % subjects}",
                                        event_data(f"app-{i % subjects}", f"parent-{i % subjects}", f"kg-{i % 1000}",
                                                   f"Kindergarten {i % 1000}", 1 + i % 300, 2 + i % 300), time=now)
                             for i in range(start, min(events, start + 5_000))])


def one_round(sessions, bootstrap: str, broker_pid: int, events: int, subjects: int, producer: dict) -> dict:
    """One relay, with the producer's settings overridden by `producer`,
    relays `events` fresh events."""
    fill(sessions, events, subjects)
    relay = OutboxRelay(sessions, outbox, bootstrap)
    relay._producer = make_producer(bootstrap, **producer)
    try:
        with sessions() as s:
            # The relay's backend: one round uses one connection at a time,
            # so the pool holds only this one.
            servers = {"database": s.execute(sa.text("SELECT pg_backend_pid()")).scalar(), "broker": broker_pid}
        before = (time.process_time(), process_cpu(servers), time.monotonic())
        sent = 0
        while n := relay.relay_once():
            sent += n
        after = (time.process_time(), process_cpu(servers), time.monotonic())
        per_request = relay._producer.metrics()["producer-metrics"]["records-per-request-avg"]
    finally:
        relay.close()
    client, wall = after[0] - before[0], after[2] - before[2]
    db, kafka = (after[1][name] - before[1][name] for name in ("database", "broker"))
    return {"sent": sent, "wall_s": round(wall, 2), "relay_us": round(client / sent * 1e6, 1),
            "database_us": round(db / sent * 1e6, 1), "broker_us": round(kafka / sent * 1e6, 1),
            "records_per_request": round(per_request, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--events", type=int, default=30_000, help="events relayed in each round")
    ap.add_argument("--subjects", type=int, default=20_000, help="children the events are about (their keys)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each producer, in turn")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--label", default="")
    ap.add_argument("--dir", type=Path, help="keep the servers' folder here")
    args = ap.parse_args(argv)

    variants = {"relay": {}, "kafka-python": KAFKA_PYTHON}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    with BenchFolder(args.dir, "kezek-relay-send-") as folder:
        cluster = PostgresCluster(folder.path / "pg", durable=False, settings=BENCHMARK_SETTINGS).start()
        broker = KafkaBroker(folder.path / "kafka").start()
        try:
            with sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(sa.text("CREATE DATABASE queue"))
            url = cluster.url("queue")
            upgrade("queue", url)
            engine = make_engine(url)
            sessions = make_session_factory(engine)
            ensure_topics(broker.bootstrap, ["kezek.application"], partitions=args.partitions)
            one_round(sessions, broker.bootstrap, broker.proc.pid, 1_000, args.subjects, {})    # warm-up
            for r in range(args.rounds):
                for name, producer in variants.items():
                    figures = one_round(sessions, broker.bootstrap, broker.proc.pid, args.events, args.subjects,
                                        producer)
                    runs[name].append(figures)
                    print(json.dumps({"round": r + 1, "producer": name, **figures}), flush=True)
            engine.dispose()
        finally:
            broker.stop()
            cluster.stop()
    summary = {name: {k: [min(f[k] for f in fs), statistics.median(f[k] for f in fs), max(f[k] for f in fs)]
                      for k in ("relay_us", "database_us", "broker_us", "records_per_request")}
               for name, fs in runs.items()}
    out = {"benchmark": "relay_send", "events": args.events, "rounds": args.rounds,
           "producer": {"batch_size": kezek.relay.PRODUCER_BATCH_BYTES, "linger_ms": kezek.relay.PRODUCER_LINGER_MS},
           "kafka_python": KAFKA_PYTHON, "when": datetime.now().strftime("%Y-%m-%d %H:%M"),
           "per_event_min_median_max": summary, "runs": runs}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"relay_send-{stamp}{'-' + args.label if args.label else ''}.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"} | {"results": f"bench/results/{name}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
