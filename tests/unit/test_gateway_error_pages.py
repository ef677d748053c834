"""What went wrong is a page of the portal, in its layout and the reader's
language, with the status the HTTP answer carries (404, 405, 429, 500,
503); the JSON API keeps answering problem details."""
from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from kezek.trust import PUBLIC
from tests.fakes.gateway import Stack

HEADINGS = {
    404: {"ky": "Барак табылган жок", "ru": "Страница не найдена", "kk": "Бет табылмады", "en": "Page not found"},
    405: {"ky": "Бул баракты мындай жол менен ачууга болбойт", "ru": "Эту страницу нельзя открыть таким способом",
          "kk": "Бұл бетті осылай ашуға болмайды", "en": "This page cannot be opened this way"},
    429: {"ky": "Сурамдар өтө көп", "ru": "Слишком много запросов", "kk": "Сұраулар тым көп",
          "en": "Too many requests"},
    500: {"ky": "Биз тарапта ката кетти", "ru": "На нашей стороне произошла ошибка", "kk": "Біз жақта қате шықты",
          "en": "Something went wrong on our side"},
    503: {"ky": "Кызмат убактылуу жеткиликсиз", "ru": "Сервис временно недоступен",
          "kk": "Қызмет уақытша қолжетімсіз", "en": "The service is temporarily unavailable"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("errors"), rate_limit_per_minute=100_000)

    async def boom():
        raise RuntimeError("a bug")

    stack.gateway.add_api_route("/boom", boom, dependencies=[PUBLIC], include_in_schema=False)
    return stack


def reader(stack, lang: str) -> TestClient:
    return stack.browser(lang, raise_server_exceptions=False)


def is_portal_page(r: httpx.Response, lang: str, heading: str) -> bool:
    return (r.headers["content-type"].startswith("text/html") and f'<html lang="{lang}">' in r.text
            and 'class="brand"' in r.text and f"<h1>{heading}</h1>" in r.text)


@pytest.mark.parametrize("lang", ["ky", "ru", "kk", "en"])
def test_an_unknown_address_is_a_404_page_in_the_readers_language(stack, lang):
    r = reader(stack, lang).get("/no/such/page")
    assert r.status_code == 404 and is_portal_page(r, lang, HEADINGS[404][lang])


@pytest.mark.parametrize("lang", ["ky", "ru", "kk", "en"])
def test_a_wrong_method_is_a_405_page(stack, lang):
    r = reader(stack, lang).post("/login/tunduk")
    assert r.status_code == 405 and is_portal_page(r, lang, HEADINGS[405][lang])


def test_a_page_address_with_an_unreadable_query_is_not_found(stack):
    r = reader(stack, "kk").get("/apply/done?new=x")
    assert r.status_code == 404 and is_portal_page(r, "kk", HEADINGS[404]["kk"])


@pytest.mark.parametrize("lang", ["ky", "ru", "kk", "en"])
def test_a_bug_is_a_500_page_with_the_request_id_to_quote(stack, lang):
    r = reader(stack, lang).get("/boom", headers={"x-request-id": "req-42"})
    assert r.status_code == 500 and is_portal_page(r, lang, HEADINGS[500][lang])
    assert "req-42" in r.text and "RuntimeError" not in r.text


def test_the_json_api_keeps_problem_details(stack):
    c = reader(stack, "ru")
    r = c.get("/api/v1/no/such")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_too_many_requests_is_a_429_page_with_retry_after(tmp_path):
    limited = Stack(tmp_path, rate_limit_per_minute=1000, rate_limit_per_address_per_minute=2)
    c = reader(limited, "kk")
    answers = [c.get("/") for _ in range(4)]
    r = answers[-1]
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert is_portal_page(r, "kk", HEADINGS[429]["kk"])


def test_an_outage_is_a_503_page_with_retry_after(tmp_path):
    stack = Stack(tmp_path)
    client = stack.gateway.state.gateway.registration.http
    client.http = httpx.AsyncClient(base_url="http://127.0.0.1:9")
    r = reader(stack, "ky").get("/apply")
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert is_portal_page(r, "ky", HEADINGS[503]["ky"])
