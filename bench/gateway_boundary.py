"""What the trust boundary costs a parent's request (issue 13), measured:

- one shared rate-limit hit (kezek/ratelimit.py, one upsert) on SQLite and
  on PostgreSQL (a cluster of its own), from one thread and from 8;
- signing and verifying one service token (kezek/trust.py);
- GET /api/v1/me through the gateway in one process (tests/fakes Stack:
  the real gateway and registration on SQLite, the queue's and the inbox's
  stand-ins), with the session lookup cached and the rate limits on.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/gateway_boundary.py [--requests 400]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from kezek.ratelimit import RateLimits  # noqa: E402


def limiter_rate(url: str, threads: int, hits: int) -> float:
    """Hits a second, each key under its limit (every hit writes)."""
    from kezek.db import make_engine

    engine = make_engine(url, **({"pool_size": threads} if url.startswith("postgresql") else {}))
    metadata = sa.MetaData()
    table = RateLimits.table_in(metadata)
    metadata.create_all(engine)
    limits = RateLimits(engine, table)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: limits.hit(f"parent:{i % 500}", 10**9), range(hits)))
    seconds = time.perf_counter() - started
    engine.dispose()
    return round(hits / seconds)


def token_costs(n: int = 2000) -> dict:
    from kezek.trust import ServiceKeys, parent_principal

    keys = ServiceKeys.derived("bench")
    who = parent_principal("p1")
    t = time.perf_counter()
    tokens = [keys.sign("gateway", "registration", who) for _ in range(n)]
    signed = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for token in tokens:
        keys.verify(token, "registration")
    verified = (time.perf_counter() - t) / n
    return {"sign_us": round(signed * 1e6, 1), "verify_us": round(verified * 1e6, 1)}


def cabinet_reads(state: Path, requests: int) -> dict:
    from fastapi.testclient import TestClient

    from tests.fakes.gateway import Stack
    from tests.unit.test_gateway_api import register

    stack = Stack(state, rate_limit_per_minute=10**9)
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        token, _ = register(c, stack)
        h = {"authorization": f"Bearer {token}"}
        c.get("/api/v1/me", headers=h)
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            assert c.get("/api/v1/me", headers=h).status_code == 200
            times.append(time.perf_counter() - t)
    times.sort()
    return {"requests": requests, "per_second": round(requests / sum(times)),
            "p50_ms": round(statistics.median(times) * 1000, 2), "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--hits", type=int, default=4000)
    args = p.parse_args()
    from kezek.infra.postgres import PostgresCluster

    result: dict = {"load": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="kezek-bench-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)      # the cluster may run as the postgres user
        sqlite = f"sqlite:///{base / 'limits.db'}"
        result["limit_hits_per_s_sqlite"] = {n: limiter_rate(sqlite, n, args.hits) for n in (1, 8)}
        cluster = PostgresCluster(base / "pg", durable=False).start()
        try:
            url = cluster.url("limits")
            from kezek.db import ensure_database

            ensure_database(url)
            result["limit_hits_per_s_postgresql"] = {n: limiter_rate(url, n, args.hits) for n in (1, 8)}
        finally:
            cluster.stop()
        result["service_token"] = token_costs()
        (base / "stack").mkdir()
        result["get_me_in_process"] = cabinet_reads(base / "stack", args.requests)
    for key, value in result.items():
        print(f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
