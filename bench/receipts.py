"""SMS delivery receipts in a flood (issue 15): whether the notifications
API keeps answering its supervisor while the SMS provider posts a receipt
for every SMS of a distribution day. On the full-size day its `/health` went
unanswered for a minute and the supervisor killed it (bench/README.md).

The whole of Kezek runs as `kezek run --postgres` runs it (bench/system.py),
with the development SMS gateway (services/notifications/devservers.py) in
this process. `--messages` SMS are written straight into the notifications
database as sent (one statement a thousand), then sent to the gateway from a
process of their own (as the SMS dispatcher sends them on the day), 64 at a
time, as fast as it accepts them, each naming its message as `reference`
and the API's receipts route as `callback_url`: the gateway posts the signed
receipts as it does on the day, by its own mechanism, so a change to the
gateway shows here as a change to the API does. The system runs this
checkout's code (PYTHONPATH), whatever the venv was installed from.

Meanwhile a process of its own asks the API's `GET /health` every 0.25 s
with a 2 s timeout on a kept connection, as the supervisor does (in this
process, behind thousands of receipt threads and the GIL, it would measure
us); this process counts its threads (the gateway's) every 0.5 s and the
messages delivered. It ends when every message is delivered or at
`--timeout`.

Prints the time to the last receipt, receipts/s, the health check's
samples, failures, p50/p99/max and its longest stretch unanswered, the
bench's peak threads, the supervisor's restarts and the API's CPU; writes
bench/results/receipts-<time>[-<label>].json; the last line is one JSON object.

    .venv/bin/python bench/receipts.py                                 # 10,000 receipts
    .venv/bin/python bench/receipts.py --messages 2000 --label before  # a quick look
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from system import ROOT, BenchFolder, System  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RECEIPTS = "/api/v1/notifications/sms/receipts"


def say(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def probe(url: str) -> None:
    """`--probe URL`: the supervisor's health check, a line per sample (wall
    time, seconds or null, status or the error's name) until killed."""
    http = httpx.Client(timeout=2)
    while True:
        t = time.time()
        try:
            r = http.get(url)
            print(json.dumps([t, round(time.time() - t, 4), r.status_code]), flush=True)
        except httpx.HTTPError as exc:
            print(json.dumps([t, None, type(exc).__name__]), flush=True)
        time.sleep(max(0.0, 0.25 - (time.time() - t)))


def write_sent(engine: sa.Engine, ring, n: int) -> list[str]:
    """n "referral issued" SMS, sent and waiting for their receipts."""
    from services.notifications.models import Message

    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    rows = [dict(id=mid, source_event_id=str(uuid.uuid4()), source_event_type="referral.issued.v1",
                 kind="referral_issued", channel="sms", parent_id=f"bench-{i}", address=f"+996700{i:06d}",
                 address_hash=ring.lookup("address", f"+996700{i:06d}"), locale="ru",
                 body="Your child has a referral to a kindergarten.", urgent=False, status="sent", attempts=1,
                 created_at=now, sent_at=now, accepted_at=now, provider_ref=f"gw-{mid}")
            for i, mid in enumerate(ids)]
    with engine.begin() as c:
        for i in range(0, n, 1000):
            c.execute(Message.__table__.insert(), rows[i:i + 1000])
    return ids


def flood(gateway: str, callback: str, ids: list[str], senders: int) -> dict:
    """`--flood`: every SMS to the gateway, `senders` at a time on kept
    connections, each retried on an error; the figures as JSON on stdout.
    Plain http.client: httpx spent 6.5 ms of CPU a send, which set the pace."""
    url = urlsplit(gateway)
    todo, lock, refused = iter(ids), threading.Lock(), []

    def sender() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        while (mid := next(todo, None)) is not None:
            body = json.dumps({"to": "+996700000000", "text": "Your child has a referral.", "sender": "Kezek",
                               "reference": mid, "callback_url": callback}).encode()
            for _ in range(20):
                try:
                    conn.request("POST", url.path, body, {"Content-Type": "application/json", "Idempotency-Key": mid})
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        break
                except (OSError, http.client.HTTPException):
                    conn.close()
                time.sleep(0.5)
            else:
                with lock:
                    refused.append(mid)

    t = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"sent_s": round(time.monotonic() - t, 1), "refused": len(refused)}


def threads() -> int:
    return int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("Threads:")))


def health_figures(samples: list, since: float, until: float) -> dict:
    """The probe's samples between two wall times: failures, latencies of
    the answered ones, and the longest stretch from a failed sample to the
    next answered one."""
    taken = [s for s in samples if since <= s[0] <= until]
    answered = [s[1] is not None and s[2] == 200 for s in taken]
    ok = sorted(s[1] for s, a in zip(taken, answered) if a)
    failed = [s for s, a in zip(taken, answered) if not a]
    longest, began = 0.0, None
    for s, a in zip(taken, answered):
        if not a and began is None:
            began = s[0]
        elif a and began is not None:
            longest, began = max(longest, s[0] - began), None
    if began is not None:
        longest = max(longest, until - began)

    def q(p: float) -> float | None:
        return round(1000 * ok[min(len(ok) - 1, int(p * len(ok)))], 1) if ok else None
    return {"samples": len(taken), "failures": len(failed),
            "timeouts": sum(1 for s in failed if s[2] in ("ReadTimeout", "ConnectTimeout", "PoolTimeout")),
            "errors": {str(k): sum(1 for s in failed if s[2] == k) for k in sorted({str(s[2]) for s in failed})},
            "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(1000 * ok[-1], 1) if ok else None,
            "longest_unanswered_s": round(longest, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--senders", type=int, default=64, help="SMS sent to the gateway at once")
    ap.add_argument("--timeout", type=float, default=600, help="seconds after the first SMS")
    ap.add_argument("--dir", type=Path, default=None, help="the system's folder, kept (default: a temporary one)")
    ap.add_argument("--label", default="", help="appended to the results file's name (before, after ...)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--flood", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        return probe(args.probe) or 0
    if args.flood:
        gateway, callback, ids = args.flood
        print(json.dumps(flood(gateway, callback, Path(ids).read_text().split(), args.senders)))
        return 0

    from kezek.db import service_engine
    from services.notifications.devservers import DevSmsGateway

    folder = BenchFolder(args.dir, "kezek-receipts-")
    sms = DevSmsGateway(receipts=True).start()
    # The system's processes start in its folder: they run this checkout's code, as the benchmark does.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    kezek = System(folder.path / "kezek", sms_gateway_url=sms.url, env={"PYTHONPATH": path}, log=say)
    figures: dict = {"messages": args.messages, "senders": args.senders, "cpus": os.cpu_count()}
    prober = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # stop the system on the way out
    try:
        kezek.start()
        engine = service_engine(kezek.settings, "notifications")
        t = time.monotonic()
        ids = write_sent(engine, kezek.settings.sealing_keyring("notifications"), args.messages)
        say(f"{len(ids):,} SMS written as sent in {time.monotonic() - t:.1f} s")

        prober = subprocess.Popen([sys.executable, __file__, "--probe", f"{kezek.url('notifications')}/health"],
                                  stdout=open(folder.path / "health.jsonl", "w"))
        progress: list[tuple[float, int, int]] = []       # (s after the first SMS, delivered, threads)
        stop = threading.Event()

        def watch() -> None:
            with engine.connect() as c:
                while not stop.is_set():
                    n = c.execute(sa.text("SELECT count(*) FROM messages WHERE status = 'delivered'")).scalar()
                    c.commit()
                    progress.append((round(time.monotonic() - t0, 2), n, threads()))
                    if len(progress) % 20 == 0:
                        say(f"  t={progress[-1][0]:.0f}s delivered {n:,}, threads {progress[-1][2]}, "
                            f"load {os.getloadavg()[0]:.1f}")
                    stop.wait(0.5)

        def cpu_now() -> dict[str, float]:
            times = os.times()      # the senders' process counts once it has ended
            return {**kezek.cpu_seconds(), "bench (SMS gateway)": round(times[0] + times[1], 2),
                    "senders": round(times[2] + times[3], 2)}

        time.sleep(3)
        cpu0 = cpu_now()
        wall0, t0 = time.time(), time.monotonic()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        (folder.path / "ids.txt").write_text("\n".join(ids))
        figures.update(json.loads(subprocess.run(
            [sys.executable, __file__, "--senders", str(args.senders), "--flood", sms.url,
             f"{kezek.url('notifications')}{RECEIPTS}", str(folder.path / "ids.txt")],
            check=True, stdout=subprocess.PIPE, text=True).stdout))
        figures["accepted_per_s"] = round(args.messages / max(figures["sent_s"], 0.1), 1)
        say(f"the gateway accepted {len(sms.accepted):,} SMS in {figures['sent_s']} s")
        while time.monotonic() - t0 < args.timeout and not (progress and progress[-1][1] >= args.messages):
            time.sleep(0.5)
        stop.set()
        watcher.join()
        wall_end = time.time()
        cpu1 = cpu_now()
        prober.terminate()
        prober.wait()

        delivered = progress[-1][1]
        done_at = next((p[0] for p in progress if p[1] >= args.messages), None)
        peak = max(((b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(progress, progress[10:]) if b[0] > a[0]),
                   default=0.0)
        health = [json.loads(line) for line in (folder.path / "health.jsonl").read_text().splitlines() if line]
        cpu = {name: round(v - cpu0.get(name, 0) if v >= cpu0.get(name, 0) else v, 1) for name, v in cpu1.items()}
        figures.update({
            "complete": done_at is not None, "delivered": delivered, "all_delivered_s": done_at,
            "receipts_per_s": round(delivered / max(progress[-1][0], 0.5), 1) if done_at is None
            else round(args.messages / max(done_at, 0.5), 1),
            "receipts_per_s_peak_5s": round(peak, 1),
            "health": health_figures(health, wall0, wall_end),
            "health_at_rest": health_figures(health, wall0 - 3, wall0),
            "threads_peak": max(p[2] for p in progress), "threads_end": progress[-1][2],
            "restarts": kezek.restarts(), "notifications_api_cpu_s": cpu.get("notifications"),
            "cpu_s_by_process": dict(sorted(cpu.items(), key=lambda kv: -kv[1])[:8]),
            "load_end": round(os.getloadavg()[0], 1),
        })
        h = figures["health"]
        print(f"\n{args.messages:,} SMS through the development gateway, {args.senders} senders: accepted in "
              f"{figures['sent_s']} s ({figures['accepted_per_s']} SMS/s), {figures['refused']} refused", flush=True)
        print(f"all delivered: {f'{done_at} s' if done_at is not None else f'NO, {delivered:,} by the timeout'}; "
              f"{figures['receipts_per_s']} receipts/s (peak {figures['receipts_per_s_peak_5s']} over 5 s)",
              flush=True)
        print(f"GET /health every 0.25 s, 2 s timeout: {h['samples']} samples, {h['failures']} failed "
              f"({h['timeouts']} timeouts; {h['errors'] or 'no errors'}); p50 {h['p50_ms']} ms, p99 {h['p99_ms']} "
              f"ms, max {h['max_ms']} ms; longest unanswered {h['longest_unanswered_s']} s "
              f"(at rest: p50 {figures['health_at_rest']['p50_ms']} ms)", flush=True)
        print(f"threads in the bench process (gateway): peak {figures['threads_peak']}, "
              f"at the end {figures['threads_end']}", flush=True)
        print(f"supervisor's restarts: {figures['restarts'] or 'none'}; notifications API CPU "
              f"{figures['notifications_api_cpu_s']} s; CPU s by process: {figures['cpu_s_by_process']}",
              flush=True)
        RESULTS.mkdir(exist_ok=True)
        name = f"receipts-{time.strftime('%Y%m%d-%H%M%S')}{'-' + args.label if args.label else ''}.json"
        (RESULTS / name).write_text(json.dumps({"figures": figures, "progress": progress,
                                                "health": [[round(s[0] - wall0, 3), *s[1:]] for s in health]},
                                               indent=1))
        figures["results"] = f"bench/results/{name}"
    finally:
        if prober is not None and prober.poll() is None:
            prober.terminate()
        kezek.stop()
        sms.stop()
        folder.close()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
