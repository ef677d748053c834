"""Parents and visitors reading the portal, driven by locust (as a library,
in a process of its own: locust patches the standard library with gevent,
which the benchmark's own threads and databases must not meet).

    result = load.run(gateway_url, "me", spec, users=32, seconds=20)
    result["per_second"], result["p50_ms"], result["p99_ms"]

`spec` names who reads what: `tokens`, the bearer tokens of signed-in
parents (a request takes one at random: many families, each polling its own
cabinet, never one family hammering), and `pools`, (kindergarten, cohort,
language) of the public queue pages. Addresses come in X-Forwarded-For,
which the gateway believes from 127.0.0.1 when the benchmark starts it with
KEZEK_TRUSTED_PROXIES=127.0.0.1, as production believes its load balancer:
a user reading a family's cabinet (`me`, `cabinet`) keeps an address of its
own, as a family's app polling its cabinet does; each request of the public
queue page comes from one of `VISITORS` addresses at random, as the many
anonymous visitors of a public page read it (at 1,000 pages a second about
one page a minute each). The rate limits count each family and each visitor
as production counts them, and the public page is measured against its
cost, not against one address's limit.

Endpoints: `me` (GET /api/v1/me with a bearer), `cabinet` (GET /cabinet with
the session cookie, the page), `queue` (GET /queue/<kindergarten>?cohort=&
language=, the public queue page). Each user sends its next request when
the last one is answered (a closed loop: `users` is the concurrency).

`register` is the parent's whole application through the gateway's JSON
API: a draft, the child, the parent with address and contacts, "Get code",
the code read from the e-mail the system sent (the development mailbox's
file, `spec["mailbox"]`, which the locust process tails), the code entered,
the submission, for a child born in the cohort of one of `spec["pools"]`
who asks for its kindergarten in its language. A user does not sit idle
while its code travels through the outbox, Kafka, notifications and the
mail server: it starts the next application (up to `REGISTER_IN_FLIGHT`
drafts in flight) and submits each as soon as its code is there, so
`users` stays the number of concurrent HTTP clients. Its figures are per
submission: submissions per second, and p50/p99 of the time from the new
draft to the answered submission; `request_p50_ms`/`request_p99_ms` are
those of the single requests.

Run as a script it is the locust process: it reads the spec, runs until
`--seconds` have passed or `--stop-file` exists, and writes every request
(start, seconds, status) to `--out`.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENDPOINTS = ("me", "cabinet", "queue", "register")
# Anonymous visitors of the public pages, one address each: at 1,000 pages a
# second each reads about one a minute, far under the 300 a minute an address may.
VISITORS = 1 << 16
REGISTER_IN_FLIGHT = 4      # drafts a registering client has waiting for their code
# A parent's address in the reference data every development system loads (Bishkek, Leninsky district).
ADDRESS = {"region": "41711000000000", "district": "41711210000000", "settlement": "41711000000001",
           "street": "улица Киевская", "house": "12"}


# ------------------------------------------------------------------ the caller's side

def start(host: str, endpoint: str, spec: dict, *, users: int, seconds: float, warmup: float = 2.0,
          folder: Path | None = None) -> "Load":
    return Load(host, endpoint, spec, users=users, seconds=seconds, warmup=warmup, folder=folder)


def run(host: str, endpoint: str, spec: dict, *, users: int, seconds: float, warmup: float = 2.0) -> dict:
    """Runs one load to its end; its figures (see `figures`)."""
    load = start(host, endpoint, spec, users=users, seconds=seconds, warmup=warmup)
    return load.wait()


class Load:
    """One locust process, started at once."""

    def __init__(self, host: str, endpoint: str, spec: dict, *, users: int, seconds: float, warmup: float,
                 folder: Path | None):
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint: one of {ENDPOINTS}")
        # A folder of its own unless given one, removed once its figures are
        # read (kept when locust wrote nothing: its log says why).
        self.own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="kezek-load-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "spec.json").write_text(json.dumps(spec))
        self.out = self.folder / f"{endpoint}-{users}.json"
        self.stop_file = self.folder / f"{endpoint}-{users}.stop"
        self.stop_file.unlink(missing_ok=True)
        self.warmup = warmup
        self.users = users
        self.log = open(self.folder / f"{endpoint}-{users}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--host", host, "--endpoint", endpoint, "--spec", str(self.folder / "spec.json"),
             "--users", str(users), "--seconds", str(seconds + warmup), "--out", str(self.out),
             "--stop-file", str(self.stop_file)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> dict:
        self.stop_file.touch()
        return self.wait()

    def wait(self, timeout: float | None = None) -> dict:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()           # by its pid: ours
                self.proc.wait()
            self.log.close()
        if not self.out.exists():
            raise RuntimeError(f"locust wrote nothing; see {self.log.name}")
        data = json.loads(self.out.read_text())
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.samples = data["samples"]
        # Every HTTP request sent, warm-up included: the samples, or for a
        # registration (whose samples are whole applications) its requests.
        self.http_requests = len(data.get("requests") or self.samples)
        t0 = data["started"] + self.warmup
        out = figures([s for s in self.samples if s[0] >= t0], max(data["ended"] - t0, 1e-9), self.users)
        if data.get("requests"):
            times = sorted(r[1] for r in data["requests"] if r[0] >= t0)
            out.update(request_p50_ms=round(percentile(times, 0.50) * 1000, 1),
                       request_p99_ms=round(percentile(times, 0.99) * 1000, 1),
                       request_errors=sum(1 for r in data["requests"] if r[0] >= t0 and (r[2] >= 400 or r[2] == 0)))
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def figures(samples: list, seconds: float, users: int) -> dict:
    """req/s (answered, any status) and ok/s (answered 200, or 201 for a
    submission: a refusal such as 429 is quick and would pass for speed),
    p50/p99 in ms, errors (the others)."""
    times = sorted(s[1] for s in samples)
    ok = sum(1 for s in samples if s[2] in (200, 201))
    return {"users": users, "requests": len(samples), "seconds": round(seconds, 1),
            "per_second": round(len(samples) / seconds, 1) if seconds else None,
            "ok_per_second": round(ok / seconds, 1) if seconds else None,
            "p50_ms": round(percentile(times, 0.50) * 1000, 1) if times else None,
            "p99_ms": round(percentile(times, 0.99) * 1000, 1) if times else None,
            "mean_ms": round(statistics.fmean(times) * 1000, 1) if times else None,
            "errors": len(samples) - ok,
            "statuses": {str(k): v for k, v in sorted(_count(s[2] for s in samples).items())}}


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# ------------------------------------------------------------------ the locust process

def visitor_address(rnd) -> str:
    """One of VISITORS addresses (10.200.0.0 upwards) at random: an anonymous
    visitor of the public pages."""
    n = rnd.randrange(VISITORS)
    return f"10.{200 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


def _locust_main(argv: list[str]) -> int:
    import argparse

    import gevent
    from locust import FastHttpUser, constant, task
    from locust.env import Environment

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--endpoint", required=True, choices=ENDPOINTS)
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stop-file", type=Path)
    args = ap.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    tokens, pools = spec.get("tokens") or [], spec.get("pools") or []
    import random

    rnd = random.Random(os.getpid())
    counter = iter(range(1, 1 << 30))

    class Reader(FastHttpUser):
        host = args.host
        wait_time = constant(0)
        network_timeout = 60.0
        connection_timeout = 60.0

        def on_start(self):
            n = next(counter)
            self.address = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

        @task
        def read(self):
            # A signed-in family polls from its own address; the public pages
            # are read by many visitors, each a few pages a minute: every
            # anonymous request comes from one of VISITORS addresses.
            address = self.address if args.endpoint != "queue" else visitor_address(rnd)
            headers = {"x-forwarded-for": address, "accept-language": "ru"}
            if args.endpoint == "me":
                headers["authorization"] = f"Bearer {rnd.choice(tokens)}"
                path, name = "/api/v1/me", "/api/v1/me"
            elif args.endpoint == "cabinet":
                headers["cookie"] = f"kezek_session={rnd.choice(tokens)}"
                path, name = "/cabinet", "/cabinet"
            else:
                kg, cohort, language = rnd.choice(pools)
                path, name = f"/queue/{kg}?cohort={cohort}&language={language}", "/queue/{kindergarten}"
            with self.client.get(path, headers=headers, name=name, catch_response=True,
                                 allow_redirects=False) as r:
                if r.status_code != 200:
                    r.failure(f"status {r.status_code}")

    samples: list[tuple[float, float, int]] = []
    requests: list[tuple[float, float, int]] = []     # register: the single requests of the flows

    def on_request(request_type, name, response_time, response_length, response=None, exception=None,
                   start_time=None, **_):
        status = getattr(response, "status_code", 0) if exception is None or response is not None else 0
        sample = (start_time or time.time() - response_time / 1000, response_time / 1000, status or 0)
        (samples if request_type == "FLOW" or args.endpoint != "register" else requests).append(sample)

    users = [Reader]
    if args.endpoint == "register":
        users = [_registrant(args.host, FastHttpUser, task, constant, gevent, spec, counter, rnd)]
    env = Environment(user_classes=users, host=args.host)
    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    started = time.time()
    runner.start(args.users, spawn_rate=max(args.users, 1))
    while time.time() - started < args.seconds:
        if args.stop_file is not None and args.stop_file.exists():
            break
        gevent.sleep(0.2)
    ended = time.time()
    runner.quit()
    args.out.write_text(json.dumps({"started": started, "ended": ended, "samples": samples, "requests": requests}))
    return 0


def _registrant(host: str, FastHttpUser, task, constant, gevent, spec: dict, counter, rnd):
    """The locust user of `register` (see the module's text)."""
    import collections
    import re
    from datetime import date, timedelta
    from types import SimpleNamespace

    pools, mailbox = spec["pools"], Path(spec["mailbox"])
    codes: dict[str, str] = {}
    code = re.compile(r"(?<![\d/=?&.-])(\d{6})(?![\d/])")

    def tail_mailbox():
        """Every e-mail code the mail server received, by address."""
        offset = 0
        while True:
            if mailbox.exists():
                with mailbox.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                end = chunk.rfind(b"\n") + 1
                offset += end
                for line in chunk[:end].splitlines():
                    letter = json.loads(line)
                    found = code.search(letter.get("body", "")) if letter.get("channel") == "email" else None
                    if found:
                        codes[letter["to"]] = found.group(1)
            gevent.sleep(0.05)

    gevent.spawn(tail_mailbox)

    class Registrant(FastHttpUser):
        wait_time = constant(0)
        network_timeout = 60.0
        connection_timeout = 60.0

        def on_start(self):
            self.waiting: collections.deque = collections.deque()   # (draft, e-mail, address, started, pool)

        def call(self, method: str, path: str, name: str, ok: int, address: str, body: dict | None = None):
            headers = {"x-forwarded-for": address, "accept-language": "ru"}
            with self.client.request(method, path, json=body, headers=headers, name=name,
                                     catch_response=True) as r:
                if r.status_code != ok:
                    r.failure(f"{name}: {r.status_code} {r.text[:200]}")
                    return None
                return r.json() if r.text else {}

        @task
        def step(self):
            ready = next((w for w in self.waiting if w[1] in codes), None)
            if ready is not None:
                self.waiting.remove(ready)
                self.finish(*ready)
            elif len(self.waiting) < REGISTER_IN_FLIGHT:
                self.begin()
            else:
                gevent.sleep(0.02)

        def begin(self):
            n = next(counter) + 100_000 * (os.getpid() % 100)
            address = f"10.{100 + (n >> 16) % 100}.{(n >> 8) & 255}.{n & 255}"
            kg, cohort, language = rnd.choice(pools)
            born = date(cohort, 1, 1) + timedelta(days=rnd.randrange(330))
            email = f"bench-{os.getpid()}-{n}@registration.example.kg"
            started = time.time()
            draft = self.call("POST", "/api/v1/drafts", "/drafts", 201, address, {"locale": "ru"})
            if draft is None:
                return
            d = draft["draft"]
            steps = [
                ("PUT", f"/api/v1/drafts/{d}/child", "/drafts/{d}/child", 200,
                 {"pin": f"{rnd.choice('12')}{born:%d%m%Y}{50_000 + n % 50_000:05d}", "surname": "Асанов",
                  "name": "Айбек"}),
                ("PUT", f"/api/v1/drafts/{d}/parent", "/drafts/{d}/parent", 200,
                 {"role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": f"21203199{n % 1_000_000:06d}",
                  "document_type": "id_card", "document_number": f"ID{n:07d}", "document_issued_on": "2020-05-01",
                  "address": ADDRESS,
                  "phone": f"+996555{n % 1_000_000:06d}", "email": email}),
                ("POST", f"/api/v1/drafts/{d}/email-code", "/drafts/{d}/email-code", 202, {"locale": "ru"}),
            ]
            for method, path, name, ok, body in steps:
                if self.call(method, path, name, ok, address, body) is None:
                    return
            self.waiting.append((d, email, address, started, (kg, cohort, language)))

        def finish(self, d, email, address, started, pool):
            kg, _cohort, language = pool
            if self.call("POST", f"/api/v1/drafts/{d}/email-code/verify", "/drafts/{d}/email-code/verify", 200,
                         address, {"code": codes[email]}) is None:
                return
            done = self.call("POST", f"/api/v1/drafts/{d}/submit", "/drafts/{d}/submit", 201, address,
                             {"category": "general", "language": language, "preferences": [kg], "agreement": True})
            self.environment.events.request.fire(
                request_type="FLOW", name="registration", response_time=(time.time() - started) * 1000,
                response_length=0, response=SimpleNamespace(status_code=201 if done is not None else 0),
                exception=None if done is not None else RuntimeError("refused"),
                start_time=started, context={})

    Registrant.host = host
    return Registrant


if __name__ == "__main__":
    sys.exit(_locust_main(sys.argv[1:]))
