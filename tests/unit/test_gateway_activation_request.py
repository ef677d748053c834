"""A parent whose account has no password yet (moved from the old portal, or
whose link expired) asks the portal for an activation link: reachable from
the login page, the same answer whether or not the address has an account,
errors naming the field in the parent's language, limited per client; then
activation and the cabinet work as for any parent."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient

from tests.fakes.gateway import Stack
from services.registration.service import ImportAccount, ImportApplication
from tests.unit.test_gateway_portal import PASSWORD, errors

IMPORTED = "imported.parent@example.kg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("portal"), rate_limit_per_minute=100_000, activation_requests_burst=100)
    reg = s.registration.state.service
    assert reg.import_accounts([ImportAccount(id="balalyk-parent-p1", email=IMPORTED, pin="20101198012345",
                                              surname="Асанова", name="Айгерим", phone="0555 123 456")]) == [True]
    app = ImportApplication(id="balalyk-100001", account_id="balalyk-parent-p1", child_pin="21506202400071",
                            surname="Асанов", name="Эрлан", birth_date=date(2024, 6, 15), category="general",
                            language="ru", queue_date=datetime(2023, 6, 7, 8, 39, tzinfo=UTC),
                            preferences=("bsk-12",))
    assert reg.import_applications([app]) == [True]
    # The queue has the entry from the same import.
    s.queue.submitted({"application_id": app.id, "category": "general", "queue_date": app.queue_date.isoformat(),
                       "child_birth_date": "2024-06-15", "language": "ru", "preferences": ["bsk-12"],
                       "parent_id": app.account_id, "child_surname": "Асанов", "child_name": "Эрлан"})
    return s


def links_to(stack, email: str) -> int:
    return sum(1 for e in stack.events("account.activation_issued.v1") if e["email"] == email)


@pytest.mark.parametrize("lang, words", [("ky", "Активдештирүү шилтемесин алыңыз"),
                                         ("ru", "Получите ссылку для активации")])
def test_login_page_leads_to_the_activation_link_request(stack, lang, words):
    c = stack.browser(lang)
    r = c.get("/login")
    assert 'href="/activate/request"' in r.text and words in r.text
    r = c.get("/activate/request")
    assert r.status_code == 200 and 'id="f-email"' in r.text and 'for="f-email"' in r.text


def test_activation_link_request_answers_the_same_whether_or_not_the_address_has_an_account(stack):
    c = stack.browser("ru")
    before = links_to(stack, IMPORTED)
    known = c.post("/activate/request", data={"email": IMPORTED})
    unknown = c.post("/activate/request", data={"email": "nobody.here@example.kg"})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text and "ссылка" in known.text
    assert links_to(stack, IMPORTED) == before + 1
    assert links_to(stack, "nobody.here@example.kg") == 0


def test_activation_link_request_names_the_field_in_the_parents_language(stack):
    c = stack.browser("ru")
    r = c.post("/activate/request", data={"email": "not an address"})
    assert r.status_code == 422
    assert errors(r.text) == [("f-email", "Электронная почта: введите адрес электронной почты, например "
                                          "name@example.kg.")]
    assert 'value="not an address"' in r.text
    r = stack.browser("ky").post("/activate/request", data={"email": ""})
    assert r.status_code == 422
    assert errors(r.text) == [("f-email", "Электрондук почта: бул талааны толтуруу милдеттүү.")]


def test_activation_link_requests_are_limited_per_client(tmp_path):
    s = Stack(tmp_path, rate_limit_per_minute=100_000, activation_requests_burst=2).freeze_limits()
    c = s.browser("ru")
    assert [c.post("/activate/request", data={"email": f"a{i}@example.kg"}).status_code for i in range(3)] == \
        [200, 200, 429]
    r = c.post("/activate/request", data={"email": "a@example.kg"})
    assert errors(r.text) == [("f-request", "Запрос: слишком много запросов; подождите минуту и попробуйте снова.")]
    api = TestClient(s.gateway, base_url="https://testserver")
    assert api.post("/api/v1/activation/resend", json={"email": "a@example.kg"}).status_code == 429


def test_api_activation_link_request_answers_the_same_for_any_address(stack):
    api = TestClient(stack.gateway, base_url="https://testserver")
    known = api.post("/api/v1/activation/resend", json={"email": IMPORTED})
    unknown = api.post("/api/v1/activation/resend", json={"email": "nobody.api@example.kg"})
    assert known.status_code == unknown.status_code == 202 and known.json() == unknown.json()
    bad = api.post("/api/v1/activation/resend", json={"email": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "email"


def test_expired_activation_link_page_offers_a_new_link(stack):
    r = stack.browser("ru").get("/activate?token=not-a-real-token")
    assert r.status_code == 422 and 'href="/activate/request"' in r.text


def test_imported_parent_activates_from_the_requested_link_and_sees_the_child_in_the_cabinet(stack):
    c = stack.browser("ru")
    c.post("/activate/request", data={"email": IMPORTED})
    token = stack.last_activation_token(IMPORTED)
    r = c.post("/activate", data={"token": token, "email": IMPORTED, "password": PASSWORD, "password2": PASSWORD})
    assert r.url.path == "/login", errors(r.text)
    r = c.post("/login", data={"login": IMPORTED, "password": PASSWORD})
    assert r.url.path == "/cabinet"
    assert "Асанов Эрлан" in r.text and "В очереди" in r.text
    assert '<td class="position">' in r.text
