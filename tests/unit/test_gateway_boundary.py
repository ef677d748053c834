"""The gateway at the trust boundary (issue 13): what a parent's draft token
no longer opens, what registration refuses at submission, bad input that
is a 4xx and never a 500, outages that are a 503 with Retry-After, and the
rate limits keyed by who is verified (or the address, behind trusted
proxies only), each 429 saying when to try again."""
from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.fakes.gateway import Stack
from tests.builders import CHILD, MOTHER as PARENT
from tests.unit.test_gateway_api import CONFIRM, draft, fields, register, stack_code
from tests.unit.test_gateway_portal import PARENT_FORM, csrf, errors


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("boundary"), rate_limit_per_minute=100_000)


def filled_draft(api, stack, pin: str) -> str:
    email = f"{uuid.uuid4().hex[:10]}@example.kg"
    t = draft(api)
    assert api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": pin}).status_code == 200
    assert api.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": email}).status_code == 200
    stack_code(api, stack, t, email)
    return t


# --- a submitted draft -------------------------------------------------------------

def test_a_submitted_draft_is_no_longer_readable_by_its_token(api, stack):
    t = filled_draft(api, stack, "21506202400201")
    assert api.get(f"/api/v1/drafts/{t}").json()["child"]["pin"] == "21506202400201"
    assert api.post(f"/api/v1/drafts/{t}/submit", json=CONFIRM).status_code == 201
    r = api.get(f"/api/v1/drafts/{t}")
    assert r.status_code == 404 and fields(r) == ["draft"]
    assert "21506202400201" not in r.text and PARENT["document_number"] not in r.text
    # Nor does registration keep the draft's copy of the data.
    with stack.registration.state.engine.connect() as conn:
        kept = conn.exec_driver_sql("SELECT child, parent, address, email_code FROM drafts "
                                    "WHERE application_id IS NOT NULL").all()
    assert kept and all("21506202400201" not in str(row) and "ID1234567" not in str(row) for row in kept)


# --- an unknown kindergarten ---------------------------------------------------------

def test_an_unknown_kindergarten_is_refused_at_submission_naming_the_field(api, stack):
    t = filled_draft(api, stack, "21506202400202")
    before = len(stack.events("application.received.v1"))
    r = api.post(f"/api/v1/drafts/{t}/submit", json={**CONFIRM, "preferences": ["bsk-12", "no-such-kg"]},
                 headers={"accept-language": "ru"})
    assert r.status_code == 422 and fields(r) == ["preferences"]
    assert r.json()["errors"][0]["code"] == "kindergarten_unknown" and "no-such-kg" in r.text
    # Nothing was promised: no receipt, no queue entry, the draft waits.
    assert len(stack.events("application.received.v1")) == before
    assert api.post(f"/api/v1/drafts/{t}/submit", json=CONFIRM).status_code == 201


@pytest.mark.parametrize("lang,words", [
    ("ky", "no-such-kg бала бакчасы бала бакчалардын реестринде жок"),
    ("ru", "детского сада no-such-kg нет в реестре детских садов"),
])
def test_an_unknown_kindergarten_is_refused_on_the_page_in_its_language(stack, lang, words):
    c = TestClient(stack.gateway, base_url="https://testserver")
    c.cookies.set("kezek_lang", lang)
    token = csrf(c.get("/apply", follow_redirects=True).text)
    pin = "21506202400203" if lang == "ky" else "21506202400204"
    email = f"kg-{lang}@example.kg"
    c.post("/apply/child", data={"csrf": token, "pin": pin, "surname": "Асанов", "name": "Айбек"})
    c.post("/apply/parent", data={"csrf": token, **PARENT_FORM, "email": email})
    c.post("/apply/contacts", data={"csrf": token, "action": "send"})
    c.post("/apply/contacts", data={"csrf": token, "action": "verify", "code": stack.last_code(email)})
    r = c.post("/apply/confirm", data={"csrf": token, "category": "general", "language": "ru",
                                       "preference1": "no-such-kg", "agreement": "on"})
    assert r.status_code == 422 and r.url.path == "/apply/confirm"
    [(anchor, text)] = errors(r.text)
    assert anchor == "f-preferences" and words in text


# --- bad input: a 4xx naming the field, never a 500 ------------------------------------

@pytest.mark.parametrize("step,body,field", [
    ("child", {**CHILD, "pin": 21506202400011}, "child.pin"),
    ("child", {**CHILD, "name": ["Айбек"]}, "child.name"),
    ("parent", {**PARENT, "phone": 996555123456}, "parent.phone"),
    ("parent", {**PARENT, "address": "Бишкек"}, "address"),
    ("parent", {**PARENT, "address": {**PARENT["address"], "house": 12}}, "address.house"),
])
def test_non_string_values_are_a_422_naming_the_field(api, step, body, field):
    t = draft(api)
    if step == "parent":
        api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "11506202400211"})
    r = api.put(f"/api/v1/drafts/{t}/{step}", json=body)
    assert r.status_code == 422 and field in fields(r), r.text


def test_non_string_values_at_submission_are_a_422_naming_the_field(api, stack):
    t = filled_draft(api, stack, "21506202400205")
    for body, field in (({**CONFIRM, "preferences": [12]}, "preferences.0"),
                        ({**CONFIRM, "category": {"a": 1}}, "category"),
                        ({**CONFIRM, "preferences": "bsk-12"}, "preferences")):
        r = api.post(f"/api/v1/drafts/{t}/submit", json=body)
        assert r.status_code == 422 and fields(r) == [field], r.text


@pytest.mark.parametrize("path", ["/api/v1/drafts/a%0Ab", "/api/v1/drafts/a%00b/child",
                                  "/api/v1/address/regions/%7F/districts"])
def test_a_control_character_in_a_path_is_a_400_not_a_500(api, path):
    r = api.request("PUT" if path.endswith("child") else "GET", path, json=CHILD)
    assert r.status_code == 400 and r.json()["code"] == "bad_path"


@pytest.mark.parametrize("value", ["a%2Fb", "..%2F..%2Fme", "a%3Fb%3Dc", "%25", "%C3%A9", "a%20b", "x" * 300])
def test_odd_path_parameters_stay_one_segment_upstream(api, value):
    r = api.get(f"/api/v1/drafts/{value}")
    assert r.status_code in (404, 422) and r.headers["content-type"].startswith("application/problem+json")
    r = api.get(f"/api/v1/address/regions/{value}/districts")
    assert r.status_code in (200, 404, 422)


def test_a_body_over_the_limit_is_a_413(tmp_path):
    small = Stack(tmp_path, max_body_bytes=2048)
    with TestClient(small.gateway, base_url="https://testserver") as c:
        r = c.post("/api/v1/drafts", content=b'{"locale": "' + b"k" * 5000 + b'"}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 413


# --- outages: 503 with Retry-After --------------------------------------------------

def down(stack: Stack, service: str) -> None:
    client = getattr(stack.gateway.state.gateway, service).http
    client.http = httpx.AsyncClient(base_url="http://127.0.0.1:9")


def test_an_outage_of_registration_is_a_503_with_retry_after_on_pages_and_in_the_api(tmp_path):
    stack = Stack(tmp_path)
    down(stack, "registration")
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        for r in (c.post("/api/v1/drafts", json={}), c.get("/api/v1/me", headers={"authorization": "Bearer abc"}),
                  c.get("/apply"), c.get("/cabinet", cookies={"kezek_session": "abc"})):
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, (r.request.url, r.text[:200])


def test_an_outage_of_notifications_or_temporal_is_a_503_with_retry_after(tmp_path):
    from services.gateway.referrals import TemporalReferrals

    stack = Stack(tmp_path)
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        token, app_id = register(c, stack, child={**CHILD, "pin": "21506202400206"},
                                 parent={**PARENT, "email": "outage@example.kg"})
        h = {"authorization": f"Bearer {token}"}
        ref = stack.queue.publish_place(app_id)
        down(stack, "notifications")
        r = c.get("/api/v1/me/notifications", headers=h)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        stack.gateway.state.gateway.referrals = TemporalReferrals("127.0.0.1:9")
        r = c.post(f"/api/v1/me/referrals/{ref['referral_id']}/cancel", headers=h)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text


# --- rate limits -------------------------------------------------------------------------

def limited_stack(tmp_path, **limits) -> Stack:
    return Stack(tmp_path, **{"rate_limit_per_minute": 1000, "rate_limit_per_address_per_minute": 1000,
                              **limits}).freeze_limits()


def test_rotating_random_bearers_do_not_escape_the_limit_of_their_address(tmp_path):
    stack = limited_stack(tmp_path, rate_limit_per_address_per_minute=5)
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        codes = [c.get("/api/v1/address/regions", headers={"authorization": f"Bearer {uuid.uuid4().hex}"})
                 .status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}
    with TestClient(stack.gateway, base_url="https://testserver", client=("198.51.100.7", 5000)) as other:
        assert other.get("/api/v1/address/regions").status_code == 200     # another address: its own


def test_a_signed_in_parent_is_limited_by_identity_not_by_address(tmp_path):
    stack = limited_stack(tmp_path, rate_limit_per_minute=12, rate_limit_per_address_per_minute=1000)
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        token, _ = register(c, stack, child={**CHILD, "pin": "21506202400207"},
                            parent={**PARENT, "email": "polling@example.kg"})
    h = {"authorization": f"Bearer {token}"}
    codes = []
    for n in range(14):     # the same family from ever new addresses (a phone on the move)
        with TestClient(stack.gateway, base_url="https://testserver", client=(f"203.0.113.{n}", 1)) as phone:
            codes.append(phone.get("/api/v1/me", headers=h).status_code)
    assert 429 in codes and codes.count(200) <= 12


def test_families_behind_one_address_each_have_their_own_allowance(tmp_path):
    stack = limited_stack(tmp_path, rate_limit_per_address_per_minute=20)
    bearers = []
    for n, email in enumerate(("carrier-a@example.kg", "carrier-b@example.kg")):
        with TestClient(stack.gateway, base_url="https://testserver", client=(f"198.51.100.{n + 1}", 1)) as c:
            token, _ = register(c, stack, child={**CHILD, "pin": f"2150620240021{n}"},
                                parent={**PARENT, "email": email, "pin": f"1120319900013{n}"})
            bearers.append(token)
    with TestClient(stack.gateway, base_url="https://testserver", client=("203.0.113.200", 1)) as shared:
        codes = [shared.get("/api/v1/me", headers={"authorization": f"Bearer {bearers[n % 2]}"}).status_code
                 for n in range(30)]
        assert codes == [200] * 30
        guesses = [shared.get("/api/v1/me", headers={"authorization": f"Bearer {uuid.uuid4().hex}"}).status_code
                   for _ in range(22)]
        assert guesses[:20] == [401] * 20 and guesses[20:] == [429, 429]
        # The guesser's address is over; the families' sessions still open,
        # even when they must be looked up again.
        stack.gateway.state.gateway.parents._cache.clear()
        assert shared.get("/api/v1/me", headers={"authorization": f"Bearer {bearers[0]}"}).status_code == 200


def test_every_429_says_when_to_try_again_in_the_readers_language(tmp_path):
    stack = limited_stack(tmp_path, rate_limit_per_address_per_minute=2)
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        c.get("/api/v1/address/regions")
        c.get("/")
        api = c.get("/api/v1/address/regions", headers={"accept-language": "ru"})
        page = c.get("/login", headers={"accept-language": "ru"})
    for r in (api, page):
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert api.json()["errors"][0]["field"] == "request" and "Запрос" in api.json()["errors"][0]["message"]
    assert '<html lang="ru">' in page.text and "слишком много запросов" in page.text


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path):
    stack = limited_stack(tmp_path, rate_limit_per_address_per_minute=2, trusted_proxies="10.0.0.0/8")

    def via(peer: str, forwarded: str) -> int:
        with TestClient(stack.gateway, base_url="https://testserver", client=(peer, 1)) as c:
            return c.get("/api/v1/address/regions", headers={"x-forwarded-for": forwarded}).status_code

    # Behind the proxy each parent has an allowance of their own...
    assert [via("10.0.0.5", f"198.51.100.{n}") for n in range(6)] == [200] * 6
    # ...which a forged hop written before the proxy's cannot change.
    assert [via("10.0.0.5", f"1.2.3.{n}, 198.51.100.77") for n in range(3)] == [200, 200, 429]
    # A client that is no proxy is counted by its own address, whatever it claims.
    assert [via("203.0.113.50", f"198.51.100.{n + 10}") for n in range(3)] == [200, 200, 429]


def test_limits_are_shared_by_every_gateway_replica(tmp_path):
    from services.gateway.api import create_app

    first = limited_stack(tmp_path, rate_limit_per_address_per_minute=4)
    second = create_app(first.settings, transports={"registration": httpx.ASGITransport(app=first.registration)})
    second.state.gateway.limits.clock = first.gateway.state.gateway.limits.clock
    with TestClient(first.gateway, base_url="https://testserver") as a, \
            TestClient(second, base_url="https://testserver") as b:
        codes = [(a if n % 2 else b).get("/api/v1/address/regions").status_code for n in range(6)]
    assert codes == [200] * 4 + [429] * 2


# --- e-mail codes per address and per client ---------------------------------------------

def test_new_drafts_do_not_send_one_address_a_code_each(api, stack):
    sent = []
    for n in range(4):
        t = draft(api)
        api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": f"2150620240030{n}"})
        api.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": "flooded@example.kg"})
        sent.append(api.post(f"/api/v1/drafts/{t}/email-code"))
    assert [r.status_code for r in sent] == [202, 429, 429, 429]
    assert fields(sent[1]) == ["parent.email"] and sent[1].json()["errors"][0]["code"] == "code_resend_too_soon"
    assert 1 <= int(sent[1].headers["retry-after"]) <= 60
    assert len([e for e in stack.events("registration.email_code_issued.v1") if e["email"] == "flooded@example.kg"]) == 1


def test_one_client_sends_a_limited_number_of_codes_whatever_the_addresses(tmp_path):
    stack = Stack(tmp_path, codes_per_client_per_hour=3)
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        codes = []
        for n in range(5):
            t = draft(c)
            c.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": f"2150620240031{n}"})
            c.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": f"many-{n}@example.kg"})
            codes.append(c.post(f"/api/v1/drafts/{t}/email-code"))
        assert [r.status_code for r in codes] == [202, 202, 202, 429, 429]
        assert codes[3].json()["errors"][0]["code"] == "code_too_many_sends" and codes[3].headers["retry-after"]
    with TestClient(stack.gateway, base_url="https://testserver", client=("198.51.100.8", 1)) as other:
        t = draft(other)
        other.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": "21506202400320"})
        other.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": "elsewhere@example.kg"})
        assert other.post(f"/api/v1/drafts/{t}/email-code").status_code == 202


def test_the_workflows_refusal_reaches_the_page_in_the_parents_language(tmp_path):
    from services.gateway.referrals import refused
    from tests.unit.test_gateway_portal import activate_and_login, apply

    stack = Stack(tmp_path)

    class WindowEnded:
        """The referral's workflow, whose window ended a moment ago."""

        async def cancel(self, referral_id: str, actor: str) -> dict:
            raise refused("cannot cancel the referral: the window ended at 2027-03-08T00:00:00",
                          code="window_ended", params={"deadline": "2027-03-08T00:00:00"})

    c = stack.browser("ky")
    apply(c, stack, "21506202400209", "window@example.kg")
    activate_and_login(c, stack, "window@example.kg")
    ref = stack.queue.publish_place(list(stack.queue.entries)[-1])
    stack.gateway.state.gateway.referrals = WindowEnded()
    page = c.get(f"/cabinet/referrals/{ref['referral_id']}/cancel")
    r = c.post(f"/cabinet/referrals/{ref['referral_id']}/cancel", data={"csrf": csrf(page.text)})
    assert r.status_code == 409 and "буга мөөнөт бүттү." in r.text and "window ended" not in r.text
