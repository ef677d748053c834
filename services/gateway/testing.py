"""Stand-ins for the services behind the gateway, speaking their HTTP
contracts (see /work/notes/GATEWAY_CALLS_TO_QUEUE.md): a small queue with
kindergartens, positions and referrals, and a notifications inbox. Used by
the gateway's tests and by the portal demo when the real services are not
running; the real services replace them by URL."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

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
    """Enough of the queue service for the cabinet: entries from
    application.submitted.v1, positions with history, referrals whose
    `actions` say what the parent may do now."""

    def __init__(self):
        self.entries: dict[str, dict] = {}
        self.referrals: dict[str, dict] = {}
        self.app = self._build()

    def submitted(self, data: dict) -> None:
        if data["application_id"] in self.entries:
            return
        n = len(self.entries) + 7
        now = datetime.fromisoformat(data["queue_date"])
        self.entries[data["application_id"]] = {
            "application_id": data["application_id"], "status": "queued", "category": data["category"],
            "queue_date": data["queue_date"], "preferences": list(data["preferences"]),
            "history": [{"at": (now + timedelta(days=i * 20)).isoformat(), "position": n - i * 2} for i in range(3)],
        }

    def feed_from_outbox(self, engine: sa.Engine) -> int:
        """Reads registration's outbox like the relay and consumer would."""
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT payload FROM outbox WHERE type = 'application.submitted.v1'")).all()
        for (payload,) in rows:
            self.submitted(json.loads(payload)["data"])
        return len(rows)

    def publish_place(self, application_id: str, *, stage: str = "enrolment", actions=("cancel",)) -> dict:
        entry = self.entries[application_id]
        kg = next(k for k in KINDERGARTENS if k["id"] == entry["preferences"][0]) \
            if entry["preferences"] and any(k["id"] == entry["preferences"][0] for k in KINDERGARTENS) else KINDERGARTENS[0]
        rid = str(uuid.uuid4())
        now = datetime.now(UTC)
        ref = {"referral_id": rid, "application_id": application_id, "kindergarten_id": kg["id"],
               "kindergarten_name": kg["name"],
               "status": "awaiting_confirmation" if stage == "confirmation" else "awaiting_enrolment",
               "stage": stage, "issued_at": now.isoformat(), "deadline": (now + timedelta(days=7)).isoformat(),
               "actions": list(actions)}
        self.referrals[rid] = ref
        entry["status"] = "referred"
        return ref

    def _positions(self, entry: dict) -> list[dict]:
        names = {k["id"]: k["name"] for k in KINDERGARTENS}
        last = entry["history"][-1]["position"] if entry["history"] else 1
        return [{"kindergarten_id": p, "kindergarten_name": names.get(p, p), "position": last + i,
                 "ahead": {"higher_category": 1, "earlier_queue_date": last + i - 2}}
                for i, p in enumerate(entry["preferences"])]

    def _build(self) -> FastAPI:
        app = FastAPI()

        def missing(what: str):
            return JSONResponse({"detail": f"{what} not found", "errors": [{"field": what, "message": "not found"}]},
                                status_code=404)

        @app.get("/api/v1/kindergartens")
        def kindergartens():
            return KINDERGARTENS

        @app.get("/api/v1/applications/{application_id}")
        def application(application_id: str):
            e = self.entries.get(application_id)
            if e is None:
                return missing("application")
            return {**{k: v for k, v in e.items() if k != "preferences"}, "positions": self._positions(e)
                    if e["status"] == "queued" else []}

        @app.get("/api/v1/applications/{application_id}/referrals")
        def referrals(application_id: str):
            return [r for r in self.referrals.values() if r["application_id"] == application_id]

        @app.post("/api/v1/referrals/{referral_id}/cancel")
        def cancel(referral_id: str):
            r = self.referrals.get(referral_id)
            if r is None:
                return missing("referral")
            if "cancel" not in r["actions"]:
                return JSONResponse({"detail": "refused", "errors": [{"field": "referral", "message": "refused"}]},
                                    status_code=409)
            r.update(status="cancelled", actions=[])
            e = self.entries[r["application_id"]]
            e["status"] = "queued"
            e["preferences"] = [p for p in e["preferences"] if p != r["kindergarten_id"]]
            return {"status": "cancelled"}

        @app.post("/api/v1/referrals/{referral_id}/extend")
        def extend(referral_id: str):
            r = self.referrals.get(referral_id)
            if r is None:
                return missing("referral")
            if "extend" not in r["actions"]:
                return JSONResponse({"detail": "refused", "errors": [{"field": "referral", "message": "refused"}]},
                                    status_code=409)
            r.update(status="extended", actions=["cancel"],
                     deadline=(datetime.fromisoformat(r["deadline"]) + timedelta(days=30)).isoformat())
            return {"status": "extended"}

        @app.post("/api/v1/applications/{application_id}/remove")
        def remove(application_id: str):
            e = self.entries.get(application_id)
            if e is None:
                return missing("application")
            e["status"] = "removed"
            return {"status": "removed"}

        return app


class FakeInbox:
    def __init__(self):
        self.messages: dict[str, list[dict]] = {}
        self.app = FastAPI()

        @self.app.get("/api/v1/notifications/inbox/{parent_id}")
        def inbox(parent_id: str):
            items = self.messages.get(parent_id, [])
            return {"parent_id": parent_id, "unread": sum(not m["read"] for m in items), "messages": items}

    def add(self, parent_id: str, body: str, title: str | None = None) -> None:
        self.messages.setdefault(parent_id, []).append(
            {"id": str(uuid.uuid4()), "kind": "info", "created_at": datetime.now(UTC).isoformat(), "title": title,
             "text": body, "read": False})


class Stack:
    """Registration (real, on SQLite), the gateway (real) and the stand-ins,
    wired in one process through ASGI transports."""

    def __init__(self, state_dir, **settings_overrides):
        import httpx
        from argon2 import PasswordHasher

        from kezek.migrations import upgrade
        from services.gateway.api import GatewaySettings, create_app as gateway_app
        from services.registration.api import RegistrationSettings, create_app as registration_app

        self.settings = GatewaySettings(state_dir=state_dir, env="test", **settings_overrides)
        upgrade("registration", self.settings.database_url_for("registration"))
        # Cheap argon2 parameters: the tests prove the flow, not the cost.
        self.registration = registration_app(RegistrationSettings(state_dir=state_dir, env="test"),
                                             hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
        self.queue = FakeQueue()
        self.inbox = FakeInbox()
        self.gateway = gateway_app(self.settings, transports={
            "registration": httpx.ASGITransport(app=self.registration),
            "queue": httpx.ASGITransport(app=self.queue.app),
            "notifications": httpx.ASGITransport(app=self.inbox.app),
        })

    def events(self, event_type: str) -> list[dict]:
        with self.registration.state.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT payload FROM outbox WHERE type = :t ORDER BY seq"),
                                {"t": event_type}).all()
        return [json.loads(p)["data"] for (p,) in rows]

    def last_code(self, email: str) -> str:
        return [e["code"] for e in self.events("registration.email_code_issued.v1") if e["email"] == email][-1]

    def last_activation_token(self, email: str) -> str:
        url = [e["activation_url"] for e in self.events("account.activation_issued.v1") if e["email"] == email][-1]
        return url.split("token=", 1)[1]
