"""Over HTTP, as a browser would: a caseworker cannot read or act on another
district's cases, each role reaches only its pages, forms need the session's
CSRF token, and refusals name the field in the caseworker's language."""
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from kezek.db import make_engine, make_session_factory
from tests.migrated import upgrade
from services.verification.api import create_app
from workflows import rules
from services.verification.bootstrap import build_ingest
from services.verification.settings import VerificationSettings
from tests.fakes.verification import (
    DISTRICT_A, DISTRICT_B, PASSWORD, PDF, FakeReferrals, application_received, application_submitted, deliver,
    referral_issued,
)

NOW = datetime(2027, 3, 10, 5, 0, tzinfo=UTC)
TODAY = date(2027, 3, 10)
STAFF = (("aida", "caseworker", DISTRICT_A), ("bakyt", "caseworker", DISTRICT_B),
         ("dinara", "supervisor", DISTRICT_B), ("emil", "commission", DISTRICT_A), ("root", "admin", ""))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    state = tmp_path_factory.mktemp("verification")
    settings = VerificationSettings(state_dir=state, env="test")
    url = settings.database_url_for("verification")
    upgrade("verification", url)
    fake = FakeReferrals()
    app = create_app(settings, referrals=fake, clock=lambda: NOW,
                     hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    service = app.state.service
    for login, role, district in STAFF:
        service.staff.add(login, login.title(), role, district, PASSWORD)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    ingest = build_ingest(clock=lambda: NOW)
    for rid, app_id, pin, district, surname in (("r-a", "a-a", "10103202300011", DISTRICT_A, "Асанова"),
                                                ("r-b", "a-b", "20205202300022", DISTRICT_B, "Бекова")):
        deliver(sessions, ingest, application_submitted(app_id, pin=pin, district=district, surname=surname))
        deliver(sessions, ingest, application_received(app_id))
        deliver(sessions, ingest, referral_issued(rid, app_id, deadline=NOW + timedelta(days=3),
                                                  at=NOW - timedelta(days=1)))
    service.certificates.record(service.staff.login("aida", PASSWORD)[1], "r-a", organisation="В/ч 1", number="1",
                               issued_on=TODAY.isoformat(), scan=PDF)
    yield app, fake
    engine.dispose()


def client_for(app, login: str | None, lang: str = "ru") -> TestClient:
    client = TestClient(app, follow_redirects=False)
    client.cookies.set("kezek_lang", lang)
    if login:
        r = client.post("/login", data={"login": login, "password": PASSWORD, "next": "/"})
        assert r.status_code == 303, r.text
    return client


def csrf_of(client: TestClient, path: str) -> str:
    html = client.get(path).text
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_a_caseworker_sees_only_their_districts_worklist(site):
    app, _ = site
    html = client_for(app, "aida").get("/worklist").text
    assert "Асанова" in html and "Бекова" not in html
    html = client_for(app, "bakyt").get("/worklist").text
    assert "Бекова" in html and "Асанова" not in html


def test_a_caseworker_cannot_read_another_districts_case_or_its_scan(site):
    app, _ = site
    bakyt = client_for(app, "bakyt")
    r = bakyt.get("/cases/r-a")
    assert r.status_code == 404 and "Асанова" not in r.text and "В вашем районе такого дела нет." in r.text
    cert_id = re.search(r"/certificates/([0-9a-f-]+)/scan", client_for(app, "aida").get("/cases/r-a").text).group(1)
    r = bakyt.get(f"/cases/r-a/certificates/{cert_id}/scan")
    assert r.status_code == 404 and not r.content.startswith(b"%PDF")


def test_a_caseworker_cannot_act_on_another_districts_case(site):
    app, fake = site
    bakyt = client_for(app, "bakyt")
    csrf = csrf_of(bakyt, "/worklist")
    before = len(fake.calls)
    for action, data in (("confirm", {}), ("reject", {"reason": "false"}), ("request-certificate", {})):
        r = bakyt.post(f"/cases/r-a/{action}", data={"csrf": csrf, "nonce": f"x-{action}", **data})
        assert r.status_code == 404, action
    r = bakyt.post("/cases/r-a/certificate", data={"csrf": csrf, "organisation": "U", "number": "2",
                                                   "issued_on": TODAY.isoformat()},
                   files={"scan": ("s.pdf", PDF, "application/pdf")})
    assert r.status_code == 404
    assert len(fake.calls) == before
    # The attempts are in the audit log, for the district supervisor to see.
    audit = client_for(app, "dinara").get("/audit", params={"actor": "bakyt", "subject": "r-a"}).text
    assert audit.count("доступ запрещён") >= 5       # the outcome, in the page's language


def test_the_case_itself_opens_for_its_own_districts_caseworker_and_for_the_administrator(site):
    app, _ = site
    assert "Асанова" in client_for(app, "aida").get("/cases/r-a").text
    root = client_for(app, "root")
    assert root.get("/cases/r-b").status_code == 200
    r = root.post("/cases/r-b/reject", data={"csrf": csrf_of(root, "/worklist"), "reason": "x"})
    assert r.status_code == 403                      # administrators oversee, they do not decide


def test_each_role_reaches_only_its_pages(site):
    app, _ = site
    aida, emil = client_for(app, "aida"), client_for(app, "emil")
    assert aida.get("/audit").status_code == 403
    assert aida.get("/vouchers").status_code == 403
    assert emil.get("/worklist").status_code == 403
    assert emil.get("/cases/r-a").status_code == 403
    assert emil.get("/vouchers").status_code == 200
    assert client_for(app, "dinara").get("/audit").status_code == 200
    assert aida.get("/").headers["location"] == "/worklist"
    assert emil.get("/").headers["location"] == "/vouchers"


def test_pages_need_a_session_and_forms_need_its_csrf_token(site):
    app, fake = site
    r = client_for(app, None).get("/cases/r-a")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    aida = client_for(app, "aida")
    before = len(fake.calls)
    r = aida.post("/cases/r-a/confirm", data={"nonce": "no-csrf"})
    assert r.status_code == 403 and len(fake.calls) == before
    r = aida.post("/cases/r-a/confirm", data={"csrf": "0" * 32, "nonce": "bad-csrf"})
    assert r.status_code == 403 and len(fake.calls) == before


def test_wrong_password_names_the_field_in_the_caseworkers_language(site):
    app, _ = site
    for lang, text in (("ru", "Логин: неверный логин или пароль"), ("ky", "Логин: логин же сырсөз туура эмес")):
        client = client_for(app, None, lang)
        r = client.post("/login", data={"login": "nobody", "password": "whatever", "next": "/"})
        assert r.status_code == 401 and text in r.text


@pytest.mark.parametrize("lang, expected", [
    ("ru", ["Скан справки: должен быть файлом PDF, JPEG или PNG", "Дата выдачи: не может быть в будущем"]),
    ("ky", ["Маалымкаттын сканы: PDF, JPEG же PNG файлы болушу керек", "Берилген күнү: келечекте боло албайт"]),
])
def test_certificate_errors_name_the_field_in_the_page_language(site, lang, expected):
    app, _ = site
    aida = client_for(app, "aida", lang)
    r = aida.post("/cases/r-a/certificate",
                  data={"csrf": csrf_of(aida, "/cases/r-a"), "organisation": "В/ч 1", "number": "5",
                        "issued_on": (TODAY + timedelta(days=1)).isoformat()},
                  files={"scan": ("virus.exe", b"MZ\x90\x00", "application/pdf")})
    assert r.status_code == 422
    for text in expected:
        assert text in r.text
    assert 'aria-invalid="true" aria-describedby="e-scan"' in r.text


def test_an_oversize_scan_is_refused_with_the_limit(site):
    app, _ = site
    aida = client_for(app, "aida")
    r = aida.post("/cases/r-a/certificate",
                  data={"csrf": csrf_of(aida, "/cases/r-a"), "organisation": "В/ч 1", "number": "5",
                        "issued_on": TODAY.isoformat()},
                  files={"scan": ("big.pdf", b"%PDF-" + b"0" * (6 * 1024 * 1024), "application/pdf")})
    assert r.status_code == 422 and "Скан справки: больше 5 МБ" in r.text


def test_pages_with_personal_data_are_not_cached_or_framed(site):
    app, _ = site
    r = client_for(app, "aida").get("/cases/r-a")
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"] or "'unsafe-inline'" not in r.headers[
        "content-security-policy"]


def test_pages_are_light_for_a_slow_line(site):
    """A case page, its stylesheet and script together stay under 20 KB,
    and nothing is fetched from anywhere else."""
    app, _ = site
    aida = client_for(app, "aida")
    html = aida.get("/cases/r-a").text
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert len(assets) == 2 and not re.search(r'(?:href|src)="(?:https?:)?//', html)
    total = len(html.encode()) + sum(len(aida.get(a).content) for a in assets)
    assert total < 20_000, total


def test_a_guessing_client_is_told_to_wait_with_retry_after_and_the_owner_signs_in_elsewhere(site):
    app, _ = site
    app.state.service.staff.add("guessed", "Guessed", "caseworker", DISTRICT_A, PASSWORD)
    saved = app.state.trusted_proxies
    app.state.trusted_proxies = frozenset({"testclient"})      # a reverse proxy names the client
    try:
        guesser = client_for(app, None, "ky")
        guesser.headers["X-Forwarded-For"] = "203.0.113.9"
        for _ in range(4):
            r = guesser.post("/login", data={"login": "guessed", "password": "wrong password", "next": "/"})
            assert r.status_code == 401
        r = guesser.post("/login", data={"login": "guessed", "password": PASSWORD, "next": "/"})
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        assert "2 секунддан кийин кайра аракет кылыңыз" in r.text
        owner = client_for(app, None)
        owner.headers["X-Forwarded-For"] = "10.1.1.20"
        r = owner.post("/login", data={"login": "guessed", "password": PASSWORD, "next": "/worklist"})
        assert r.status_code == 303 and r.headers["location"] == "/login/notice?next=/worklist"
        page = owner.get(r.headers["location"])
        assert page.status_code == 200
        assert "были введены 4 неверных пароля" in page.text and 'href="/worklist"' in page.text
    finally:
        app.state.trusted_proxies = saved


def test_a_forwarded_address_from_an_untrusted_peer_is_not_believed(site):
    app, _ = site
    app.state.service.staff.add("rotated", "Rotated", "caseworker", DISTRICT_A, PASSWORD)
    client = client_for(app, None)
    statuses = []
    for n in range(6):       # a new made-up address each time: still one client
        client.headers["X-Forwarded-For"] = f"198.51.100.{n}"
        statuses.append(client.post("/login", data={"login": "rotated", "password": "wrong", "next": "/"}).status_code)
    assert statuses == [401] * 4 + [429, 429]


def test_the_workflows_refusal_is_said_in_the_caseworkers_language(site):
    app, fake = site
    aida = client_for(app, "aida", "ky")
    fake.refuse = rules.Refusal("window_ended", act="confirm_privilege", what="confirm the privilege",
                                deadline="2027-03-10T00:00:00")
    try:
        r = aida.post("/cases/r-a/confirm", data={"csrf": csrf_of(aida, "/cases/r-a"), "nonce": "late-1"},
                      follow_redirects=True)
    finally:
        fake.refuse = None
    assert r.status_code == 200 and "ырастоо мөөнөтү 10.03.2027 00:00 аяктаган" in r.text
    assert "the window ended" not in r.text
