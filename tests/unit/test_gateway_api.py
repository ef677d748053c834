"""The parents' JSON API through the gateway: every bad input is a 4xx that
names the field (in the caller's language), and a parent never sees or
touches another family's data."""
from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient

from tests.builders import CHILD, MOTHER
from tests.fakes.gateway import Stack

CONFIRM = {"category": "general", "language": "ru", "preferences": ["bsk-12", "bsk-7"], "agreement": True}
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("gw"), rate_limit_per_minute=100_000)


def draft(api, lang="en") -> str:
    r = api.post("/api/v1/drafts", json={"locale": lang})
    assert r.status_code == 201
    return r.json()["draft"]


def register(api, stack, child=CHILD, parent=MOTHER, confirm=CONFIRM) -> tuple[str, str]:
    """The whole application and activation; returns (bearer token, application id)."""
    t = draft(api)
    assert api.put(f"/api/v1/drafts/{t}/child", json=child).status_code == 200
    assert api.put(f"/api/v1/drafts/{t}/parent", json=parent).status_code == 200
    assert api.post(f"/api/v1/drafts/{t}/email-code").status_code == 202
    email = parent["email"]
    assert api.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": stack.last_code(email)}).status_code == 200
    r = api.post(f"/api/v1/drafts/{t}/submit", json=confirm)
    assert r.status_code == 201, r.text
    app_id = r.json()["application_id"]
    stack.queue.feed_from_outbox(stack.registration.state.engine)
    if r.json()["new_account"]:
        token = stack.last_activation_token(email)
        assert api.post("/api/v1/activation", json={"token": token, "password": PASSWORD}).status_code == 200
    r = api.post("/api/v1/sessions", json={"login": email, "password": PASSWORD})
    assert r.status_code == 201
    return r.json()["token"], app_id


def fields(r) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]


# --- every bad input: a 4xx naming the field ------------------------------------

@pytest.mark.parametrize("body,field", [
    ({**CHILD, "pin": ""}, "child.pin"),
    ({**CHILD, "pin": "215062024000"}, "child.pin"),
    ({**CHILD, "pin": "31506202400011"}, "child.pin"),
    ({**CHILD, "pin": "23102202400011"}, "child.pin"),           # 31 February
    ({**CHILD, "pin": "21512209900011"}, "child.pin"),           # born in 2099
    ({**CHILD, "pin": "20101201500011"}, "child.pin"),           # school age
    ({**CHILD, "surname": ""}, "child.surname"),
    ({**CHILD, "name": "R2D2"}, "child.name"),
    ({**CHILD, "birth_date": "2024-06-16"}, "child.birth_date"),
    ({**CHILD, "birth_date": "16.06.2024"}, "child.birth_date"),
])
def test_bad_child_data_is_a_422_naming_the_field(api, body, field):
    r = api.put(f"/api/v1/drafts/{draft(api)}/child", json=body)
    assert r.status_code == 422
    assert field in fields(r)


def address(**kw):
    return {**MOTHER["address"], **kw}


@pytest.mark.parametrize("change,field", [
    ({"role": ""}, "parent.role"),
    ({"role": "uncle"}, "parent.role"),
    ({"surname": ""}, "parent.surname"),
    ({"name": "123"}, "parent.name"),
    ({"pin": "1120319900012"}, "parent.pin"),
    ({"pin": CHILD["pin"]}, "parent.pin"),
    ({"document_type": "visa"}, "parent.document_type"),
    ({"document_number": "12"}, "parent.document_number"),
    ({"document_type": "passport", "document_number": "ID1234567"}, "parent.document_number"),
    ({"document_issued_on": ""}, "parent.document_issued_on"),
    ({"document_issued_on": "2099-01-01"}, "parent.document_issued_on"),
    ({"phone": "+1 202 555 0100"}, "parent.phone"),
    ({"phone": ""}, "parent.phone"),
    ({"email": "not-an-email"}, "parent.email"),
    ({"address": address(region="")}, "address.region"),
    ({"address": address(region="99999")}, "address.region"),
    ({"address": address(district="41721200000000")}, "address.district"),
    ({"address": address(settlement="41721000000001")}, "address.settlement"),
    ({"address": address(street="проспект Мира")}, "address.street"),
    ({"address": address(house="")}, "address.house"),
    ({"address": address(house="12$$")}, "address.house"),
])
def test_bad_parent_data_is_a_422_naming_the_field(api, change, field):
    t = draft(api)
    assert api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400077"}).status_code == 200
    r = api.put(f"/api/v1/drafts/{t}/parent", json={**MOTHER, **change})
    assert r.status_code == 422, r.text
    assert field in fields(r)


def test_unknown_street_advises_checking_its_official_name(api):
    t = draft(api)
    api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400078"})
    r = api.put(f"/api/v1/drafts/{t}/parent", json={**MOTHER, "address": address(street="проспект Мира")},
                headers={"accept-language": "ru"})
    message = r.json()["errors"][0]["message"]
    assert message.startswith("Улица:") and "центре обслуживания населения" in message


def test_errors_are_in_the_parents_language(api):
    t = draft(api)
    for lang, start in (("ky", "Баланын жеке идентификациялык номери (ПИН):"),
                        ("ru", "Персональный идентификационный номер ребёнка (ПИН):"),
                        ("en", "Child's personal identification number (PIN):")):
        r = api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "1"}, headers={"accept-language": lang})
        assert r.json()["errors"][0]["message"].startswith(start)


def test_steps_cannot_be_skipped(api):
    t = draft(api)
    r = api.put(f"/api/v1/drafts/{t}/parent", json=MOTHER)
    assert r.status_code == 422 and fields(r) == ["child"]
    api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400079"})
    api.put(f"/api/v1/drafts/{t}/parent", json=MOTHER)
    r = api.post(f"/api/v1/drafts/{t}/submit", json=CONFIRM)
    assert r.status_code == 422 and fields(r) == ["code"]


def test_code_rules_through_the_api(api, stack):
    t = draft(api)
    api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400080"})
    api.put(f"/api/v1/drafts/{t}/parent", json={**MOTHER, "email": "codes@example.kg"})
    r = api.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": "123456"})
    assert r.status_code == 422 and fields(r) == ["code"]
    assert api.post(f"/api/v1/drafts/{t}/email-code").status_code == 202
    r = api.post(f"/api/v1/drafts/{t}/email-code")
    assert r.status_code == 429 and fields(r) == ["parent.email"]
    r = api.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": "12a"})
    assert r.status_code == 422 and fields(r) == ["code"]
    right = stack.last_code("codes@example.kg")
    wrong = "000000" if right != "000000" else "111111"
    for left in (4, 3, 2, 1):
        r = api.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": wrong})
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "code_wrong"
    r = api.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": wrong})
    assert r.status_code == 429
    r = api.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": right})
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "code_too_many_attempts"


@pytest.mark.parametrize("change,field", [
    ({"category": "vip"}, "category"),
    ({"category": ""}, "category"),
    ({"language": "fr"}, "language"),
    ({"preferences": []}, "preferences"),
    ({"preferences": ["a", "a"]}, "preferences"),
    ({"preferences": ["a", "b", "c", "d"]}, "preferences"),
    ({"agreement": False}, "agreement"),
])
def test_bad_confirmation_is_a_422_naming_the_field(api, stack, change, field):
    t = draft(api)
    email = f"confirm-{abs(hash(repr(change)))}@example.kg"     # one code a minute per address
    api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400081"})
    api.put(f"/api/v1/drafts/{t}/parent", json={**MOTHER, "email": email})
    stack_code(api, stack, t, email)
    r = api.post(f"/api/v1/drafts/{t}/submit", json={**CONFIRM, **change})
    assert r.status_code == 422 and field in fields(r)


def stack_code(api, stack, t, email):
    assert api.post(f"/api/v1/drafts/{t}/email-code").status_code == 202
    assert api.post(f"/api/v1/drafts/{t}/email-code/verify",
                    json={"code": stack.last_code(email)}).status_code == 200


def test_a_child_pin_is_registered_once_whoever_applies(api, stack):
    register(api, stack, child={**CHILD, "pin": "21506202400099"},
             parent={**MOTHER, "email": "first@example.kg"})
    t = draft(api)
    r = api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "21506202400099"})
    assert r.status_code == 409 and fields(r) == ["child.pin"]


def test_unknown_draft_is_a_404(api):
    r = api.put("/api/v1/drafts/nope/child", json=CHILD)
    assert r.status_code == 404 and fields(r) == ["draft"]


def test_activation_link_works_once_and_password_rules_name_the_field(api, stack):
    t = draft(api)
    api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400082"})
    api.put(f"/api/v1/drafts/{t}/parent", json={**MOTHER, "email": "once@example.kg"})
    stack_code(api, stack, t, "once@example.kg")
    assert api.post(f"/api/v1/drafts/{t}/submit", json=CONFIRM).status_code == 201
    token = stack.last_activation_token("once@example.kg")
    r = api.post("/api/v1/activation", json={"token": token, "password": "short"})
    assert r.status_code == 422 and fields(r) == ["password"]
    assert api.post("/api/v1/activation", json={"token": token, "password": PASSWORD}).status_code == 200
    r = api.post("/api/v1/activation", json={"token": token, "password": PASSWORD})
    assert r.status_code == 422 and fields(r) == ["token"]


def test_no_password_travels_in_clear(stack):
    for e in stack.events("account.activation_issued.v1"):
        assert "password" not in e and e["activation_url"].count("token=") == 1


def test_wrong_passwords_slow_the_guesser_and_the_owner_still_signs_in(api, stack):
    register(api, stack, child={**CHILD, "pin": "21506202400098"}, parent={**MOTHER, "email": "lock@example.kg"})
    with TestClient(stack.gateway, base_url="https://testserver", client=("203.0.113.9", 40000)) as guesser:
        codes = [guesser.post("/api/v1/sessions", json={"login": "lock@example.kg", "password": "wrong password"})
                 for _ in range(5)]
    assert [r.status_code for r in codes] == [401] * 4 + [429]
    assert fields(codes[0]) == ["login"] and int(codes[-1].headers["retry-after"]) >= 1
    assert codes[-1].json()["errors"][0]["code"] == "login_throttled"
    # The owner, from the computer they signed in from before, is heard at once.
    r = api.post("/api/v1/sessions", json={"login": "lock@example.kg", "password": PASSWORD})
    assert r.status_code == 201
    [notice] = [e for e in stack.events("account.sign_in_failed.v1") if e["email"] == "lock@example.kg"]
    assert notice["failures"] >= 3


def test_login_needs_both_fields(api):
    assert fields(api.post("/api/v1/sessions", json={"login": "", "password": "x"})) == ["login"]
    assert fields(api.post("/api/v1/sessions", json={"login": "a@b.kg", "password": ""})) == ["password"]


def test_cabinet_needs_a_valid_bearer_token(api):
    for headers in ({}, {"authorization": "Bearer nonsense"}, {"authorization": "Basic abc"}):
        r = api.get("/api/v1/me", headers=headers)
        assert r.status_code == 401 and fields(r) == ["session"]


def test_logout_revokes_the_token(api, stack):
    token, _ = register(api, stack, child={**CHILD, "pin": "21506202400097"},
                        parent={**MOTHER, "email": "logout@example.kg"})
    h = {"authorization": f"Bearer {token}"}
    assert api.get("/api/v1/me", headers=h).status_code == 200
    assert api.delete("/api/v1/sessions/current", headers=h).status_code == 204
    assert api.get("/api/v1/me", headers=h).status_code == 401


# --- one family never sees another's --------------------------------------------

@pytest.fixture
def march_10(stack):
    """Today is Wednesday 10 March 2027 for the gateway and the workflows."""
    yield stack.today_is(date(2027, 3, 10))
    stack.today_is(None)


def test_a_parent_never_sees_or_touches_another_familys_data(api, stack, march_10):
    a_token, a_app = register(api, stack, child={**CHILD, "pin": "21506202400091"},
                              parent={**MOTHER, "email": "family-a@example.kg"})
    b_token, b_app = register(api, stack, child={**CHILD, "pin": "11506202400092", "name": "Бермет"},
                              parent={**MOTHER, "pin": "21203199000124", "email": "family-b@example.kg"})
    a_ref = stack.queue.publish_place(a_app, needs_confirmation=True)
    # Its window ends Thursday 11 March 2027 (the queue's record): today is
    # its last working day, and A is offered "Extend".
    stack.queue.referrals[a_ref["referral_id"]]["deadline"] = "2027-03-11T00:00:00+06:00"
    stack.inbox.add(stack.events("application.received.v1")[-2]["parent_id"], "A's secret message")
    b = {"authorization": f"Bearer {b_token}"}

    me = api.get("/api/v1/me", headers=b).json()
    assert [a["id"] for a in me["applications"]] == [b_app]
    assert "21506202400091" not in api.get("/api/v1/me", headers=b).text
    assert all(not app["referrals"] for app in me["applications"])
    assert "A's secret message" not in api.get("/api/v1/me/notifications", headers=b).text

    for path in (f"/api/v1/me/referrals/{a_ref['referral_id']}/cancel",
                 f"/api/v1/me/referrals/{a_ref['referral_id']}/extend",
                 f"/api/v1/me/applications/{a_app}/remove"):
        r = api.post(path, headers=b)
        assert r.status_code == 404, path
    r = api.get(f"/api/v1/me/kindergartens-nearby?application_id={a_app}", headers=b)
    assert r.status_code == 404
    assert stack.queue.referrals[a_ref["referral_id"]]["status"] == "live"
    assert stack.queue.entries[a_app]["status"] == "referred" and not stack.queue.workflows.acts

    a = {"authorization": f"Bearer {a_token}"}
    mine = api.get("/api/v1/me", headers=a).json()
    [ref] = mine["applications"][0]["referrals"]
    assert ref["referral_id"] == a_ref["referral_id"] and ref["actions"] == ["cancel", "extend"]


def test_a_parent_marks_own_notifications_read_and_never_anothers(api, stack):
    a_token, _ = register(api, stack, child={**CHILD, "pin": "21506202400081"},
                          parent={**MOTHER, "email": "inbox-a@example.kg"})
    b_token, _ = register(api, stack, child={**CHILD, "pin": "11506202400072", "name": "Бермет"},
                          parent={**MOTHER, "pin": "21203199000125", "email": "inbox-b@example.kg"})
    a, b = ({"authorization": f"Bearer {t}"} for t in (a_token, b_token))
    a_parent = api.get("/api/v1/me", headers=a).json()["account"]["id"]
    stack.inbox.add(a_parent, "Your application was received")
    [message] = api.get("/api/v1/me/notifications", headers=a).json()
    assert message["read"] is False

    r = api.post(f"/api/v1/me/notifications/{message['id']}/read", headers=b)
    assert r.status_code == 404 and fields(r) == ["notification"]
    assert api.get("/api/v1/me/notifications", headers=a).json()[0]["read"] is False
    assert api.post(f"/api/v1/me/notifications/{message['id']}/read", headers=a).status_code == 204
    assert api.get("/api/v1/me/notifications", headers=a).json()[0]["read"] is True
    assert api.post(f"/api/v1/me/notifications/{message['id']}/read").status_code == 401


def test_voucher_decision_is_shown_to_its_own_family_only(api, stack):
    from kezek.events import new_event
    from services.gateway import vouchers

    assert api.get("/api/v1/categories").json() == ["general", "privileged", "extraordinary", "voucher"]
    a_token, a_app = register(api, stack, child={**CHILD, "pin": "21506202400071"},
                              parent={**MOTHER, "email": "voucher-a@example.kg"}, confirm={**CONFIRM, "category": "voucher"})
    b_token, b_app = register(api, stack, child={**CHILD, "pin": "11506202400073", "name": "Бермет"},
                              parent={**MOTHER, "pin": "21203199000126", "email": "voucher-b@example.kg"})
    a, b = ({"authorization": f"Bearer {t}"} for t in (a_token, b_token))
    assert api.get("/api/v1/me", headers=a).json()["applications"][0]["voucher"] == {"status": "pending"}
    assert api.get("/api/v1/me", headers=b).json()["applications"][0]["voucher"] is None

    event = new_event("verification.voucher_decided.v1", a_app, {
        "application_id": a_app, "parent_id": None, "decision": "rejected", "benefit_type": None,
        "reason": "the family's income is above the threshold", "decision_number": 3,
        "decided_at": "2026-11-23T06:00:00+00:00"}, source="verification")
    with stack.gateway.state.gateway.sessions() as s, s.begin():
        vouchers.record(s, event)
    voucher = api.get("/api/v1/me", headers=a).json()["applications"][0]["voucher"]
    assert voucher["status"] == "rejected" and voucher["decision_number"] == 3
    assert voucher["reason"] == "the family's income is above the threshold"
    assert "income" not in api.get("/api/v1/me", headers=b).text


def test_only_the_actions_the_rules_allow_are_accepted(api, stack):
    token, app = register(api, stack, child={**CHILD, "pin": "21506202400093"},
                          parent={**MOTHER, "email": "actions@example.kg"})
    ref = stack.queue.publish_place(app)
    h = {"authorization": f"Bearer {token}"}
    r = api.post(f"/api/v1/me/referrals/{ref['referral_id']}/extend", headers=h)
    assert r.status_code == 409 and fields(r) == ["referral"]
    r = api.post(f"/api/v1/me/referrals/{ref['referral_id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert stack.queue.entries[app]["preferences"] == ["bsk-7"]
    assert stack.queue.workflows.acts[-1][0] == "cancel" and stack.queue.workflows.acts[-1][2].startswith("parent:")
    assert api.get("/api/v1/me", headers=h).json()["applications"][0]["referrals"] == []


def test_remove_from_queue_frees_the_pin_for_a_new_application(api, stack):
    token, app = register(api, stack, child={**CHILD, "pin": "21506202400094"},
                          parent={**MOTHER, "email": "remove@example.kg"})
    h = {"authorization": f"Bearer {token}"}
    assert api.post(f"/api/v1/me/applications/{app}/remove", headers=h).status_code == 200
    assert stack.queue.removed_by[app].startswith("parent:")
    assert api.get("/api/v1/me", headers=h).json()["applications"][0]["status"] == "removed"
    t = draft(api)
    assert api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "21506202400094"}).status_code == 200


def test_kindergartens_nearby_are_sorted_by_distance(api, stack):
    token, _ = register(api, stack, child={**CHILD, "pin": "21506202400095"},
                        parent={**MOTHER, "email": "near@example.kg"})
    found = api.get("/api/v1/me/kindergartens-nearby", headers={"authorization": f"Bearer {token}"}).json()
    distances = [k["distance_m"] for k in found]
    assert distances == sorted(distances) and found[0]["id"] == "bsk-12"
    assert all(k["id"] != "osh-3" for k in found)   # 300 km away: not "near"


# --- the gateway itself -----------------------------------------------------------

def test_openapi_is_served_at_api_docs(api):
    assert api.get("/api/docs").status_code == 200
    spec = api.get("/api/openapi.json").json()
    assert "/api/v1/sessions" in spec["paths"] and "/api/v1/me" in spec["paths"]


def test_every_answer_carries_a_request_id(api):
    r = api.get("/api/v1/address/regions", headers={"x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    assert api.get("/").headers["x-request-id"]


def test_queue_down_is_a_503_not_a_500(tmp_path):
    import httpx

    stack = Stack(tmp_path, rate_limit_per_minute=1000)
    stack.gateway.state.gateway.queue.http.http = httpx.AsyncClient(base_url="http://127.0.0.1:9")
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        token, _ = register(c, stack, child={**CHILD, "pin": "21506202400096"},
                            parent={**MOTHER, "email": "down@example.kg"})
        h = {"authorization": f"Bearer {token}"}
        me = c.get("/api/v1/me", headers=h)
        assert me.status_code == 200 and me.json()["applications"][0]["queue_error"] == "unavailable"
        r = c.get("/api/v1/me/kindergartens-nearby", headers=h)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
