"""Stand-ins for the services behind the gateway, speaking their HTTP
contracts (services/queue/api.py, services/notifications/api.py): a small
queue with kindergartens, positions and referrals, the referral workflows'
updates (their rules from workflows/rules.py), and a notifications inbox.
Used by the gateway's tests; the real services replace them by URL."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kezek import calendar as kcal
from kezek.categories import EXTRAORDINARY, GENERAL, PRIVILEGED, VOUCHER
from kezek.outbox import payloads
from workflows import rules

KINDERGARTENS = [
    {"id": "bsk-12", "name": "Балдар бакчасы №12 «Солнышко»", "address": "Киевская, 45", "district": "41711210000000",
     "lat": 42.8752, "lon": 74.6012, "languages": ["ru", "ky"]},
    {"id": "bsk-7", "name": "Балдар бакчасы №7 «Айгерим»", "address": "Токтогула, 120", "district": "41711210000000",
     "lat": 42.8695, "lon": 74.5950, "languages": ["ky"]},
    {"id": "bsk-31", "name": "Балдар бакчасы №31 «Ромашка»", "address": "Исанова, 60", "district": "41711220000000",
     "lat": 42.8801, "lon": 74.6077, "languages": ["ru"]},
    {"id": "bsk-55", "name": "Балдар бакчасы №55 «Бал-Бөбөк»", "address": "Ахунбаева, 95", "district": "41711230000000",
     "lat": 42.8405, "lon": 74.6050, "languages": ["ky", "ru"]},
    {"id": "osh-3", "name": "Балдар бакчасы №3 (Ош)", "address": "Ленина, 200", "district": "41721200000000",
     "lat": 40.5300, "lon": 72.7970, "languages": ["ky", "uz"]},
]


class FakeQueue:
    """Enough of the queue service's API (services/queue/api.py) for the
    cabinet: queue entries from application.submitted.v1, positions with
    their explanation, and the live referral of an entry. Also records a
    position history, for the chart."""

    def __init__(self, categories: tuple[str, ...] = (EXTRAORDINARY, PRIVILEGED, GENERAL, VOUCHER),
                 country: str = "KG"):
        self.categories = categories
        self.confirmed = {EXTRAORDINARY}       # the categories a caseworker confirms (the policy's)
        self.calendar = kcal.calendar(country)
        self.entries: dict[str, dict] = {}
        self.referrals: dict[str, dict] = {}
        self.removed_by: dict[str, str] = {}
        self.workflows = FakeReferrals(self)
        self.looks: dict[str, list[dict]] = {}    # staff looks at a family's entries, as the family is told
        self.failing = False                      # the queue service does not answer its entries
        self.app = self._build()

    def submitted(self, data: dict) -> None:
        if data["application_id"] in self.entries:
            return
        n = len(self.entries) + 7
        now = datetime.fromisoformat(data["queue_date"])
        self.entries[data["application_id"]] = {
            "id": data["application_id"], "status": "queued", "category": data["category"],
            "claimed_category": data["category"], "queue_date": data["queue_date"],
            "cohort": int(data["child_birth_date"][:4]), "birth_date": data["child_birth_date"],
            "language": data["language"], "preferences": list(data["preferences"]), "paused_until": None,
            "parent_id": data["parent_id"], "child": f"{data['child_surname'][:1]}. {data['child_name']}",
            "history": [{"at": (now + timedelta(days=i * 20)).isoformat(), "position": n - i * 2} for i in range(3)],
        }

    def feed_from_outbox(self, engine: sa.Engine) -> int:
        """Reads registration's outbox like the relay and consumer would."""
        rows = payloads(engine, "application.submitted.v1")
        for payload in rows:
            self.submitted(json.loads(payload)["data"])
        return len(rows)

    def publish_place(self, application_id: str, *, needs_confirmation: bool = False) -> dict:
        """A place published and allocated to this child: a live referral."""
        entry = self.entries[application_id]
        known = {k["id"] for k in KINDERGARTENS}
        kg = next((p for p in entry["preferences"] if p in known), KINDERGARTENS[0]["id"])
        rid = str(len(self.referrals) + 100)
        now = datetime.now(UTC)
        ref = {"id": int(rid), "application_id": application_id, "kindergarten": kg, "cohort": entry["cohort"],
               "language": entry["language"], "status": "live",
               "state": rules.first_state(needs_confirmation).value, "issued_at": now.isoformat(),
               "deadline": rules.first_deadline(self.calendar, now, needs_confirmation, rules.DEFAULTS).isoformat(),
               "needs_confirmation": needs_confirmation, "extended": False}
        self.referrals[rid] = ref
        entry["status"] = "referred"
        return {**ref, "referral_id": rid, "kindergarten_name": next(k["name"] for k in KINDERGARTENS
                                                                     if k["id"] == kg)}

    def _live(self, application_id: str) -> dict | None:
        live = [r for r in self.referrals.values() if r["application_id"] == application_id and r["status"] == "live"]
        return {k: v for k, v in live[-1].items() if k != "application_id"} if live else None

    def _positions(self, entry: dict) -> list[dict]:
        if entry["status"] != "queued":
            return []
        last = entry["history"][-1]["position"] if entry["history"] else 1
        return [{"kindergarten": p, "cohort": entry["cohort"], "position": last + i, "ahead": last + i - 1,
                 "ahead_by_category": {"extraordinary": 1}, "ahead_same_category_earlier": last + i - 2,
                 "ahead_same_moment": 0, "category": entry["category"], "queue_date": entry["queue_date"],
                 "explanation": f"Position {last + i} for {p}"} for i, p in enumerate(entry["preferences"])]

    def _build(self) -> FastAPI:
        app = FastAPI()

        def missing(what: str):
            return JSONResponse({"detail": f"{what} not found", "errors": [{"field": what, "message": "not found"}]},
                                status_code=404)

        @app.get("/api/v1/families/{parent_id}/looks")
        def family_looks(parent_id: str):
            return self.looks.get(parent_id, [])

        @app.get("/api/v1/kindergartens")
        def kindergartens():
            return KINDERGARTENS

        @app.get("/api/v1/kindergartens/{kindergarten_id}")
        def kindergarten(kindergarten_id: str):
            found = next((k for k in KINDERGARTENS if k["id"] == kindergarten_id), None)
            return found if found is not None else missing("kindergarten")

        @app.get("/api/v1/policy")
        def policy():
            return {"version": 1, "policy": {"categories": [
                {"code": c, "rank": 100 if c in ("general", "voucher") else 10 * i,
                 "needs_confirmation": c in self.confirmed} for i, c in enumerate(self.categories)]}}

        @app.get("/api/v1/queue-entries/{application_id}")
        def entry(application_id: str):
            if self.failing:
                return JSONResponse({"detail": "the queue is not answering"}, status_code=503)
            e = self.entries.get(application_id)
            if e is None:
                return missing("application_id")
            return {**e, "referral": self._live(application_id)}

        @app.get("/api/v1/queue-entries/{application_id}/positions")
        def positions(application_id: str):
            e = self.entries.get(application_id)
            return missing("application_id") if e is None else self._positions(e)

        @app.get("/api/v1/public/figures")
        def figures(month: str | None = None):
            from services.queue.api.models import Overview

            return Overview.model_config["json_schema_extra"]["examples"][0] | ({"month": month} if month else {})

        @app.get("/api/v1/queue-entries/{application_id}/family-copy")
        def family_copy(application_id: str):
            e = self.entries.get(application_id)
            if e is None:
                return missing("application_id")
            refs = [{k: v for k, v in r.items() if k not in ("kindergarten", "referral_id")}
                    | {"kindergarten_id": r["kindergarten"]}
                    for r in self.referrals.values() if r["application_id"] == application_id]
            return {"entry": e, "referrals": refs, "published_position": None, "allocations": [],
                    "history": [], "retention": None,
                    "positions": [{"kindergarten": p["kindergarten"], "position": p["position"],
                                   "explanation": p["explanation"]} for p in self._positions(e)]}

        @app.post("/api/v1/queue-entries/{application_id}/removal")
        def remove(application_id: str, request: Request):
            e = self.entries.get(application_id)
            if e is None:
                return missing("application_id")
            e["status"] = "removed"
            self.removed_by[application_id] = _token_subject(request)
            return {**e, "referral": None}

        return app


def _token_subject(request: Request) -> str:
    """The actor a service token names (`sub`), as the real queue reads it
    once the token is verified; the stand-in only reads it."""
    import base64

    token = request.headers.get("authorization", "").partition(" ")[2]
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    except (IndexError, ValueError, KeyError):
        return ""


class FakeReferrals:
    """The referral workflows' updates, in memory, on the stand-in queue's
    record of each referral (as the workflow records its state, deadline and
    extension in the queue): the extension is allowed only on the last
    working day of the confirmation window, once, as the workflow allows it,
    by `clock` (the gateway's reader's clock is set beside it:
    `Stack.today_is`). `down`: Temporal does not answer."""

    def __init__(self, queue: FakeQueue):
        self.queue = queue
        self.acts: list[tuple[str, str, str]] = []
        self.clock = lambda: datetime.now(UTC)
        self.down = False

    def _refuse(self, reason: str):
        from services.gateway.referrals import refused

        return refused(reason)

    def _live(self, referral_id: str) -> dict:
        from services.gateway.clients import UpstreamError

        if self.down:
            raise UpstreamError(503, detail="Temporal is not answering")
        ref = self.queue.referrals.get(referral_id)
        if ref is None or ref["status"] != "live" or ref["state"] not in rules.LIVE_STATES:
            raise self._refuse("the referral is closed")
        return ref

    async def cancel(self, referral_id: str, actor: str) -> dict:
        ref = self._live(referral_id)
        self.acts.append(("cancel", referral_id, actor))
        ref.update(status="ended", state="cancelled")
        entry = self.queue.entries[ref["application_id"]]
        entry["status"] = "queued"
        entry["preferences"] = [p for p in entry["preferences"] if p != ref["kindergarten"]]
        return {"event": "referral.cancelled", "state": "cancelled"}

    async def extend(self, referral_id: str, actor: str) -> dict:
        ref = self._live(referral_id)
        cal = self.queue.calendar
        deadline = cal.local(datetime.fromisoformat(ref["deadline"]))
        if ref["state"] != rules.S.AWAITING_CONFIRMATION or ref.get("extended") \
                or rules.extension_day_before(cal, deadline) != cal.local_date(self.clock()):
            raise self._refuse("an extension may be asked for only on the last working day of the "
                               "confirmation window, once")
        self.acts.append(("extend", referral_id, actor))
        deadline = rules.extended_deadline(deadline, rules.DEFAULTS).isoformat()
        ref.update(extended=True, deadline=deadline)
        return {"event": "referral.extended", "state": ref["state"], "deadline": deadline}


class FakeInbox:
    def __init__(self):
        self.messages: dict[str, list[dict]] = {}
        self.asked_in: list[str | None] = []     # the language each read asked for
        self.app = FastAPI()

        @self.app.get("/api/v1/notifications/inbox/{parent_id}")
        def inbox(parent_id: str, lang: str | None = None):
            self.asked_in.append(lang)
            items = self.messages.get(parent_id, [])
            return {"parent_id": parent_id, "unread": sum(not m["read"] for m in items), "messages": items}

        @self.app.post("/api/v1/notifications/inbox/{parent_id}/{message_id}/read", status_code=204)
        def mark_read(parent_id: str, message_id: str):
            found = [m for m in self.messages.get(parent_id, []) if m["id"] == message_id]
            if not found:
                return JSONResponse({"detail": "no such message in this parent's inbox",
                                     "errors": [{"field": "message_id", "message": "not found"}]}, status_code=404)
            found[0]["read"] = True

        @self.app.get("/api/v1/notifications/families/{parent_id}/copy")
        def family_copy(parent_id: str):
            return {"contacts": None, "messages": [
                {"id": m["id"], "kind": m["kind"], "channel": "inapp", "subject": m["title"], "text": m["text"],
                 "status": "delivered", "created_at": m["created_at"]} for m in self.messages.get(parent_id, [])]}

    def add(self, parent_id: str, body: str, title: str | None = None) -> None:
        self.messages.setdefault(parent_id, []).append(
            {"id": str(uuid.uuid4()), "kind": "info", "created_at": datetime.now(UTC).isoformat(), "title": title,
             "text": body, "read": False})


class FakeVerification:
    """The staff service's internal routes the cabinet asks: which offices
    looked at the family's cases."""

    def __init__(self):
        self.looks: dict[str, list[dict]] = {}
        self.failing = False
        self.app = FastAPI()

        @self.app.get("/api/v1/families/{parent_id}/looks")
        def family_looks(parent_id: str):
            if self.failing:
                return JSONResponse({"detail": "down"}, status_code=503)
            return self.looks.get(parent_id, [])

        @self.app.get("/api/v1/families/{parent_id}/copy")
        def family_copy(parent_id: str):
            # What verification holds: nothing, for a family no caseworker has seen.
            return {"applicants": [], "referrals": [], "certificates": [], "decisions": [], "vouchers": [],
                    "history": []}


def sync_transport(app) -> "httpx.BaseTransport":
    """A blocking transport to an ASGI app (registration's client of the
    queue is not async): the one Starlette's test client uses."""
    from starlette.testclient import TestClient

    return TestClient(app)._transport


class Stack:
    """Registration (real, on SQLite), the gateway (real) and the stand-ins,
    wired in one process through ASGI transports."""

    def __init__(self, state_dir, queue_app=None, queue_categories: tuple[str, ...] | None = None,
                 **settings_overrides):
        import httpx
        from argon2 import PasswordHasher

        from tests.migrated import upgrade
        from services.gateway.api import GatewaySettings, create_app as gateway_app
        from services.registration.api import RegistrationSettings, create_app as registration_app

        # One test client makes every request: the limits per client are the
        # concern of the tests that set them.
        # No consumer of the gateway runs here to keep the cabinet's read model
        # (tests change the stand-ins directly): the cabinet asks the services,
        # as a gateway without its consumers must. tests/unit/test_cabinet_readmodel.py
        # turns it on and delivers the events.
        settings_overrides = {"codes_per_client_per_hour": 10_000, "registration_requests_per_client": 100_000,
                              "rate_limit_per_address_per_minute": 100_000, "cabinet_snapshot_seconds": 0,
                              **settings_overrides}
        self.settings = GatewaySettings(state_dir=state_dir, env="test", **settings_overrides)
        upgrade("registration", self.settings.database_url_for("registration"))
        upgrade("gateway", self.settings.database_url_for("gateway"))
        self.queue = FakeQueue(*([queue_categories] if queue_categories else []))
        self.inbox = FakeInbox()
        self.verification = FakeVerification()
        # Cheap argon2 parameters: the tests prove the flow, not the cost.
        self.registration = registration_app(
            RegistrationSettings(state_dir=state_dir, env="test", **settings_overrides),
            hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1),
            queue_transport=sync_transport(queue_app or self.queue.app))
        self.gateway = gateway_app(self.settings, transports={
            "registration": httpx.ASGITransport(app=self.registration),
            "queue": httpx.ASGITransport(app=queue_app or self.queue.app),
            "notifications": httpx.ASGITransport(app=self.inbox.app),
            "verification": httpx.ASGITransport(app=self.verification.app),
        }, referrals=self.queue.workflows)

    def browser(self, lang: str | None = None, **options):
        """A parent's browser on the portal (HTTPS), reading `lang` (the
        language cookie) when one is given."""
        from starlette.testclient import TestClient

        c = TestClient(self.gateway, base_url="https://testserver", **options)
        if lang:
            c.cookies.set("kezek_lang", lang)
        return c

    def today_is(self, day) -> "Stack":
        """The reader's day, for the gateway and the referral workflows
        alike (noon of `day`, local time; None: the real day again): a test
        of "extend is offered on the extension day" does not depend on the
        day it runs."""
        from datetime import time

        noon = None if day is None else datetime.combine(day, time(12), tzinfo=self.queue.calendar.tz)
        self.gateway.state.gateway.clock = self.queue.workflows.clock = \
            (lambda: datetime.now(UTC)) if noon is None else (lambda: noon)
        return self

    def freeze_limits(self, at: float = 1_800_000_010.0) -> "Stack":
        """Every rate-limit window of this stack stays the one around `at`:
        a test of a limit never straddles a window's edge."""
        self.gateway.state.gateway.limits.clock = lambda: at
        self.registration.state.rate_limits.clock = lambda: at
        return self

    def events(self, event_type: str) -> list[dict]:
        """Registration's outbox as the notifications service reads it (sealed fields opened)."""
        sealer = self.registration.state.service.sealer
        return [sealer.opened(event_type, json.loads(p)["data"])
                for p in payloads(self.registration.state.engine, event_type)]

    def last_code(self, email: str) -> str:
        return [e["code"] for e in self.events("registration.email_code_issued.v1") if e["email"] == email][-1]

    def last_activation_token(self, email: str) -> str:
        url = [e["activation_url"] for e in self.events("account.activation_issued.v1") if e["email"] == email][-1]
        return url.split("token=", 1)[1]


def real_queue(state_dir):
    """The queue service's API in process, on its database under
    `state_dir`, and the callers a test signs as to reach it."""
    from tests.migrated import upgrade
    from kezek.settings import Settings
    from services.queue.api import create_app
    from tests.fakes.tokens import Callers

    settings = Settings(state_dir=state_dir, env="test")
    upgrade("queue", settings.database_url_for("queue"))
    return create_app(settings), Callers(settings, "queue")
