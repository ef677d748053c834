"""Chaos: the whole system under load while a random part is killed with -9
every few seconds; then, once it has settled, the rules' invariants.

    .venv/bin/python bench/chaos.py --minutes 10

It starts Kezek as `kezek run --postgres` starts it (PostgreSQL, one Kafka
broker, the Temporal dev server, the five services, KEZEK_RUN_RELAYS relays,
KEZEK_RUN_CONSUMERS_PER_SERVICE consumer processes per service and
KEZEK_RUN_WORKERS workers: --relays, --consumers, --workers), with a mail
server and an SMS gateway of its own on loopback, then for --minutes:

- parents register children through the gateway's JSON API as the mobile
  app does, each from an address of its own (draft, child, parent, the
  e-mail code read from the mail server, submit, the activation link, a
  password, a bearer token); a fifth of them claim the extraordinary right;
- once a minute the old portal's export of a few children with live
  referrals whose deadlines fall within the run is moved in with
  `kezek import` (its referral workflows resume and must expire on time);
- the district publishes a place every few seconds (the queue's API, as an
  administrator at the console);
- a caseworker confirms the extraordinary right on the verification
  service's pages (a certificate with its scan, then the decision);
- kindergartens record enrolments (an update of the referral's workflow:
  no kindergarten page exists yet) and parents cancel referrals in their
  cabinet (the gateway);

and every --kill-every seconds a part chosen at random among those that
serve (a service, a relay, a consumer, a worker, the broker, Temporal,
PostgreSQL) is killed with SIGKILL by its pid. `kezek run` starts it again;
the time from the kill until it serves again is its recovery.

Then it waits for quiescence (every killed part serving, every outbox
drained, every consumer group caught up, every workflow started, every
allocation request and message handled), checks the invariants (each is
defined in bench/README.md) and prints one JSON line last.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from kezek.client import SyncServiceClient, UpstreamError  # noqa: E402
from kezek.demo import ADMIN  # noqa: E402
from kezek.health import heartbeat_path, kafka_check, read_heartbeat, temporal_check  # noqa: E402
from kezek.infra.procs import free_port  # noqa: E402
from kezek.settings import SERVICES, Settings  # noqa: E402
from kezek.trust import ServiceKeys  # noqa: E402
from services.queue.store.invariants import POOL_BOOKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDERGARTENS = [f"chaos-kg-{i}" for i in range(1, 7)]
LANGUAGES = ("ky", "ru")
COHORTS = (2022, 2023)
DISTRICT = "41711210000000"         # where the registered parents live (the caseworker's district)
ADDRESS = {"region": "41711000000000", "district": DISTRICT, "settlement": "41711000000001",
           "street": "улица Киевская", "house": "12"}
PASSWORD = "a long enough password"
STAFF_LOGIN, STAFF_PASSWORD = "chaos-caseworker", "caseworker password 2026"
KINDS = ("service", "relay", "consumer", "worker", "broker", "temporal", "postgres")
LIVE = {"awaiting_confirmation", "awaiting_enrolment"}   # workflows/rules.LIVE_STATES
DEADLINE_GRACE = 60.0               # a deadline this long past, the referral must have ended
SCAN = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def midday_zone() -> str:
    """A time zone where it is about noon now: the notifications service
    holds SMS at night, and the run should not depend on the hour."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}"


class Transient(Exception):
    """Worth asking again: no answer, a 5xx, a 429."""


# ------------------------------------------------------------------ the system

class System:
    """`kezek run --postgres` in a folder of its own, on free ports."""

    def __init__(self, folder: Path, args, smtp_port: int, sms_url: str):
        self.folder = folder
        self.state = folder / "state"
        self.ports = {s: free_port() for s in SERVICES}
        self.temporal, self.kafka, self.pg = f"127.0.0.1:{free_port(span=2)}", f"127.0.0.1:{free_port(span=2)}", free_port()
        self.env = dict(
            os.environ, KEZEK_STATE_DIR=str(self.state), KEZEK_TEMPORAL_ADDRESS=self.temporal,
            KEZEK_TEMPORAL_UI_PORT=str(free_port()), KEZEK_KAFKA_BOOTSTRAP=self.kafka,
            KEZEK_POSTGRES_PORT=str(self.pg), KEZEK_LOG_LEVEL="WARNING", KEZEK_KAFKA_PARTITIONS=str(args.partitions),
            KEZEK_RUN_RELAYS=str(args.relays), KEZEK_RUN_CONSUMERS_PER_SERVICE=str(args.consumers),
            KEZEK_RUN_WORKERS=str(args.workers), KEZEK_SMTP_PORT=str(smtp_port), KEZEK_SMS_GATEWAY_URL=sms_url,
            KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT="smtp", KEZEK_NOTIFICATIONS_SMS_TRANSPORT="http",
            # "test": kezek run starts no development mailbox; this benchmark has its own.
            KEZEK_NOTIFICATIONS_TIMEZONE=midday_zone(), KEZEK_ENV="test",
            **{f"KEZEK_{s.upper()}_PORT": str(p) for s, p in self.ports.items()})
        self.env.pop("KEZEK_DATABASE_URL", None)
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.pg}/kezek"
        self.settings = Settings(_env_file=None, database_url=self.database_url, state_dir=self.state,
                                 kafka_bootstrap=self.kafka, temporal_address=self.temporal,
                                 **{f"{s}_port": p for s, p in self.ports.items()})
        self.proc: subprocess.Popen | None = None
        self.engines: dict[str, sa.Engine] = {}

    def start(self) -> None:
        self.out = open(self.folder / "run.out", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "kezek.cli", "run", "--postgres", "--no-demo"],
                                     env=self.env, cwd=self.folder, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while "Kezek is running" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"kezek run did not start:\n{self.output()[-3000:]}")
            time.sleep(1)

    def output(self) -> str:
        return (self.folder / "run.out").read_text(errors="replace")

    def run_json(self) -> dict:
        for _ in range(20):
            try:
                return json.loads((self.state / "run.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.1)
        return {"servers": {}, "parts": {}}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def db(self, service: str) -> sa.Engine:
        if service not in self.engines:
            self.engines[service] = sa.create_engine(self.settings.database_url_for(service), pool_pre_ping=True,
                                                     connect_args={"connect_timeout": 5})
        return self.engines[service]

    def rows(self, service: str, query: str, **params) -> list:
        with self.db(service).connect() as conn:
            return list(conn.execute(sa.text(query), params))

    def kezek(self, *args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(self.env, KEZEK_DATABASE_URL=self.database_url)
        return subprocess.run([sys.executable, "-m", "kezek.cli", *args], env=env, cwd=self.folder, input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        if self.proc is not None and self.proc.poll() is None:
            self.kezek("stop", timeout=200)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------- the parts

@dataclass
class Kill:
    kind: str
    name: str
    pid: int
    at: float
    recovered: float | None = None


def kind_of(name: str, info: dict | None) -> str:
    if info is None:
        return {"kafka": "broker"}.get(name, name)
    return info["kind"]


class Chaos:
    """Picks a serving part at random, kills it by pid, and times its recovery."""

    def __init__(self, system: System, rnd: random.Random):
        self.system = system
        self.rnd = rnd
        self.kills: list[Kill] = []
        self.recovering: dict[str, Kill] = {}
        self.lock = threading.Lock()

    def pids(self) -> dict[str, tuple[str, int | None]]:
        """name -> (kind, pid) of every server and part."""
        d = self.system.run_json()
        out = {name: (kind_of(name, None), info.get("pid")) for name, info in d.get("servers", {}).items()}
        out.update({name: (info["kind"], info.get("pid")) for name, info in d.get("parts", {}).items()})
        return out

    def serving(self, name: str, kind: str, pid: int | None, killed_pid: int | None = None) -> bool:
        """The part answers again (as a new process, when it was killed)."""
        if pid is None or pid == killed_pid:
            return False
        s = self.system
        try:
            if kind == "broker":
                kafka_check(s.kafka, timeout_ms=2000)()
            elif kind == "temporal":
                temporal_check(s.temporal, timeout=2)()
            elif kind == "postgres":
                with s.db("queue").connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            elif kind == "service":
                return httpx.get(f"{s.url(name)}/ready", timeout=3).status_code == 200
            else:
                beat = read_heartbeat(heartbeat_path(s.state, name))
                return bool(beat) and beat.get("pid") == pid and beat.get("status") == "ok" \
                    and time.time() - beat.get("time", 0) < 15
        except Exception:
            return False
        return True

    def kill_one(self) -> Kill | None:
        """A part drawn uniformly among those running that are not still
        recovering from an earlier kill."""
        with self.lock:
            busy = set(self.recovering)
        candidates = [(name, kind, pid) for name, (kind, pid) in self.pids().items()
                      if pid is not None and name not in busy]
        self.rnd.shuffle(candidates)
        for name, kind, pid in candidates:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kill = Kill(kind, name, pid, time.monotonic())
            with self.lock:
                self.kills.append(kill)
                self.recovering[name] = kill
            threading.Thread(target=self.watch, args=(kill,), daemon=True).start()
            return kill
        return None

    def watch(self, kill: Kill, timeout: float = 900) -> None:
        while time.monotonic() - kill.at < timeout:
            kind, pid = self.pids().get(kill.name, (kill.kind, None))
            if self.serving(kill.name, kill.kind, pid, killed_pid=kill.pid):
                kill.recovered = time.monotonic()
                break
            time.sleep(0.5)
        with self.lock:
            self.recovering.pop(kill.name, None)

    def run(self, until: float, every: tuple[float, float], stop: threading.Event) -> None:
        while not stop.is_set() and time.monotonic() < until:
            stop.wait(self.rnd.uniform(*every))
            if stop.is_set() or time.monotonic() >= until:
                break
            kill = self.kill_one()
            if kill is not None:
                say(f"killed {kill.name} ({kill.kind}, pid {kill.pid}); {len(self.kills)} kills")

    def all_recovered(self) -> bool:
        with self.lock:
            return not self.recovering


# -------------------------------------------------------------------- the mail

class Mailbox:
    """What the system's mail server received, by recipient."""

    def __init__(self, smtp):
        self.smtp = smtp

    def texts(self, address: str) -> list[str]:
        out = []
        for message in list(self.smtp.messages):
            if message["To"] != address:
                continue
            body = message.get_body(("plain", "html"))
            out.append(body.get_content() if body else "")
        return out

    def newest(self, address: str, pattern: str, after: int = 0) -> str | None:
        for text in reversed(self.texts(address)[after:]):
            m = re.search(pattern, text)
            if m:
                return m.group(1)
        return None


# ---------------------------------------------------------------- the workload

@dataclass
class Child:
    application_id: str
    cohort: int
    language: str
    preferences: list[str]
    category: str
    source: str                       # gateway | import
    email: str = ""
    bearer: str | None = None
    ip: str = ""


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n


class Workload:
    def __init__(self, system: System, mailbox: Mailbox, rnd: random.Random, until: float, stop: threading.Event):
        self.system = system
        self.mail = mailbox
        self.rnd = rnd
        self.until = until
        self.stop = stop
        self.children: list[Child] = []
        self.lock = threading.Lock()
        self.tally = Tally()
        self.serial = 0
        self.imported_deadlines: dict[str, datetime] = {}
        self.admin = SyncServiceClient(system.url("queue"), keys=ServiceKeys.from_settings(Settings(_env_file=None)),
                                       caller="cli", audience="queue", timeout=30)

    # -- helpers ----------------------------------------------------------
    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.until

    def next_serial(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial

    def retry(self, fn, what: str, give_up_after: float = 180.0):
        """Asks again while the answer is transient (a part is down)."""
        started = time.monotonic()
        pause = 0.5
        while True:
            try:
                return fn()
            except (Transient, httpx.HTTPError) as exc:
                self.tally.add("retries")
                if time.monotonic() - started > give_up_after or self.stop.is_set():
                    raise RuntimeError(f"{what}: gave up after {give_up_after:.0f} s ({exc!r})") from exc
                time.sleep(pause)
                pause = min(pause * 1.5, 5)

    @staticmethod
    def answer(r: httpx.Response, *ok: int):
        if r.status_code in ok:
            return r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        if r.status_code >= 500 or r.status_code == 429:
            raise Transient(f"{r.request.method} {r.request.url.path}: {r.status_code}")
        raise ValueError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")

    def queue(self, method: str, path: str, **kw):
        def call():
            try:
                return self.admin.call(method, f"/api/v1{path}", actor=ADMIN, **kw)
            except UpstreamError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise Transient(str(exc)) from exc
                raise
        return self.retry(call, f"queue {method} {path}")

    # -- setup ------------------------------------------------------------
    def setup(self) -> None:
        for kg in KINDERGARTENS:
            self.queue("PUT", f"/kindergartens/{kg}", json={
                "name": f"Балдар бакчасы {kg}", "district": "Bishkek/Leninsky", "address": "ул. Токтогула, 1",
                "lat": 42.87, "lon": 74.59, "languages": list(LANGUAGES)})
        r = self.system.kezek("staff-add", STAFF_LOGIN, "--name", "Айгүл Caseworker", "--role", "caseworker",
                              "--district", DISTRICT, "--password-stdin", stdin=STAFF_PASSWORD + "\n")
        if r.returncode != 0:
            raise SystemExit(f"staff-add failed: {r.stdout}{r.stderr}")

    # -- parents ----------------------------------------------------------
    def parents(self, index: int) -> None:
        while self.running():
            try:
                self.register()
            except Exception as exc:
                if self.stop.is_set():
                    break                # cut short by the end of the run, not failed
                self.tally.add("registrations_failed")
                say(f"a registration failed: {exc!r}"[:300])

    def register(self) -> None:
        n = self.next_serial()
        ip = f"127.0.{1 + n // 250}.{1 + n % 250}"
        http = httpx.Client(base_url=self.system.url("gateway"), timeout=30,
                            transport=httpx.HTTPTransport(local_address=ip))
        try:
            self._register(http, n, ip)
        finally:
            http.close()

    def _register(self, http: httpx.Client, n: int, ip: str) -> None:
        cohort = self.rnd.choice(COHORTS)
        born = date(cohort, 1, 1) + timedelta(days=self.rnd.randrange(330))
        sex = self.rnd.choice("12")
        pin = f"{sex}{born:%d%m%Y}{(n * 7919 + 13) % 100000:05d}"
        category = "extraordinary" if self.rnd.random() < 0.2 else "general"
        language = self.rnd.choice(LANGUAGES)
        prefs = self.rnd.sample(KINDERGARTENS, self.rnd.choice((1, 2, 3)))
        email = f"parent{n}-{uuid.uuid4().hex[:6]}@chaos.example.kg"

        def call(method, path, ok, **kw):
            return self.retry(lambda: self.answer(http.request(method, f"/api/v1{path}", **kw), *ok),
                              f"{method} {path}")

        draft = call("POST", "/drafts", (201,), json={"locale": "ru"})["draft"]
        call("PUT", f"/drafts/{draft}/child", (200,), json={"pin": pin, "surname": "Асанов", "name": "Айбек"})
        call("PUT", f"/drafts/{draft}/parent", (200,), json={
            "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": f"1120319{90 + n % 10}{n % 100000:05d}"[:14],
            "document_type": "id_card", "document_number": f"ID{n:07d}", "document_issued_on": "2020-05-01",
            "address": ADDRESS, "phone": f"+996555{n % 1000000:06d}", "email": email})
        self.verify_email(http, call, draft, email)
        submitted = self.submit(call, http, draft, category, language, prefs)
        application_id = submitted["application_id"]
        child = Child(application_id, cohort, language, prefs, category, "gateway", email=email, ip=ip)
        with self.lock:
            self.children.append(child)
        self.tally.add("registrations")
        token = self.wait_mail(email, r"token=([\w\-.~%]+)", "the activation link", timeout=300)
        try:
            call("POST", "/activation", (200,), json={"token": token, "password": PASSWORD})
        except ValueError:
            self.tally.add("activations_refused")   # done before its answer was lost: the login tells
        child.bearer = call("POST", "/sessions", (201,), json={"login": email, "password": PASSWORD})["token"]
        self.tally.add("accounts_activated")

    def ask_code(self, http: httpx.Client, draft: str) -> None:
        r = http.post(f"/api/v1/drafts/{draft}/email-code", json={"locale": "ru"})
        if r.status_code == 202:
            return
        try:
            codes = {e.get("code") for e in r.json().get("errors") or []}
        except (ValueError, AttributeError):
            codes = set()
        if "code_resend_too_soon" in codes:
            return                  # asked before the answer was lost: that code is on its way
        if "code_too_many_sends" in codes:
            raise RuntimeError(f"too many codes asked for draft {draft}")
        self.answer(r, 202)

    def verify_email(self, http: httpx.Client, call, draft: str, email: str) -> None:
        """Get code, read it from the mail, enter it; a code that does not
        come within 90 s (a part is down) is asked for again."""
        for attempt in range(8):
            seen = len(self.mail.texts(email))
            self.retry(lambda: self.ask_code(http, draft), "get code")
            try:
                code = self.wait_mail(email, r"\b(\d{6})\b", "the e-mail code", timeout=90, after=seen)
            except TimeoutError:
                self.tally.add("codes_asked_again")
                continue
            try:
                call("POST", f"/drafts/{draft}/email-code/verify", (200,), json={"code": code})
                return
            except ValueError:
                self.tally.add("codes_refused")   # a newer code came meanwhile: take that one
                continue
        raise RuntimeError(f"the e-mail code for {email} never worked")

    def submit(self, call, http: httpx.Client, draft: str, category: str, language: str, prefs: list[str]) -> dict:
        try:
            return call("POST", f"/drafts/{draft}/submit", (201,),
                        json={"category": category, "language": language, "preferences": prefs, "agreement": True})
        except ValueError:
            # Submitted before the answer was lost: the draft names the application.
            found = self.answer(http.get(f"/api/v1/drafts/{draft}"), 200)
            if found and found.get("submitted"):
                return {"application_id": found["submitted"]}
            raise

    def wait_mail(self, email: str, pattern: str, what: str, timeout: float, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            found = self.mail.newest(email, pattern, after)
            if found:
                return found
            time.sleep(0.5)
        raise TimeoutError(f"{what} for {email} did not come within {timeout:.0f} s")

    # -- the import -------------------------------------------------------
    def imports(self, every: float, end: float) -> None:
        batch = 0
        while self.running():
            batch += 1
            try:
                self.import_batch(batch, end)
            except Exception as exc:
                self.tally.add("imports_failed")
                say(f"an import failed: {exc!r}"[:300])
            self.stop.wait(every)

    def import_batch(self, batch: int, end: float) -> None:
        """A few children of the old portal: two waiting, three with a live
        referral whose deadline falls 4-7 minutes ahead (before the run ends:
        an import waits while PostgreSQL is down, and refuses a referral whose
        deadline has passed)."""
        now = datetime.now(UTC)
        latest = now + timedelta(seconds=max(0.0, end - time.monotonic() - DEADLINE_GRACE))
        if latest - now < timedelta(seconds=240):
            return
        ex = {"source": "balalyk", "country": "KG", "kindergartens": [
            {"id": kg, "name": f"Балдар бакчасы {kg}", "district": "Bishkek/Leninsky", "address": "ул. Токтогула, 1",
             "languages": list(LANGUAGES)} for kg in KINDERGARTENS],
            "places": [], "children": [], "parents": [], "applications": [], "referrals": []}
        made = []
        for i in range(5):
            n = self.next_serial()
            cohort = self.rnd.choice(COHORTS)
            born = date(cohort, 1, 1) + timedelta(days=self.rnd.randrange(330))
            cid, app_id = f"chaos-c{n}", f"chaos-imp-{batch}-{i}-{n}"
            language = self.rnd.choice(LANGUAGES)
            prefs = self.rnd.sample(KINDERGARTENS, 2)
            ex["children"].append({"id": cid, "pin": f"1{born:%d%m%Y}{(n * 7919 + 13) % 100000:05d}",
                                   "surname": "Осмонов", "name": "Нурсултан", "patronymic": "",
                                   "birth_date": born.isoformat()})
            ex["parents"].append({"id": f"chaos-p{n}", "child_id": cid, "role": "father", "surname": "Осмонов",
                                  "name": "Бакыт", "pin": f"10101198{n % 10}{n % 100000:05d}",
                                  "phone": f"+996700{n % 1000000:06d}", "email": f"imported{n}@chaos.example.kg"})
            referred = i >= 2
            queued_at = datetime(cohort, 6, 1, 9, tzinfo=UTC) + timedelta(days=self.rnd.randrange(300))
            ex["applications"].append({"id": app_id, "child_id": cid, "parent_id": f"chaos-p{n}",
                                       "category": "general", "queue_date": queued_at.isoformat(),
                                       "language": language, "preferences": prefs,
                                       "status": "referred" if referred else "queued"})
            if referred:
                deadline = min(latest, now + timedelta(seconds=self.rnd.uniform(240, 420)))
                ex["referrals"].append({
                    "id": f"chaos-r{n}", "application_id": app_id, "kindergarten": prefs[0], "cohort": str(cohort),
                    "language": language, "category": "general", "state": "awaiting_enrolment",
                    "issued_at": (now - timedelta(days=2)).isoformat(), "deadline": deadline.isoformat(),
                    "needs_confirmation": "false"})
                self.imported_deadlines[app_id] = deadline
            made.append(Child(app_id, cohort, language, prefs, "general", "import"))
        path = self.system.folder / f"import-{batch}.json"
        path.write_text(json.dumps(ex, ensure_ascii=False))
        started = time.monotonic()
        while True:
            r = self.system.kezek("import", str(path), "--json", timeout=600)
            if r.returncode == 0:
                report = json.loads(r.stdout.strip().splitlines()[-1])
                refused = report["counts"].get("referrals", {}).get("refused", 0)
                if refused:       # a deadline passed while PostgreSQL was down: the import refuses it
                    self.tally.add("imported_referrals_refused", refused)
                break
            self.tally.add("import_retries")
            if time.monotonic() - started > 300 or self.stop.is_set():
                raise RuntimeError(f"kezek import failed: {(r.stdout + r.stderr)[-500:]}")
            time.sleep(3)   # idempotent: what went in is skipped the next time
        with self.lock:
            self.children.extend(made)
        self.tally.add("imported_children", len(made))

    # -- the district -----------------------------------------------------
    def district(self, every: float) -> None:
        while self.running():
            self.stop.wait(self.rnd.uniform(every * 0.5, every * 1.5))
            with self.lock:
                waiting = [c for c in self.children if c.source == "gateway"]
            if not waiting:
                continue
            c = self.rnd.choice(waiting)
            try:
                self.queue("POST", f"/kindergartens/{self.rnd.choice(c.preferences)}/places",
                           json={"cohort": c.cohort, "language": c.language, "count": 1})
                self.tally.add("places_published")
            except Exception as exc:
                self.tally.add("publications_failed")
                say(f"a publication failed: {exc!r}"[:300])

    # -- the caseworker ---------------------------------------------------
    def caseworker(self, every: float) -> None:
        http = httpx.Client(base_url=self.system.url("verification"), timeout=30, follow_redirects=False)
        signed_in = False
        while self.running():
            self.stop.wait(every)
            try:
                if not signed_in:
                    self.retry(lambda: self.sign_in(http), "caseworker sign-in")
                    signed_in = True
                page = self.retry(lambda: self.page(http, "/worklist"), "the worklist")
                for referral_id in dict.fromkeys(re.findall(r'href="/cases/([^"/?#]+)"', page)):
                    if not self.running():
                        break
                    self.confirm(http, referral_id)
            except PermissionError:
                signed_in = False
            except Exception as exc:
                self.tally.add("confirmations_failed")
                say(f"a confirmation failed: {exc!r}"[:300])
        http.close()

    def sign_in(self, http: httpx.Client) -> None:
        r = http.post("/login", data={"login": STAFF_LOGIN, "password": STAFF_PASSWORD, "next": "/worklist"})
        if r.status_code != 303:
            self.answer(r, 303)

    def page(self, http: httpx.Client, path: str) -> str:
        r = http.get(path)
        if r.status_code == 303 and "/login" in r.headers.get("location", ""):
            raise PermissionError("signed out")
        self.answer(r, 200)
        return r.text

    def confirm(self, http: httpx.Client, referral_id: str) -> None:
        """The case page; a certificate with its scan when none is in date;
        then the decision, with the form's nonce (asked again, one act)."""
        case = self.retry(lambda: self.page(http, f"/cases/{referral_id}"), "a case")
        confirm_form = f'action="/cases/{referral_id}/confirm"'
        if confirm_form not in case:
            return                       # closed meanwhile: nothing to decide
        if 'aria-describedby="why-confirm"' in case:
            csrf = re.search(r'name="csrf" value="([^"]+)"', case).group(1)

            def record():
                r = http.post(f"/cases/{referral_id}/certificate", data={
                    "csrf": csrf, "organisation": "В/ч 12345", "number": f"C-{referral_id}",
                    "issued_on": date.today().isoformat()},
                    files={"scan": ("certificate.pdf", SCAN, "application/pdf")})
                return self.answer(r, 303)
            self.retry(record, "a certificate")
            case = self.retry(lambda: self.page(http, f"/cases/{referral_id}"), "a case")
            if 'aria-describedby="why-confirm"' in case or confirm_form not in case:
                return
        form = case.split(confirm_form, 1)[1]
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        nonce = re.search(r'name="nonce" value="([^"]+)"', form).group(1)

        def decide():
            r = http.post(f"/cases/{referral_id}/confirm", data={"csrf": csrf, "nonce": nonce})
            if r.status_code == 422:
                return False             # the rules refused it (the referral ended meanwhile)
            self.answer(r, 303)
            return True
        if self.retry(decide, "a confirmation"):
            self.tally.add("confirmations")

    # -- kindergartens and parents on referrals ---------------------------
    def live_referral(self, child: Child) -> dict | None:
        try:
            entry = self.queue("GET", f"/queue-entries/{child.application_id}")
        except UpstreamError as exc:
            if exc.status == 404:
                return None              # not in the queue yet (its event is on its way)
            raise
        ref = (entry or {}).get("referral")
        return ref if ref and ref.get("status") == "live" else None

    def kindergartens(self, every: float) -> None:
        from workflows import contracts as c

        while self.running():
            self.stop.wait(self.rnd.uniform(every * 0.5, every * 1.5))
            with self.lock:
                children = [x for x in self.children if x.source == "gateway"]
            self.rnd.shuffle(children)
            try:
                for child in children[:15]:
                    ref = self.live_referral(child)
                    if ref and ref["state"] == "awaiting_enrolment":
                        done = self.retry(lambda: asyncio.run(self.update(
                            ref["id"], c.ENROL, c.RecordEnrolment(actor=f"kindergarten:{ref['kindergarten']}"))),
                            "an enrolment")
                        if done:
                            self.tally.add("enrolments")
                        break
            except Exception as exc:
                self.tally.add("enrolments_failed")
                say(f"an enrolment failed: {exc!r}"[:300])

    async def update(self, referral_id: int, name: str, act) -> bool:
        from temporalio.client import WorkflowUpdateFailedError
        from temporalio.service import RPCError, RPCStatusCode

        from workflows import contracts as c
        from workflows.worker import connect

        try:
            client = await asyncio.wait_for(connect(self.system.temporal), 10)
            handle = client.get_workflow_handle(c.workflow_id(str(referral_id)))
            await asyncio.wait_for(handle.execute_update(name, act, id=f"{name}-{referral_id}",
                                                         result_type=c.ActResult), 30)
            return True
        except WorkflowUpdateFailedError:
            return False                 # the rules refused it (the referral ended meanwhile)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in str(exc):
                return False             # the referral's workflow has ended
            raise Transient(repr(exc)) from exc
        except Exception as exc:
            raise Transient(repr(exc)) from exc

    def cancellations(self, every: float) -> None:
        while self.running():
            self.stop.wait(self.rnd.uniform(every * 0.5, every * 1.5))
            with self.lock:
                children = [x for x in self.children if x.source == "gateway" and x.bearer]
            self.rnd.shuffle(children)
            try:
                for child in children[:15]:
                    ref = self.live_referral(child)
                    if ref is None:
                        continue
                    http = httpx.Client(base_url=self.system.url("gateway"), timeout=30,
                                        transport=httpx.HTTPTransport(local_address=child.ip),
                                        headers={"Authorization": f"Bearer {child.bearer}"})
                    try:
                        def cancel():
                            r = http.post(f"/api/v1/me/referrals/{ref['id']}/cancel")
                            if r.status_code in (404, 409):
                                return False      # not cancellable now (ended, or not yet in the cabinet)
                            self.answer(r, 200)
                            return True
                        if self.retry(cancel, "a cancellation"):
                            self.tally.add("cancellations")
                            break
                    finally:
                        http.close()
            except Exception as exc:
                self.tally.add("cancellations_failed")
                say(f"a cancellation failed: {exc!r}"[:300])


# ------------------------------------------------------------------ quiescence

def pending_work(system: System) -> dict[str, int]:
    """What is still on its way; all zero when the system is quiet."""
    from kezek.lags import consumer_lags

    out: dict[str, int] = {}
    for service in SERVICES:
        out[f"unsent:{service}"] = system.rows(service, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0]
    out["unsent:public"] = system.rows("gateway", "SELECT count(*) FROM public_outbox WHERE sent_at IS NULL")[0][0]
    out["workflows_not_started"] = system.rows(
        "queue", "SELECT count(*) FROM referrals WHERE workflow_started_at IS NULL")[0][0]
    out["allocation_requests"] = system.rows(
        "queue", "SELECT count(*) FROM allocation_requests WHERE done_at IS NULL")[0][0]
    out["messages_waiting"] = system.rows(
        "notifications", "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')")[0][0]
    lags = consumer_lags(system.kafka, system.settings.kafka_topic_prefix)
    out.update({f"lag:{g}": v["lag"] for g, v in lags.items()})
    return out


def wait_quiet(system: System, chaos: Chaos, timeout: float) -> tuple[float, dict]:
    started = time.monotonic()
    last: dict = {}
    quiet_since = None
    while time.monotonic() - started < timeout:
        try:
            last = pending_work(system) if chaos.all_recovered() else {"recovering": len(chaos.recovering)}
        except Exception as exc:
            last = {"error": repr(exc)[:200]}
        if all(v == 0 for v in last.values() if isinstance(v, int)) and "error" not in last:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 10:     # quiet twice, 10 s apart
                return time.monotonic() - started, last
        else:
            quiet_since = None
        time.sleep(2)
    return time.monotonic() - started, last


# ------------------------------------------------------------------ invariants

def topic_event_ids(system: System, topics: list[str]) -> dict[str, set[str]]:
    """Every event id on each topic, read from the beginning."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=system.kafka, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=5000)
    out: dict[str, set[str]] = {}
    try:
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            ids: set[str] = set()
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                for records in consumer.poll(timeout_ms=2000).values():
                    for record in records:
                        try:
                            ids.add(json.loads(record.value)["id"])
                        except (ValueError, KeyError, TypeError):
                            pass
            out[topic] = ids
    finally:
        consumer.close()
    return out


ONCE_PER_REFERRAL = ("referral.issued.v1", "referral.imported.v1", "referral.cancelled.v1", "referral.enrolled.v1",
                     "referral.expired.v1", "referral.privilege_confirmed.v1", "referral.privilege_rejected.v1",
                     "referral.extended.v1")
ONCE_PER_APPLICATION = {"registration": ("application.submitted.v1", "application.received.v1"),
                        "queue": ("application.queued.v1",)}


def invariants(system: System, workload: Workload) -> dict:
    from kezek import wiring
    from kezek.commands.topics import all_topics

    s = system.settings
    out: dict = {}
    # lost_events: an outbox row that is not on its topic, or an event of a
    # topic that a consumer group reads and that the group has not recorded.
    events: list[tuple[str, str, str]] = []      # (event_id, type, topic)
    for service in SERVICES:
        for event_id, type_ in system.rows(service, "SELECT event_id, type FROM outbox"):
            events.append((event_id, type_, s.topic(type_.split(".", 1)[0])))
    public_topic = s.topic("public.v1")
    for (event_id, type_) in system.rows("gateway", "SELECT event_id, type FROM public_outbox"):
        events.append((event_id, type_, public_topic))
    on_topics = topic_event_ids(system, all_topics(s))
    not_published = [e for e in events if e[0] not in on_topics.get(e[2], set())]
    processed: dict[str, set[str]] = defaultdict(set)
    for service in SERVICES:
        for consumer, event_id in system.rows(service, "SELECT consumer, event_id FROM processed_events"):
            processed[consumer].add(event_id)
    not_consumed: dict[str, int] = {}
    groups = []
    for consumer in wiring.consumers(s):
        groups.append((consumer.name, set(consumer.topics), consumer.types))
        consumer.close()
    # The public stream's projector, a job of the gateway's consumer process.
    from services.gateway.public.projector import CONSUMER_NAME, INTERNAL_AGGREGATES
    groups.append((CONSUMER_NAME, {s.topic(a) for a in INTERNAL_AGGREGATES}, None))
    for name, topics, types in groups:
        expected = {i for i, t, topic in events if topic in topics and (types is None or t in types)}
        if expected - processed.get(name, set()):
            not_consumed[name] = len(expected - processed.get(name, set()))
    out["lost_events"] = len(not_published) + sum(not_consumed.values())
    out["lost_detail"] = {"not_on_topic": len(not_published), "not_consumed_by_group": not_consumed}
    out["events"] = len(events)

    # duplicate_effects: a fact that happens once per referral or per
    # application recorded twice (two different events for one effect).
    dup = 0
    in_list = ", ".join(f"'{t}'" for t in ONCE_PER_REFERRAL)
    dup += sum(n - 1 for (n,) in system.rows("queue", f"""
        SELECT count(*) FROM outbox WHERE type IN ({in_list}) GROUP BY subject, type HAVING count(*) > 1"""))
    for service, types in ONCE_PER_APPLICATION.items():
        in_list = ", ".join(f"'{t}'" for t in types)
        dup += sum(n - 1 for (n,) in system.rows(service, f"""
            SELECT count(*) FROM outbox WHERE type IN ({in_list}) GROUP BY subject, type HAVING count(*) > 1"""))
    # A decision or an audit of one act twice: the verification service's
    # accepted decisions per referral and action.
    dup += sum(n - 1 for (n,) in system.rows("verification", """
        SELECT count(*) FROM decisions WHERE outcome = 'accepted' GROUP BY referral_id, action HAVING count(*) > 1"""))
    out["duplicate_effects"] = dup

    # places_held_twice and the pools' books.
    pools = system.rows("queue", POOL_BOOKS)
    out["places_held_twice"] = sum(max(0, p.live + p.taken - p.published) for p in pools)
    out["pools_unbalanced"] = sum(1 for p in pools if p.free < 0 or p.free + p.held + p.enrolled != p.published
                                  or (p.held, p.enrolled) != (p.live, p.taken))
    out["places_published"] = sum(p.published for p in pools)
    # No child passed over: a free place of a pool while a waiting child of
    # its cohort and language lists the kindergarten.
    out["places_free_while_children_wait"] = system.rows("queue", """
        SELECT coalesce(sum(p.free), 0) FROM places p
         WHERE p.free > 0 AND p.for_category = '' AND EXISTS (
               SELECT 1 FROM applications a WHERE a.status = 'queued' AND a.cohort = p.cohort
                  AND a.language = p.language AND a.preferences @> ARRAY[p.kindergarten_id]::varchar[])""")[0][0] \
        if pools else 0

    # children_with_two_live_referrals: in the queue's books, and as running workflows.
    two = system.rows("queue", """SELECT application_id FROM referrals WHERE status = 'live'
                                   GROUP BY application_id HAVING count(*) > 1""")
    referrals = system.rows("queue", "SELECT id, application_id, status, deadline FROM referrals")
    states = asyncio.run(workflow_states(system))           # running workflows: referral id -> state
    running = {rid for rid, state in states.items() if state in LIVE}
    by_child: Counter = Counter()
    of_referral = {str(r.id): r.application_id for r in referrals}
    for rid in running:
        if rid in of_referral:
            by_child[of_referral[rid]] += 1
    out["children_with_two_live_referrals"] = len({a for (a,) in two} | {a for a, n in by_child.items() if n > 1})
    live = {str(r.id) for r in referrals if r.status == "live"}
    # A referral live in the queue's books whose workflow is not live, or the other way round.
    out["workflows_out_of_step"] = len(live ^ (running & set(of_referral)))
    out["referrals"] = len(referrals)
    out["referral_status"] = dict(Counter(r.status for r in referrals))

    # deadlines_missed: a referral whose deadline passed DEADLINE_GRACE ago
    # and that is still live (in the queue or as a running workflow).
    now = datetime.now(UTC)
    missed = [r for r in referrals if r.deadline.replace(tzinfo=r.deadline.tzinfo or UTC)
              < now - timedelta(seconds=DEADLINE_GRACE) and (r.status == "live" or str(r.id) in running)]
    out["deadlines_missed"] = len(missed)
    out["imported_referrals"], out["imported_referrals_expired"] = system.rows("queue", """
        SELECT count(*), count(*) FILTER (WHERE outcome = 'expired') FROM referrals
         WHERE external_id IS NOT NULL""")[0]

    # notifications_duplicated: one fact told twice to a parent: two messages
    # of one kind about one referral on one channel, or one e-mail (by its
    # Message-ID) delivered twice.
    told_twice = sum(n - 1 for (n,) in system.rows("notifications", """
        SELECT count(*) FROM messages WHERE referral_id IS NOT NULL
         GROUP BY kind, referral_id, channel HAVING count(*) > 1"""))
    mail_ids = Counter(m["Message-ID"] for m in list(workload.mail.smtp.messages) if m["Message-ID"])
    out["notifications_duplicated"] = told_twice + sum(n - 1 for n in mail_ids.values() if n > 1)
    out["notifications_detail"] = {"messages_of_one_fact_twice": told_twice,
                                   "emails_delivered_twice": sum(n - 1 for n in mail_ids.values() if n > 1),
                                   "emails": len(mail_ids)}
    return out


async def workflow_states(system: System) -> dict[str, str]:
    """Every running referral workflow's state, as it answers its query."""
    from workflows import contracts as c
    from workflows.worker import connect

    client = await connect(system.temporal)
    out = {}
    async for wf in client.list_workflows('ExecutionStatus="Running"'):
        if wf.id.startswith("referral-"):
            status = await client.get_workflow_handle(wf.id).query(c.STATUS, result_type=c.ReferralStatus)
            out[wf.id.removeprefix("referral-")] = status.state.value
    return out


def seconds(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "max": None, "n": 0}
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1), "n": len(values)}


# ------------------------------------------------------------------------ main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--kill-every", type=float, nargs=2, default=(4.0, 8.0), metavar=("MIN", "MAX"),
                   help="seconds between kills, drawn uniformly (default 4 8)")
    p.add_argument("--relays", type=int, default=2)
    p.add_argument("--consumers", type=int, default=2, help="consumer processes per service")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--parents", type=int, default=4, help="parents registering at once")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--quiet-timeout", type=float, default=900, help="seconds to wait for quiescence")
    p.add_argument("--keep", action="store_true", help="keep the folder (logs, databases) afterwards")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rnd = random.Random(seed)
    from services.notifications.devservers import DevSmsGateway, DevSmtpServer

    folder = Path(tempfile.mkdtemp(prefix="kezek-chaos-"))
    os.chmod(folder, 0o755)
    smtp = DevSmtpServer().start()
    sms = DevSmsGateway().start()
    system = System(folder, args, smtp.port, sms.url)
    load_start = os.getloadavg()
    result: dict = {"minutes": args.minutes, "seed": seed}
    stop = threading.Event()
    try:
        say(f"starting kezek run --postgres in {folder} (load {load_start[0]:.1f})")
        t0 = time.monotonic()
        system.start()
        say(f"up in {time.monotonic() - t0:.0f} s; setting up")
        until = time.monotonic() + args.minutes * 60
        workload = Workload(system, Mailbox(smtp), random.Random(rnd.random()), until, stop)
        workload.setup()
        chaos = Chaos(system, random.Random(rnd.random()))
        threads = [threading.Thread(target=workload.parents, args=(i,), daemon=True) for i in range(args.parents)]
        threads += [threading.Thread(target=workload.imports, args=(45, until), daemon=True),
                    threading.Thread(target=workload.district, args=(4,), daemon=True),
                    threading.Thread(target=workload.caseworker, args=(5,), daemon=True),
                    threading.Thread(target=workload.kindergartens, args=(8,), daemon=True),
                    threading.Thread(target=workload.cancellations, args=(10,), daemon=True)]
        for t in threads:
            t.start()
        say(f"workload and chaos for {args.minutes} minutes")
        chaos.run(until, tuple(args.kill_every), stop)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        say(f"chaos over: {len(chaos.kills)} kills; waiting for quiescence")
        # Every imported deadline must have passed by DEADLINE_GRACE before the check.
        last_deadline = max(workload.imported_deadlines.values(), default=datetime.now(UTC))
        quiet_seconds, pending = wait_quiet(system, chaos, args.quiet_timeout)
        wait = (last_deadline + timedelta(seconds=DEADLINE_GRACE) - datetime.now(UTC)).total_seconds()
        if wait > 0:
            time.sleep(wait)
            quiet_seconds, pending = wait_quiet(system, chaos, args.quiet_timeout)
        say(f"quiet after {quiet_seconds:.0f} s: {pending}")
        checks = invariants(system, workload)
        recoveries = [k.recovered - k.at for k in chaos.kills if k.recovered is not None]
        by_kind = {kind: seconds([k.recovered - k.at for k in chaos.kills if k.kind == kind and k.recovered])
                   for kind in KINDS}
        result.update({
            "kills": dict(Counter(k.kind for k in chaos.kills)), "kills_total": len(chaos.kills),
            "referrals": checks.pop("referrals"),
            "lost_events": checks.pop("lost_events"), "duplicate_effects": checks.pop("duplicate_effects"),
            "places_held_twice": checks.pop("places_held_twice"),
            "children_with_two_live_referrals": checks.pop("children_with_two_live_referrals"),
            "deadlines_missed": checks.pop("deadlines_missed"),
            "notifications_duplicated": checks.pop("notifications_duplicated"),
            "recovery_seconds": {**seconds(recoveries), "by_kind": by_kind},
            "unrecovered": [k.name for k in chaos.kills if k.recovered is None],
            "quiescence_seconds": round(quiet_seconds, 1), "still_pending": {k: v for k, v in pending.items() if v},
            "workload": dict(workload.tally.counts), **checks,
            "load_average": {"start": round(load_start[0], 1), "end": round(os.getloadavg()[0], 1)},
            "restarts": {n: i.get("restarts", 0) for g in ("servers", "parts")
                         for n, i in system.run_json().get(g, {}).items()},
        })
    finally:
        stop.set()
        say("stopping")
        try:
            system.stop()
        finally:
            smtp.stop()
            sms.stop()
            if args.keep:
                say(f"kept {folder}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
