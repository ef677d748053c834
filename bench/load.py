"""Parents and visitors reading the portal, driven by locust (as a library,
in a process of its own: locust patches the standard library with gevent,
which the benchmark's own threads and databases must not meet).

    result = load.run(gateway_url, "me", spec, users=32, seconds=20)
    result["per_second"], result["p50_ms"], result["p99_ms"]

`spec` names who reads what: `tokens`, the bearer tokens of signed-in
parents (a request takes one at random: many families, each polling its own
cabinet, never one family hammering), and `pools`, (kindergarten, cohort,
language) of the public queue pages. Every user comes from an address of
its own (X-Forwarded-For, which the gateway believes from 127.0.0.1 when the
benchmark starts it with KEZEK_TRUSTED_PROXIES=127.0.0.1, as production
believes its load balancer): the rate limits count each family and each
visitor as production counts them.

Endpoints: `me` (GET /api/v1/me with a bearer), `cabinet` (GET /cabinet with
the session cookie, the page), `queue` (GET /queue/<kindergarten>?cohort=&
language=, the public queue page). Each user sends its next request when
the last one is answered (a closed loop: `users` is the concurrency).

Run as a script it is the locust process: it reads the spec, runs until
`--seconds` have passed or `--stop-file` exists, and writes every request
(start, seconds, status) to `--out`.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENDPOINTS = ("me", "cabinet", "queue")


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
        self.samples = data["samples"]
        t0 = data["started"] + self.warmup
        return figures([s for s in self.samples if s[0] >= t0], max(data["ended"] - t0, 1e-9), self.users)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def figures(samples: list, seconds: float, users: int) -> dict:
    """req/s (answered, any status), p50/p99 in ms, errors (not 200)."""
    times = sorted(s[1] for s in samples)
    return {"users": users, "requests": len(samples), "seconds": round(seconds, 1),
            "per_second": round(len(samples) / seconds, 1) if seconds else None,
            "p50_ms": round(percentile(times, 0.50) * 1000, 1) if times else None,
            "p99_ms": round(percentile(times, 0.99) * 1000, 1) if times else None,
            "mean_ms": round(statistics.fmean(times) * 1000, 1) if times else None,
            "errors": sum(1 for s in samples if s[2] != 200),
            "statuses": {str(k): v for k, v in sorted(_count(s[2] for s in samples).items())}}


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# ------------------------------------------------------------------ the locust process

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
            headers = {"x-forwarded-for": self.address, "accept-language": "ru"}
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

    def on_request(request_type, name, response_time, response_length, response=None, exception=None,
                   start_time=None, **_):
        status = getattr(response, "status_code", 0) if exception is None or response is not None else 0
        samples.append((start_time or time.time() - response_time / 1000, response_time / 1000, status or 0))

    env = Environment(user_classes=[Reader], host=args.host)
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
    args.out.write_text(json.dumps({"started": started, "ended": ended, "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(_locust_main(sys.argv[1:]))
