"""The staff pages answer an address they do not have, a wrong method and
a bug with a page of their own layout in the reader's language, never JSON
or a bare "Internal Server Error"."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from kezek.trust import PUBLIC
from tests.fakes.verification import DISTRICT_A, PASSWORD, staff_site

HEADINGS = {
    404: {"ru": "Страница не найдена", "ky": "Барак табылган жок", "kk": "Бет табылмады"},
    405: {"ru": "Эту страницу нельзя открыть таким способом", "ky": "Бул баракты мындай жол менен ачууга болбойт",
          "kk": "Бұл бетті осылай ашуға болмайды"},
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = staff_site(tmp_path_factory.mktemp("staff"), [("aida", "caseworker", DISTRICT_A)])

    async def boom():
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom, dependencies=[PUBLIC])
    return app


def client(app, lang: str) -> TestClient:
    c = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    c.cookies.set("kezek_lang", lang)
    return c


@pytest.mark.parametrize("lang", ["ru", "ky", "kk"])
def test_an_unknown_address_is_a_page_not_found_in_the_readers_language(app, lang):
    r = client(app, lang).get("/no/such/page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert f'lang="{lang}"' in r.text and HEADINGS[404][lang] in r.text


@pytest.mark.parametrize("lang", ["ru", "ky", "kk"])
def test_a_wrong_method_says_so(app, lang):
    r = client(app, lang).put("/login")
    assert r.status_code == 405 and HEADINGS[405][lang] in r.text


def test_a_bug_is_a_500_page_with_the_request_id_to_quote(app):
    r = client(app, "kk").get("/boom", headers={"x-request-id": "req-77"})
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "Қате тіркелді" in r.text and "req-77" in r.text and "RuntimeError" not in r.text


@pytest.mark.parametrize("lang,name", [("ru", "Ленинский район"), ("ky", "Ленин району"), ("kk", "Ленинский район")])
def test_the_staff_header_names_the_district_instead_of_its_code(app, lang, name):
    c = client(app, lang)
    assert c.post("/login", data={"login": "aida", "password": PASSWORD, "next": "/"}).status_code == 303
    html = c.get("/worklist").text
    who = html[html.index('class="who"'):][:400]
    assert name in who and f'title="{DISTRICT_A}"' in who and f">{DISTRICT_A}<" not in html
