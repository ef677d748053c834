"""A queue in a running Kezek (bench/system.py), built fast, and what a
benchmark reads of the system: shared by bench/gateway_load.py and
bench/distribution_day.py.

- `make_export` + `run_import`: a generated export of the old portal
  (importer.generate, no bad rows, every child waiting, no places or
  referrals) moved in with `kezek import`, the path a real queue takes
  (parents' accounts, queue entries, the children in the cabinets);
- `Watch.idle` / `settle`: every outbox sent, no position marks or
  allocation requests left, every consumer group at the end of its topics;
- `sign_in_parents`: real bearer tokens of parents from that queue (an
  activation link asked for, the password set with it, a session opened
  through the gateway's POST /api/v1/sessions, as the parents' app does);
- `built_queue`: the queue built once per size and seed: after the import
  and the wait, the system is stopped and its PostgreSQL cluster and
  Temporal's database are copied to var/bench-snapshots/<key>/ (the key:
  children, kindergartens, seed, and a digest of the migrations and the
  import path); a later run with the same key copies them into its own
  folder and starts on them (Kafka starts empty: every outbox was sent and
  every consumer had read to the end, the rest lives in the databases).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

from system import System

PASSWORD = "Distribution-day-2027"


def say(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------ the queue

def make_export(path: Path, children: int, kindergartens: int, seed: int) -> None:
    """A clean export of the old portal: every child waiting, no referral
    and no free place yet (the places come on the day)."""
    from importer.export import write_json
    from importer.generate import BISHKEK, generate

    export = generate(children, kindergartens, seed, now=datetime.now(BISHKEK), bad=False)
    export.rows["places"] = []
    export.rows["referrals"] = []
    for app in export["applications"]:
        app["status"] = "queued"
    write_json(export, path)


def run_import(kezek: System, export: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "kezek.cli", "import", str(export), "--json"], cwd=kezek.state.parent,
                       env=kezek.command_env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kezek import failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_and_import(kezek: System, base: Path, children: int, kindergartens: int, seed: int,
                     figures: dict) -> "Watch":
    """Starts the system and imports a generated export of the old portal
    into it (`kezek import`): the seconds of each in `figures` (start_s,
    import_s) with what was created (imported); the Watch of the system."""
    t = time.monotonic()
    kezek.start()
    figures["start_s"] = round(time.monotonic() - t, 1)
    watch = Watch(kezek)
    try:
        say(f"generating an export of {children:,} children, {kindergartens:,} kindergartens ...")
        export = base / "export.json"
        make_export(export, children, kindergartens, seed)
        say("kezek import ...")
        t = time.monotonic()
        report = run_import(kezek, export)
    except BaseException:
        watch.close()
        raise
    figures["import_s"] = round(time.monotonic() - t, 1)
    figures["imported"] = {k: v.get("created", 0) for k, v in report.get("counts", {}).items()
                           if isinstance(v, dict)}
    return watch


# ------------------------------------------------------------------ snapshots

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "var" / "bench-snapshots"
# What decides the built databases besides the size and the seed.
SHAPING = ("services/*/migrations/**/*.py", "importer/*.py", "services/queue/usecases/*.py",
           "services/registration/usecases/*.py", "bench/queue_data.py")
# What a snapshot keeps of a stopped system's folder (bench/system.py).
KEPT = ("postgres", "temporal")


def snapshot_key(children: int, kindergartens: int, seed: int) -> str:
    digest = hashlib.sha256()
    for pattern in SHAPING:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"{children}-{kindergartens}-{seed}-{digest.hexdigest()[:12]}"


def _copy(src: Path, dst: Path) -> None:
    """cp -a: owners and modes kept (PostgreSQL's folder belongs to its own
    user, 0700), logs and the server's pid file left behind. What `dst`
    held of those parts is replaced: a run kept with --dir and started
    again on a snapshot starts on the snapshot (cp -a into an existing
    folder put the snapshot inside it, and the run went on with the
    databases of the run before)."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in KEPT:
        if (dst / part).exists():
            shutil.rmtree(dst / part)
        subprocess.run(["cp", "-a", str(src / part), str(dst / part)], check=True)
        for junk in ("postmaster.pid", "server.log", "temporal.log"):
            (dst / part / junk).unlink(missing_ok=True)


def built_queue(kezek: System, children: int, kindergartens: int, seed: int, *, fresh: bool = False,
                keep: bool = True, snapshot: str | None = None) -> dict:
    """Starts `kezek` (not started yet) with a queue of `children`, idle:
    from the snapshot of this key if there is one (unless `fresh`), else
    built by `kezek import` and the wait after it, then (with `keep`) saved
    as the snapshot of this key. `snapshot` names a snapshot to start on
    whatever its key (a folder under var/bench-snapshots/): the one built
    before a change of the shaping code that left the databases as they
    were; it must exist and be of this size. What it did and how long it
    took."""
    key = snapshot or snapshot_key(children, kindergartens, seed)
    snap = SNAPSHOTS / key
    out: dict = {"snapshot": key}
    if snapshot is not None:
        built = snap / "built.json"
        if not built.exists():
            raise SystemExit(f"--snapshot {snapshot}: no snapshot in {snap}")
        size = json.loads(built.read_text())
        if (size["children"], size["kindergartens"], size["seed"]) != (children, kindergartens, seed):
            raise SystemExit(f"--snapshot {snapshot} holds {size['children']:,} children, {size['kindergartens']:,} "
                             f"kindergartens, seed {size['seed']}: pass those sizes")
        out["named"] = True
    if (snap / "built.json").exists() and not fresh:
        t = time.monotonic()
        _copy(snap, kezek.state)
        out["restore_s"] = round(time.monotonic() - t, 1)
        out["from_snapshot"] = json.loads((snap / "built.json").read_text())
        say(f"databases of {children:,} children restored from {snap} in {out['restore_s']} s "
            f"(built {out['from_snapshot']['built_at']}: import {out['from_snapshot']['import_s']} s, "
            f"settle {out['from_snapshot']['settle_s']} s)")
        kezek.start()
        watch = Watch(kezek)
        out["settle_s"] = round(settle(watch, 3600, "after the restore"), 1)
        watch.close()
        return out
    watch = start_and_import(kezek, kezek.state.parent, children, kindergartens, seed, out)
    say(f"imported in {out['import_s']} s: {out['imported']}; waiting for the system to take it in ...")
    out["settle_s"] = round(settle(watch, 7200, "after the import"), 1)
    say(f"idle after {out['settle_s']} s")
    watch.close()
    if keep:
        t = time.monotonic()
        kezek.stop()
        tmp = SNAPSHOTS / f".{key}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _copy(kezek.state, tmp)
        (tmp / "built.json").write_text(json.dumps({
            "built_at": datetime.now().isoformat(timespec="seconds"), "children": children,
            "kindergartens": kindergartens, "seed": seed, "import_s": out["import_s"],
            "settle_s": out["settle_s"], "imported": out["imported"], "load": load()}))
        shutil.rmtree(snap, ignore_errors=True)
        tmp.rename(snap)
        kezek.start()
        out["snapshot_saved_s"] = round(time.monotonic() - t, 1)
        say(f"snapshot saved to {snap} (stop, copy, start: {out['snapshot_saved_s']} s)")
        w = Watch(kezek)
        settle(w, 600, "after the restart")
        w.close()
    return out


def snapshot_options(ap: argparse.ArgumentParser) -> None:
    """The options of a benchmark that starts its system on a built queue:
    where the system's folder is kept, and the snapshot it starts on or
    saves (`built_queue_of`)."""
    ap.add_argument("--dir", type=Path, help="keep the system's folder here (default: a temporary one)")
    ap.add_argument("--fresh", action="store_true",
                    help="build the queue by kezek import even if a snapshot of this size and seed exists")
    ap.add_argument("--no-snapshot", action="store_true", help="do not save the built queue as a snapshot")
    ap.add_argument("--snapshot", metavar="KEY",
                    help="start on this snapshot (a folder of var/bench-snapshots/) whatever its key")


def built_queue_of(kezek: System, args: argparse.Namespace, kindergartens: int) -> dict:
    """`built_queue` as the options of `snapshot_options` (and the
    benchmark's --children and --seed) ask."""
    return built_queue(kezek, args.children, kindergartens, args.seed, fresh=args.fresh,
                       keep=not args.no_snapshot, snapshot=args.snapshot)


class Watch:
    """What the benchmark reads of the running system (its databases, Kafka)."""

    def __init__(self, kezek: System):
        from kezek.db import make_engine

        self.kezek = kezek
        self.engines = {s: make_engine(kezek.db_url(s), pool_size=2) for s in
                        ("queue", "registration", "verification", "notifications", "gateway")}
        self._admin = None
        self._consumer = None

    def scalar(self, service: str, sql: str, **params):
        with self.engines[service].connect() as c:
            return c.execute(sa.text(sql), params).scalar()

    def row(self, service: str, sql: str, **params):
        with self.engines[service].connect() as c:
            return c.execute(sa.text(sql), params).one()

    def unsent(self) -> dict[str, int]:
        return {s: self.scalar(s, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") for s in self.engines}

    def outbox_totals(self) -> dict[str, tuple[int, int]]:
        """(highest seq, unsent) of each outbox."""
        out = {}
        for s in self.engines:
            top, unsent = self.row(s, "SELECT coalesce(max(seq), 0), (SELECT count(*) FROM outbox "
                                      "WHERE sent_at IS NULL) FROM outbox")
            out[s] = (int(top), int(unsent))
        return out

    def kafka(self):
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.kezek.kafka, request_timeout_ms=20_000)
            self._consumer = KafkaConsumer(bootstrap_servers=self.kezek.kafka, request_timeout_ms=20_000)
        return self._admin, self._consumer

    def lags(self) -> dict[str, dict[str, int]]:
        """Per consumer group and topic: (events committed, events behind).
        Every partition of a topic a group has committed on counts, those it
        has not committed on yet as wholly behind (Kafka lists only the
        committed ones: a group that has read one partition of eight would
        seem to have nothing left)."""
        admin, consumer = self.kafka()
        out: dict[str, dict[str, int]] = {}
        groups = [g.get("group_id") if isinstance(g, dict) else g[0] for g in admin.list_groups()]
        committed_all = admin.list_group_offsets(groups) if groups else {}
        ends = self.ends({tp.topic for offsets in committed_all.values() for tp in offsets})
        for g, offsets in committed_all.items():
            at = {tp: max(om.offset, 0) for tp, om in offsets.items()}
            for topic in {tp.topic for tp in offsets}:
                slot = out.setdefault(g, {}).setdefault(topic, [0, 0])
                for tp, end in ends.items():
                    if tp.topic == topic:
                        slot[0] += at.get(tp, 0)
                        slot[1] += max(end - at.get(tp, 0), 0)
        return {g: {t: tuple(v) for t, v in topics.items()} for g, topics in out.items()}

    def ends(self, topics: set[str]) -> dict:
        """The end offset of every partition of `topics`."""
        from kafka import TopicPartition

        _admin, consumer = self.kafka()
        ends: dict = {}
        for topic in topics:
            # one topic at a time: a partition without a leader for a moment
            # (a topic just made) fails only its own topic's answer
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            try:
                ends.update(consumer.end_offsets(tps))
            except Exception:
                ends.update({tp: 1 << 62 for tp in tps})   # unknown: not idle
        return ends

    def behind_all(self, topic: str) -> tuple[int, int]:
        """(0, every event of `topic`): a group that has committed nothing on it."""
        return 0, sum(self.ends({topic}).values())

    def idle(self) -> tuple[bool, str]:
        unsent = self.unsent()
        if any(unsent.values()):
            return False, f"unsent {unsent}"
        marks = self.scalar("queue", "SELECT count(*) FROM position_changes")
        requests = self.scalar("queue", "SELECT count(*) FROM allocation_requests WHERE done_at IS NULL")
        if marks or requests:
            return False, f"queue: {marks} position marks, {requests} allocation requests"
        behind = {g: sum(v[1] for v in t.values()) for g, t in self.lags().items()}
        behind = {g: n for g, n in behind.items() if n}
        if behind:
            return False, f"consumers behind {behind}"
        return True, ""

    def reset_statements(self) -> None:
        """Counts the statements of every database from now (the system's
        PostgreSQL must load pg_stat_statements: STATEMENTS_SETTING)."""
        with self.engines["queue"].begin() as c:
            c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            c.execute(sa.text("SELECT pg_stat_statements_reset()"))

    def statements(self) -> dict[tuple[str, int], tuple[int, float, int, str]]:
        """{(database, query id): (calls, milliseconds executing, rows, text)}
        of every statement counted since `reset_statements`."""
        with self.engines["queue"].connect() as c:
            rows = c.execute(sa.text(
                "SELECT d.datname, s.queryid, s.calls, s.total_exec_time, s.rows, s.query "
                "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid")).all()
        return {(r.datname, r.queryid): (r.calls, r.total_exec_time, r.rows, r.query) for r in rows}

    def close(self) -> None:
        for e in self.engines.values():
            e.dispose()
        for c in (self._admin, self._consumer):
            if c is not None:
                c.close()


# What `kezek run` passes its PostgreSQL for Watch.statements to read.
STATEMENTS_SETTING = "shared_preload_libraries=pg_stat_statements"


def top_statements(before: dict, after: dict, n: int = 15) -> dict:
    """The `n` statements that took most of the database's time between two
    readings of Watch.statements, with their calls, rows and share of all.
    The time is the executor's wall time: on a busy machine it holds the
    waits for a core and for locks too, so it ranks the statements rather
    than measures their CPU."""
    spent = []
    for key, (calls, ms, rows, text) in after.items():
        calls0, ms0, rows0, _ = before.get(key, (0, 0.0, 0, ""))
        if calls > calls0:
            spent.append({"database": key[0], "calls": calls - calls0, "ms": round(ms - ms0, 1),
                          "rows": rows - rows0, "query": " ".join(text.split())[:1000]})
    spent.sort(key=lambda x: -x["ms"])
    total = sum(x["ms"] for x in spent) or 1.0
    return {"ms": round(total, 1), "statements": len(spent), "calls": sum(x["calls"] for x in spent),
            "top": [{**x, "share": round(x["ms"] / total, 3)} for x in spent[:n]]}


def settle(watch: Watch, timeout: float, what: str) -> float:
    t = time.monotonic()
    last = 0.0
    while True:
        ok, why = watch.idle()
        if ok:
            return time.monotonic() - t
        if time.monotonic() - t > timeout:
            raise TimeoutError(f"{what}: not idle after {timeout:.0f} s ({why})")
        if time.monotonic() - last > 30:
            say(f"  {what}: waiting, {why}")
            last = time.monotonic()
        time.sleep(2)


# ------------------------------------------------------------------ parents

def sign_in_parents(kezek: System, watch: Watch, n: int, seed: int) -> list[str]:
    """Bearer tokens of `n` parents of the queue, each from the gateway's
    POST /api/v1/sessions after its account was activated: the activation
    links asked for by registration's own use case (as the portal's "send me
    the link" does), read back from its outbox (sealed there, opened with
    the deployment's key), the passwords set with them."""
    if n <= 0:
        return []
    from kezek.outbox import payloads
    from services.registration import bootstrap
    from services.registration.domain import RegistrationRefused
    from services.registration.models import Account

    settings = kezek.settings
    reg = bootstrap.build(settings)
    sealer = reg.sealer
    kind = "account.activation_issued.v1"

    with reg.sessions() as session:            # e-mails are sealed at rest: read through the model
        emails = list(session.scalars(sa.select(Account.email).where(Account.password_hash.is_(None))
                                      .order_by(sa.func.md5(Account.id + str(seed))).limit(2 * n)))
    asked = []
    for email in emails:
        try:
            reg.resend_activation(email)       # an address the rules of today refuse is left out
        except RegistrationRefused:
            continue
        asked.append(email)
        if len(asked) == n:
            break
    emails = asked

    links = {}
    for p in payloads(reg.sessions.kw["bind"], kind):      # opened (sealed at rest), in order: the newest wins
        data = sealer.opened(kind, json.loads(p)["data"])
        links[data["email"]] = data["activation_url"].split("token=", 1)[1]
    tokens = []
    with httpx.Client(base_url=kezek.url("gateway"), timeout=60) as http:
        for i, email in enumerate(emails):
            if email not in links:             # no new link (one was sent a moment ago): left out
                continue
            reg.activate(links[email], PASSWORD)
            r = http.post("/api/v1/sessions", json={"login": email, "password": PASSWORD},
                          headers={"x-forwarded-for": f"10.200.{i >> 8 & 255}.{i & 255}"})
            r.raise_for_status()
            tokens.append(r.json()["token"])
    return tokens


def public_pools(watch: Watch, n: int = 200) -> list[tuple[str, int, str]]:
    """(kindergarten, cohort, language) of the busiest pools of the queue:
    the public queue pages visitors open."""
    with watch.engines["queue"].connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT preferences[1], cohort, language FROM applications WHERE status = 'queued' "
            "GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 1, 2, 3 LIMIT :n"), {"n": n})]
