"""`kezek status`: the health of every part and how far behind the backbone is.

- parts: the HTTP services' /ready (with what failed), the heartbeats of the
  relays, consumer processes and workers (age, failed checks, metrics
  ports), and, under `kezek run`, the pid and restarts of each part and of
  Kafka, Temporal and PostgreSQL from <state_dir>/run.json;
- lags: each outbox's unsent rows and the age of the oldest (per service,
  and the public stream's), and each consumer group's lag (events on its
  topics it has not committed).

Exits 0 when every part is well, 1 otherwise. `--json` prints one object."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import httpx

from kezek import connections, wiring
from kezek.health import STALE_AFTER_SECONDS, heartbeat_age, heartbeat_dir, read_heartbeat
from kezek.settings import Settings


def read_run(state: Path) -> dict:
    try:
        return json.loads((state / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def service_ready(settings: Settings, service: str) -> dict:
    try:
        r = httpx.get(f"{settings.url_of(service)}/ready", timeout=5)
    except httpx.HTTPError as exc:
        return {"well": False, "status": "no answer", "detail": exc.__class__.__name__}
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code == 200:
        return {"well": True, "status": "ready"}
    return {"well": False, "status": f"unavailable ({r.status_code})", "failed": body.get("failed", {})}


def heartbeat_state(state: Path, name: str) -> dict:
    report = read_heartbeat(heartbeat_dir(state) / f"{name}.json")
    age = heartbeat_age(report)
    if report is None or age is None:
        return {"well": False, "status": "no heartbeat"}
    failed = {k: v for k, v in (report.get("checks") or {}).items() if v != "ok"}
    dead = [k for k, v in (report.get("loops") or {}).items() if not v]
    well = age <= STALE_AFTER_SECONDS and report.get("status") == "ok"
    status = "ok" if well else ("stale" if age > STALE_AFTER_SECONDS else "failing")
    out = {"well": well, "status": status, "age_seconds": round(age, 1), "pid": report.get("pid")}
    if failed:
        out["failed"] = failed
    if dead:
        out["dead_loops"] = dead
    for port in ("metrics_port", "temporal_metrics_port"):
        if report.get(port):
            out[port] = report[port]
    return out


def parts(settings: Settings, state: Path, run: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if run:
        out["supervisor"] = {"kind": "supervisor", "pid": run.get("pid"), "well": _alive(run.get("pid"))}
        out["supervisor"]["status"] = "running" if out["supervisor"]["well"] else "gone"
        for name, info in (run.get("servers") or {}).items():
            up = _alive(info.get("pid"))
            out[name] = {"kind": "server", "pid": info.get("pid"), "restarts": info.get("restarts", 0),
                         "well": up, "status": "running" if up else "down"}
    recorded = run.get("parts") or {}
    services = [s for s in wiring.services_with_api() if not recorded or s in recorded]
    for service in services:
        out[service] = {"kind": "service", **service_ready(settings, service)}
    names = [n for n, info in recorded.items() if info.get("kind") != "service"] if recorded else sorted(
        p.stem for p in heartbeat_dir(state).glob("*.json"))
    for name in names:
        out[name] = {"kind": (recorded.get(name) or {}).get("kind", "background"), **heartbeat_state(state, name)}
    for name, info in recorded.items():
        if name in out:
            out[name].setdefault("pid", info.get("pid"))
            out[name]["restarts"] = info.get("restarts", 0)
            for port in ("metrics_port", "temporal_metrics_port"):
                if info.get(port):
                    out[name].setdefault(port, info[port])
    return out


def lags(settings: Settings) -> dict:
    import sqlalchemy as sa

    from kezek.db import make_engine
    from kezek.lags import consumer_lags, outbox_backlog, outbox_tables

    outboxes: dict[str, dict] = {}
    for service, _ in wiring.outboxes():
        url = settings.database_url_for(service)
        engine = make_engine(url, connect_args={"connect_timeout": 5}) if url.startswith("postgresql") \
            else make_engine(url)
        try:
            with engine.connect() as conn:
                for name, table in outbox_tables(service):
                    b = outbox_backlog(conn, table)
                    outboxes[name] = {"unsent": b.unsent, "oldest_seconds": round(b.oldest_seconds, 1)}
        except sa.exc.SQLAlchemyError as exc:
            outboxes[service] = {"error": repr(exc.orig if getattr(exc, "orig", None) else exc)[:200]}
        finally:
            engine.dispose()
    try:
        groups = consumer_lags(settings.kafka_bootstrap, settings.kafka_topic_prefix)
    except Exception as exc:   # Kafka down: say so, the rest still shows
        groups = {"error": repr(exc)[:200]}
    return {"outboxes": outboxes, "consumer_groups": groups}


def settings_of_run(run: dict) -> Settings:
    """The settings the parts of `kezek run` were given (it starts its own
    PostgreSQL and hands its URL to them, not to this shell)."""
    env = run.get("env") or {}
    overrides = {k.removeprefix("KEZEK_").lower(): v for k, v in env.items() if k.startswith("KEZEK_")}
    return Settings(**overrides)


def render(report: dict) -> str:
    lines = ["parts:"]
    for name, p in report["parts"].items():
        mark = "ok " if p["well"] else "BAD"
        extra = []
        for key in ("pid", "restarts", "age_seconds", "metrics_port", "temporal_metrics_port"):
            if p.get(key) is not None:
                extra.append(f"{key}={p[key]}")
        for key in ("failed", "dead_loops", "detail"):
            if p.get(key):
                extra.append(f"{key}={json.dumps(p[key], ensure_ascii=False)[:160]}")
        lines.append(f"  {mark} {name:<28} {p['kind']:<10} {p['status']:<18} {' '.join(extra)}")
    lines.append("outboxes (unsent, oldest):")
    for name, b in report["lags"]["outboxes"].items():
        lines.append(f"  {name:<28} " + (b["error"] if "error" in b else f"{b['unsent']:>8}  {b['oldest_seconds']} s"))
    lines.append("consumer groups (lag, members):")
    groups = report["lags"]["consumer_groups"]
    if "error" in groups:
        lines.append(f"  Kafka: {groups['error']}")
    else:
        for name, g in groups.items():
            lines.append(f"  {name:<28} {g['lag']:>8}  {g['members']} ({g['state']})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek status", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    state = Settings().state_dir.resolve()
    run = read_run(state)
    settings = settings_of_run(run)
    connections.configure(settings)
    report = {"parts": parts(settings, state, run), "lags": lags(settings)}
    report["well"] = all(p["well"] for p in report["parts"].values())
    print(json.dumps(report, ensure_ascii=False) if args.json else render(report))
    return 0 if report["well"] else 1
