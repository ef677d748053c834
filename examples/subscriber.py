#!/usr/bin/env python3
"""A subscriber of Kezek's public event stream (kezek.public.v1).

Copy this file: it needs only `pip install kafka-python` (3.x). It prints a
live count of published places and issued referrals per district:

    python subscriber.py --bootstrap broker:9092
    python subscriber.py --bootstrap 127.0.0.1:9092 --from-beginning --idle-exit 5

Every message is a CloudEvents 1.0 envelope by the CloudEvents Kafka binding,
in structured mode: the value is the JSON envelope and the `content-type`
header is `application/cloudevents+json; charset=UTF-8` (`envelope()` below
also reads the binary mode, `ce_*` headers and the data as the value, should
a relay ever send it). `type` says what happened
(`public.place.published.v1`, `public.referral.issued.v1`, ...) and `data`
follows the JSON Schema its `dataschema` names (served by the gateway at
/api/v1/public/schemas/<type>.json). No personal data: children appear only
as pseudonymous `child_ref`s.
Deduplicate on the envelope's `id` (delivery is at least once), and ignore
properties you do not know (new ones may appear within a version).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import defaultdict

from kafka import KafkaConsumer

PLACE_DELTAS = {"public.place.published.v1": +1, "public.place.withdrawn.v1": -1}
# A referral moved from the old portal counts like one issued here.
REFERRALS_ISSUED = ("public.referral.issued.v1", "public.referral.imported.v1")


def envelope(value: bytes, headers: list[tuple[str, bytes]] | None) -> dict:
    """The CloudEvents envelope of one record, by the Kafka binding's rules."""
    by_name = {name.lower(): raw or b"" for name, raw in headers or ()}
    if any(name.startswith("ce_") for name in by_name):           # binary mode
        event = {name[3:]: raw.decode("utf-8") for name, raw in by_name.items() if name.startswith("ce_")}
        if "content-type" in by_name:
            event["datacontenttype"] = by_name["content-type"].decode("utf-8")
        event["data"] = json.loads(value.decode("utf-8"))
        return event
    content_type = by_name.get("content-type", b"application/cloudevents+json").decode("latin-1")
    if not content_type.lower().startswith("application/cloudevents+json"):
        raise ValueError(f"not a CloudEvent: content-type {content_type}")
    return json.loads(value.decode("utf-8"))                    # structured mode


class Counts:
    def __init__(self):
        self.places = defaultdict(int)      # district -> places published (minus withdrawn)
        self.referrals = defaultdict(int)   # district -> referrals issued
        self.seen: set[str] = set()         # event ids: a redelivered event counts once

    def add(self, event: dict) -> bool:
        if event.get("id") in self.seen:
            return False
        self.seen.add(event.get("id"))
        data = event.get("data") or {}
        district = data.get("district") or "unknown"
        if event.get("type") in PLACE_DELTAS:
            self.places[district] += PLACE_DELTAS[event["type"]] * int(data.get("count", 0))
        elif event.get("type") in REFERRALS_ISSUED:
            self.referrals[district] += 1
        else:
            return False
        return True

    def table(self) -> str:
        districts = sorted(set(self.places) | set(self.referrals))
        lines = [f"{'district':<16} {'places':>8} {'referrals':>10}"]
        lines += [f"{d:<16} {self.places[d]:>8} {self.referrals[d]:>10}" for d in districts]
        lines.append(f"{'total':<16} {sum(self.places.values()):>8} {sum(self.referrals.values()):>10}")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="kezek.public.v1")
    parser.add_argument("--group", default=None,
                        help="consumer group (keeps your position between runs); default: none, read from the start")
    parser.add_argument("--from-beginning", action="store_true", help="with --group: start at the oldest event")
    parser.add_argument("--idle-exit", type=float, default=0,
                        help="exit after this many seconds without a new event (0: run until Ctrl-C)")
    parser.add_argument("--json", action="store_true", help="print the final counts as one JSON line")
    args = parser.parse_args(argv)

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest" if (args.from_beginning or args.group is None) else "latest",
        enable_auto_commit=args.group is not None,
    )
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    counts = Counts()
    last_event = time.monotonic()
    try:
        while not stop:
            changed = False
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    changed |= counts.add(envelope(record.value, record.headers))
                    last_event = time.monotonic()
            if changed:
                print(f"\n[{time.strftime('%H:%M:%S')}]\n{counts.table()}", flush=True)
            if args.idle_exit and time.monotonic() - last_event > args.idle_exit:
                break
    finally:
        consumer.close()
    if args.json:
        print(json.dumps({"places": dict(counts.places), "referrals": dict(counts.referrals)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
