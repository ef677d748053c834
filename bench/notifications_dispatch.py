"""What the notifications service's own work costs a message (issue 15),
on PostgreSQL with nothing else running: the consumer making a distribution
day's messages from its `referral.issued.v1` facts, and each dispatcher
sending them. On the full-size day that process (consumer and dispatchers
together) took 72 CPU s of the machine's two cores before the last SMS;
this says which of its parts the seconds go to.

A PostgreSQL cluster of its own (set for benchmarks, as bench/allocation.py
sets it) and the notifications database migrated there. `--parents` parents'
`application.received.v1` facts are consumed as the consumer does (200 a
batch: claimed, prepared, handled, finished in one transaction), then as many
`referral.issued.v1` facts (`--batch` a transaction): three messages each
(SMS, e-mail, in-app). Then each dispatcher runs its rounds until nothing is
due, as `kezek consume` runs them, with their default settings:
- in-app: the inbox (InAppInbox, a send is the row already there);
- e-mail: SMTP to the development mail server (aiosmtpd);
- SMS: HTTP to the development SMS gateway, 64 sends in flight (`stream`),
  receipts off;
both servers in a process of their own, so that their CPU is not counted.
Each stage prints its wall time and this process's CPU time (the database's
is apart, in its own processes), per message. Writes
bench/results/notifications_dispatch-<time>[-<label>].json; the last line is
one JSON object.

    .venv/bin/python bench/notifications_dispatch.py                     # 2,000 referrals
    .venv/bin/python bench/notifications_dispatch.py --parents 500 --label quick
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402

from kezek.db import ensure_database, make_engine, make_session_factory, unit_of_work  # noqa: E402
from kezek.events import new_event  # noqa: E402
from kezek.infra.postgres import BENCHMARK_SETTINGS, PostgresCluster  # noqa: E402
from kezek.migrations import upgrade  # noqa: E402
from services.notifications.channels import HttpSms, InAppInbox, SmtpEmail  # noqa: E402
from services.notifications.devservers import DevSmsGateway, DevSmtpServer  # noqa: E402
from services.notifications.domain import Channel  # noqa: E402
from services.notifications.jobs import Dispatcher  # noqa: E402
from services.notifications.models import Message, outbox  # noqa: E402
from services.notifications.runtime import NotificationSettings  # noqa: E402
from services.notifications.service import NotificationService  # noqa: E402
from distribution_day import daytime_zone  # noqa: E402
from system import BenchFolder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def received(i: int):
    return new_event("application.received.v1", f"a{i}", {
        "application_id": f"a{i}", "parent_id": f"p{i}", "locale": "ru", "email": f"p{i}@example.kg",
        "phone": f"+9967001{i:05d}", "child_name": "Айбек", "queue_date": "2026-01-10T04:00:00Z"}, source="bench")


def issued(i: int):
    return new_event("referral.issued.v1", f"r{i}", {
        "referral_id": f"r{i}", "application_id": f"a{i}", "kindergarten_id": "k1", "kindergarten_name": "Күн",
        "deadline": "2027-03-08T18:00:00Z", "needs_confirmation": False}, source="bench")


def consume(service: NotificationService, events: list) -> None:
    """What the idempotent consumer does with a batch (kezek/consumer.py)."""
    with unit_of_work(service.sessions) as s:
        fresh = outbox.claim_many(s, "notifications", [e.id for e in events])
        service.prepare(s, [e for e in events if e.id in fresh])
        for e in events:
            if e.id in fresh:
                service.handle(s, e)
        service.finish(s, events)


class Stage:
    def __init__(self, name: str, messages: int):
        self.name, self.messages = name, messages

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        print(f"{self.name}: {self.messages:,} messages in {self.wall:.2f} s, CPU {self.cpu:.2f} s "
              f"({1000 * self.cpu / self.messages:.2f} ms a message)", flush=True)

    def figures(self) -> dict:
        return {"messages": self.messages, "wall_s": round(self.wall, 2), "cpu_s": round(self.cpu, 2),
                "cpu_ms_per_message": round(1000 * self.cpu / self.messages, 3)}


def drain(service: NotificationService, dispatcher: Dispatcher, channel: Channel) -> None:
    """The dispatcher's loop until nothing of its channel waits."""
    waiting = sa.select(sa.func.count()).select_from(Message).where(
        Message.channel == channel.value, Message.status.in_(("queued", "sending")))
    if dispatcher.concurrency > 1:
        stop = threading.Event()
        loop = threading.Thread(target=dispatcher.stream, args=(stop, 3600.0))
        loop.start()
        while True:
            with service.sessions() as s:
                if s.scalar(waiting) == 0:
                    break
            time.sleep(0.05)
        stop.set()
        loop.join()
        return
    while dispatcher.run_once():
        pass


def serve() -> int:
    """The development mail server and SMS gateway, in a process of their
    own (in the benchmark's, their CPU would count as the dispatchers'):
    prints their addresses, counts what they took when stdin closes."""
    smtp, gateway = DevSmtpServer().start(), DevSmsGateway(receipts=False).start()
    print(json.dumps({"smtp": [smtp.host, smtp.port], "sms": gateway.url}), flush=True)
    sys.stdin.read()
    print(json.dumps({"email_received": len(smtp.messages), "sms_received": len(gateway.requests)}), flush=True)
    smtp.stop()
    gateway.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--serve"]:
        return serve()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parents", type=int, default=2000, help="parents, each with one referral")
    ap.add_argument("--batch", type=int, default=200, help="referral facts a consumer transaction")
    ap.add_argument("--channels", default="inapp,email,sms", help="the dispatchers to run, in this order")
    ap.add_argument("--label", default="")
    ap.add_argument("--dir", type=Path, help="keep the cluster's folder here")
    args = ap.parse_args(argv)
    n = args.parents
    defaults = NotificationSettings()
    folder = BenchFolder(args.dir, "kezek-notifications-")
    cluster = PostgresCluster(folder.path / "pg", durable=False, settings=BENCHMARK_SETTINGS)
    servers = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    addresses = json.loads(servers.stdout.readline())
    figures: dict = {"parents": n, "batch": args.batch, "at": datetime.now().isoformat(timespec="seconds")}
    try:
        cluster.start()
        url = cluster.url("notifications")
        ensure_database(url)
        upgrade("notifications", url)
        engine = make_engine(url)
        # a zone where it is day now: SMS would wait out the night (quiet hours)
        service = NotificationService(make_session_factory(engine), tz=ZoneInfo(daytime_zone()),
                                      cabinet_url="http://kezek/cabinet")
        for i in range(0, n, 200):
            consume(service, [received(j) for j in range(i, min(n, i + 200))])
        with service.sessions() as s:      # what the parents' received facts made is sent already
            s.execute(sa.update(Message).values(status="delivered"))
            s.commit()
        stages = []
        with Stage("making (consumer, referral.issued.v1)", 3 * n) as st:
            for i in range(0, n, args.batch):
                consume(service, [issued(j) for j in range(i, min(n, i + args.batch))])
        stages.append(st)
        transports = [(Channel.INAPP, InAppInbox(), 1), (Channel.EMAIL, SmtpEmail(*addresses["smtp"], "kezek@bench"), 1),
                      (Channel.SMS, HttpSms(addresses["sms"]), defaults.concurrency)]
        for channel, transport, concurrency in transports:
            if channel.value not in args.channels.split(","):
                continue
            dispatcher = Dispatcher(service, transport, batch=defaults.batch, concurrency=concurrency)
            with Stage(f"dispatching {channel.value}", n) as st:
                drain(service, dispatcher, channel)
            stages.append(st)
            transport.close()
        figures["stages"] = {st.name: st.figures() for st in stages}
        with service.sessions() as s:
            figures["statuses"] = dict(s.execute(sa.select(Message.status, sa.func.count()).group_by(Message.status)).all())
        engine.dispose()
    finally:
        servers.stdin.close()
        figures.update(json.loads(servers.stdout.readline() or "{}"))
        servers.wait(30)
        cluster.stop()
        folder.close()
    RESULTS.mkdir(exist_ok=True)
    name = f"notifications_dispatch-{time.strftime('%Y%m%d-%H%M%S')}{'-' + args.label if args.label else ''}.json"
    (RESULTS / name).write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(figures, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
