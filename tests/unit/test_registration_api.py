"""Registration's API at the trust boundary: only the gateway calls it (as
itself for the anonymous steps, as the verified parent for the parent's
own), every act is in the audit trail with that verified actor, and the
service limits its callers by client address, draft and account."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.migrated import upgrade
from kezek.trust import ServiceKeys, parent_principal
from tests.fakes.gateway import FakeQueue, sync_transport
from services.registration.api import RegistrationSettings, create_app
from tests.unit.test_registration_service import CHILD, CONFIRM, PARENT, PASSWORD

KEYS = ServiceKeys.derived("registration-api-tests")


def build(tmp_path, **settings) -> TestClient:
    s = RegistrationSettings(_env_file=None, state_dir=tmp_path, env="test", **settings)
    upgrade("registration", s.database_url_for("registration"))
    app = create_app(s, keys=KEYS, hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1),
                     queue_transport=sync_transport(FakeQueue().app))
    return TestClient(app)


def as_(caller: str = "gateway", actor=None, audience: str = "registration", client: str = "") -> dict:
    headers = {"authorization": f"Bearer {KEYS.sign(caller, audience, actor)}"}
    if client:
        headers["x-kezek-client"] = client
    return headers




def events(c: TestClient, event_type: str) -> list[dict]:
    import json

    from kezek.outbox import payloads

    return [c.app.state.service.sealer.opened(event_type, json.loads(p)["data"])
            for p in payloads(c.app.state.engine, event_type)]


def submitted(c: TestClient, pin: str, email: str) -> tuple[str, str]:
    """A whole application through the API as the gateway; (application, account)."""
    t = c.post("/api/v1/drafts", json={"locale": "ru"}, headers=as_()).json()["draft"]
    assert c.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": pin}, headers=as_()).status_code == 200
    assert c.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": email}, headers=as_()).status_code == 200
    assert c.post(f"/api/v1/drafts/{t}/email-code", headers=as_()).status_code == 202
    code = [e["code"] for e in events(c, "registration.email_code_issued.v1") if e["email"] == email][-1]
    assert c.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": code}, headers=as_()).status_code == 200
    r = c.post(f"/api/v1/drafts/{t}/submit", json=CONFIRM, headers=as_())
    assert r.status_code == 201, r.text
    account = [e["parent_id"] for e in events(c, "application.received.v1")][-1]
    return r.json()["application_id"], account


@pytest.fixture
def api(tmp_path):
    return build(tmp_path)


def test_calls_without_a_service_token_or_with_a_forged_one_are_refused(api):
    assert api.post("/api/v1/drafts", json={}).status_code == 401
    assert api.post("/api/v1/drafts", json={}, headers={"authorization": "Bearer not-a-token"}).status_code == 401
    forged = ServiceKeys.derived("another secret").sign("gateway", "registration")
    assert api.post("/api/v1/drafts", json={}, headers={"authorization": f"Bearer {forged}"}).status_code == 401
    assert api.post("/api/v1/drafts", json={}, headers=as_(audience="queue")).status_code == 401
    # Only the gateway speaks for a parent; the queue may not, nor act here itself.
    assert api.get("/api/v1/me", headers=as_("queue", parent_principal("p1"))).status_code == 401
    assert api.post("/api/v1/drafts", json={}, headers=as_("queue")).status_code == 403
    assert api.get("/api/v1/me", headers=as_()).status_code == 403


def test_a_parent_sees_and_touches_only_their_own_applications(api):
    a_app, a = submitted(api, "21506202400401", "a@example.kg")
    b_app, b = submitted(api, "11506202400402", "b@example.kg")
    as_b = as_(actor=parent_principal(b))
    me = api.get("/api/v1/me", headers=as_b).json()
    assert [x["id"] for x in me["applications"]] == [b_app] and "21506202400401" not in str(me)
    r = api.post(f"/api/v1/me/applications/{a_app}/removed", headers=as_b)
    assert r.status_code == 404
    as_a = as_(actor=parent_principal(a))
    assert api.get("/api/v1/me", headers=as_a).json()["applications"][0]["status"] == "submitted"
    assert api.post(f"/api/v1/me/applications/{a_app}/removed", headers=as_a).status_code == 204


def test_sessions_are_looked_up_and_ended_with_the_secret_in_the_body(api):
    _, account = submitted(api, "21506202400403", "session@example.kg")
    link = events(api, "account.activation_issued.v1")[-1]["activation_url"].split("token=")[1]
    assert api.post("/api/v1/activation/check", json={"token": link}, headers=as_()).json() == {
        "email": "session@example.kg"}
    assert api.post("/api/v1/activation", json={"token": link, "password": PASSWORD}, headers=as_()).status_code == 200
    token = api.post("/api/v1/sessions", json={"login": "session@example.kg", "password": PASSWORD},
                     headers=as_()).json()["token"]
    found = api.post("/api/v1/sessions/lookup", json={"token": token}, headers=as_())
    assert found.status_code == 200 and found.json()["account_id"] == account
    # Another family cannot end this session; its owner can.
    api.post("/api/v1/sessions/end", json={"token": token}, headers=as_(actor=parent_principal("someone")))
    assert api.post("/api/v1/sessions/lookup", json={"token": token}, headers=as_()).status_code == 200
    api.post("/api/v1/sessions/end", json={"token": token}, headers=as_(actor=parent_principal(account)))
    r = api.post("/api/v1/sessions/lookup", json={"token": token}, headers=as_())
    assert r.status_code == 401 and r.json()["errors"][0]["field"] == "session"


def test_every_state_change_is_audited_with_the_verified_actor(api):
    app_id, account = submitted(api, "21506202400404", "audit@example.kg")
    api.post(f"/api/v1/me/applications/{app_id}/removed",
             headers=as_(actor=parent_principal(account), client="198.51.100.4"))
    with api.app.state.engine.connect() as conn:
        trail = conn.execute(sa.text("SELECT actor, actor_role, via, action, subject, details FROM audit_trail "
                                     "ORDER BY id")).all()
    actions = [r.action for r in trail]
    assert actions[:5] == ["draft.started", "draft.child_saved", "draft.parent_saved", "draft.code_sent",
                           "draft.code_verified"]
    assert {"account.activation_issued", "application.submitted", "application.removed"} <= set(actions)
    by_action = {r.action: r for r in trail}
    assert by_action["application.submitted"].actor == "service:gateway"
    removed = by_action["application.removed"]
    assert (removed.actor, removed.actor_role, removed.via, removed.subject) == (
        f"parent:{account}", "parent", "gateway", f"application:{app_id}")
    assert "198.51.100.4" in str(removed.details)


def test_registration_limits_its_callers_per_client_per_draft_and_per_account(tmp_path):
    c = build(tmp_path, registration_requests_per_client=4, registration_requests_per_draft=3,
              registration_requests_per_account=2)
    c.app.state.rate_limits.clock = lambda: 1_800_000_010.0     # one window for the whole test
    one = as_(client="203.0.113.1")
    codes = [c.get("/api/v1/address/regions", headers=one).status_code for _ in range(6)]
    assert codes == [200] * 4 + [429] * 2
    r = c.get("/api/v1/address/regions", headers=one)
    assert r.headers["retry-after"] and r.json()["errors"][0]["field"] == "request"
    # Families behind that address are counted by their accounts, and their
    # sessions are still looked up.
    assert c.get("/api/v1/me", headers=as_(actor=parent_principal("behind"), client="203.0.113.1")).status_code == 404
    assert c.post("/api/v1/sessions/lookup", json={"token": "x"}, headers=one).status_code == 401
    t = c.post("/api/v1/drafts", json={}, headers=as_(client="203.0.113.2")).json()["draft"]
    codes = [c.get(f"/api/v1/drafts/{t}", headers=as_(client=f"203.0.113.{10 + n}")).status_code for n in range(5)]
    assert codes == [200] * 3 + [429] * 2
    family = as_(actor=parent_principal("fam"), client="203.0.113.3")
    codes = [c.get("/api/v1/me", headers=family).status_code for _ in range(4)]
    assert codes[2:] == [429, 429]


def test_each_step_of_an_application_is_one_transaction_its_rate_limits_counted_in_batches(tmp_path):
    """Issue 15: the limits' counts (per client and per draft) reach their
    table with the next flush, not in two transactions of their own per
    request, and a new draft is written and read back in one; the limits
    still hold (the test above)."""
    c = build(tmp_path)
    limits = c.app.state.rate_limits
    limits.clock = lambda: 1_800_000_010.0     # one window, and no flush falls due by the timer
    limits.flush()
    commits: list[str] = []
    sa.event.listen(c.app.state.engine, "commit", lambda conn: commits.append("commit"))
    h = as_(client="203.0.113.9")

    r = c.post("/api/v1/drafts", json={"locale": "ru"}, headers=h)
    assert r.status_code == 201 and commits == ["commit"]
    t = r.json()["draft"]
    assert c.put(f"/api/v1/drafts/{t}/child", json=CHILD, headers=h).status_code == 200
    assert c.put(f"/api/v1/drafts/{t}/parent", json=PARENT, headers=h).status_code == 200
    assert commits == ["commit"] * 3
    # The new draft's answer is what reading it back gives.
    other = c.post("/api/v1/drafts", json={"locale": "ru"}, headers=h).json()
    assert other == {"draft": other["draft"], **c.get(f"/api/v1/drafts/{other['draft']}", headers=h).json()}
    # Counted all the same: the flush adds them to the shared rows.
    limits.flush()
    with c.app.state.engine.connect() as conn:
        hits = dict(conn.execute(sa.text("SELECT key, hits FROM rate_limits")).all())
    assert hits["client:203.0.113.9"] == 5
