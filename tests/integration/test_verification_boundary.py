"""The staff pages' trust boundary (issue 13) on real PostgreSQL: every route
declares who may use it (the matrix below), the session cookie is the only
way in, a wrong role gets a 403 page in the staff member's language, bad
form input never gives a 5xx, and a database that does not answer gives a
503 page with Retry-After."""
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from kezek.db import ensure_database, make_engine, make_session_factory
from kezek.infra.procs import free_port
from kezek.migrations import upgrade
from kezek.trust import declared_routes
import httpx
import sqlalchemy as sa

from kezek.trust import ServiceKeys
from services.queue.api import create_app as queue_app
from services.queue.usecases import Queue
from services.verification.api import create_app
from services.verification.queue import QueueDesk
from services.verification.bootstrap import build_ingest
from services.verification.models import Staff, audit_trail
from services.verification.settings import VerificationSettings
from tests.fakes.verification import (
    DISTRICT_A, PASSWORD, FakeDirectory, FakeReferrals, application_received, application_submitted, deliver, referral_issued,
)

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 10, 5, 0, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
STAFF = {"caseworker": ("aida", "ru"), "supervisor": ("chynara", "ru"), "commission": ("emil", "ky"),
         "kindergarten": ("kamila", "kk"), "district": ("daniyar", "ru"), "admin": ("root", "ru"),
         "operator": ("olga", "ky")}
ALL = frozenset(STAFF)
CASE = frozenset({"caseworker", "supervisor", "admin"})
ACT = frozenset({"caseworker", "supervisor"})
VOUCHER = frozenset({"commission", "admin"})
KG_VIEW = frozenset({"kindergarten", "district", "admin"})
KG_PLACES = frozenset({"kindergarten", "district"})
KG_ENROL = frozenset({"kindergarten"})
DISTRICT_VIEW = frozenset({"district", "supervisor", "admin"})
DISTRICT_ACTS = frozenset({"district"})
KINDERGARTEN = "kg-sun"

# The route x role matrix of the staff app: who may open each page or send
# each form. Public: the login page, the language switch, and the skeleton's
# /health, /ready, /metrics, the API documentation of its one internal
# route (/docs, /redoc; the static files, a mount).
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/language"),
          ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/redoc")}
MATRIX = {
    ("GET", "/"): ALL,
    ("GET", "/login/notice"): ALL,
    ("GET", "/worklist"): CASE,
    ("GET", "/cases/{referral_id}"): CASE,
    ("GET", "/cases/{referral_id}/certificates/{certificate_id}/scan"): CASE,
    ("POST", "/cases/{referral_id}/certificate"): ACT,
    ("POST", "/cases/{referral_id}/confirm"): ACT,
    ("POST", "/cases/{referral_id}/reject"): ACT,
    ("POST", "/cases/{referral_id}/request-certificate"): ACT,
    ("GET", "/abuse"): CASE,
    ("GET", "/abuse/{case_id}"): CASE,
    ("POST", "/abuse/{case_id}/resolve"): frozenset({"supervisor"}),
    ("GET", "/vouchers"): VOUCHER,
    ("GET", "/vouchers/{application_id}"): VOUCHER,
    ("GET", "/vouchers/{application_id}/decision"): VOUCHER,
    ("POST", "/vouchers/{application_id}/decide"): frozenset({"commission"}),
    ("GET", "/audit"): frozenset({"supervisor", "admin", "operator"}),
    ("GET", "/kindergarten"): KG_VIEW,
    ("GET", "/kindergartens/{kg}"): KG_VIEW,
    ("POST", "/kindergartens/{kg}/places"): KG_PLACES,
    ("POST", "/kindergartens/{kg}/places/withdrawal"): KG_PLACES,
    ("POST", "/kindergartens/{kg}/publications/{publication}/cancel"): KG_PLACES,
    ("POST", "/kindergartens/{kg}/referrals/{referral_id}/enrolment"): KG_ENROL,
    ("POST", "/kindergartens/{kg}/referrals/{referral_id}/declined"): KG_ENROL,
    ("POST", "/kindergartens/{kg}/children/{application_id}/leaving"): KG_ENROL,
    ("GET", "/children"): CASE,
    ("POST", "/children"): CASE,
    ("GET", "/children/{application_id}/looks"): frozenset({"supervisor", "admin"}),
    ("GET", "/district"): DISTRICT_VIEW,
    ("GET", "/districts"): DISTRICT_VIEW,
    ("GET", "/districts/{district}"): DISTRICT_VIEW,
    ("POST", "/districts/{district}/kindergartens"): DISTRICT_ACTS,
    ("GET", "/districts/{district}/kindergartens/{kg}/edit"): DISTRICT_ACTS,
    ("POST", "/districts/{district}/kindergartens/{kg}/edit"): DISTRICT_ACTS,
    ("POST", "/districts/{district}/kindergartens/{kg}/closure"): DISTRICT_ACTS,
    ("GET", "/districts/{district}/schedule"): DISTRICT_VIEW,
    ("POST", "/districts/{district}/schedule"): DISTRICT_ACTS,
    ("POST", "/districts/{district}/schedule/{publication}/cancel"): DISTRICT_ACTS,
    ("GET", "/districts/{district}/figures"): DISTRICT_VIEW,
    ("POST", "/logout"): ALL,
}
# The internal routes (issue 20): the family's own copy and which offices
# looked at its data, for the gateway acting for a parent with a service
# token; no staff session reaches them.
INTERNAL = {("GET", "/api/v1/families/{parent_id}/copy"), ("GET", "/api/v1/families/{parent_id}/looks")}
WRONG_ROLE = {"ru": "Ваша роль этого не позволяет.", "ky": "Сиздин ролуңуз буга уруксат бербейт.",
              "kk": "Сіздің рөліңіз бұған рұқсат бермейді."}


@pytest.fixture(scope="module")
def site(pg_cluster, tmp_path_factory):
    url_template = pg_cluster.url(f"vb_{uuid.uuid4().hex[:8]}_{{service}}")
    settings = VerificationSettings(_env_file=None, state_dir=tmp_path_factory.mktemp("boundary"), env="test",
                                    database_url=url_template)
    url = settings.database_url_for("verification")
    ensure_database(url)
    upgrade("verification", url)
    # The queue behind the kindergarten and district pages: its app in process, over HTTP with tokens.
    qurl = f"sqlite:///{settings.state_dir / 'queue.db'}"
    upgrade("queue", qurl)
    queue = Queue(make_session_factory(make_engine(qurl)), clock=lambda: NOW)
    queue.kindergartens.save({"id": KINDERGARTEN, "name": "Sun", "district": DISTRICT_A, "languages": ["ru"]},
                             actor="admin:1")
    keys = ServiceKeys.from_settings(settings)
    desk = QueueDesk("http://queue", keys, transport=httpx.ASGITransport(app=queue_app(settings, queue=queue,
                                                                                        keys=keys)))
    app = create_app(settings, referrals=FakeReferrals(), clock=lambda: NOW, hasher=FAST, queue=desk)
    service = app.state.service
    directory = FakeDirectory({KINDERGARTEN: DISTRICT_A})
    for role, (login, locale) in STAFF.items():
        service.staff.add(login, login.title(), role, DISTRICT_A, PASSWORD, locale,
                          kindergarten=KINDERGARTEN if role == "kindergarten" else "", directory=directory)
    engine = make_engine(url)
    sessions, ingest = make_session_factory(engine), build_ingest(clock=lambda: NOW)
    deliver(sessions, ingest, application_submitted("a-a", pin="10103202300011", district=DISTRICT_A))
    deliver(sessions, ingest, application_received("a-a"))
    deliver(sessions, ingest, referral_issued("r-a", "a-a", deadline=NOW + timedelta(days=3), at=NOW))
    yield app, sessions
    engine.dispose()


def signed_in(app, role: str) -> tuple[TestClient, str]:
    login, locale = STAFF[role]
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    client.cookies.set("kezek_lang", locale)
    r = client.post("/login", data={"login": login, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text
    csrf = app.state.service.staff.csrf_token(client.cookies.get("kezek_staff"))
    return client, csrf


def url_of(path: str) -> str:
    path = path.replace("{kg}", KINDERGARTEN).replace("{district}", DISTRICT_A)
    return re.sub(r"\{[^}]+\}", "r-a", path)


def test_every_route_of_the_staff_app_is_in_the_matrix_or_public(site):
    app, _ = site
    declared = {(m, p): perm for p, methods, perm in declared_routes(app) for m in methods - {"HEAD"}}
    assert set(declared) == set(MATRIX) | PUBLIC | INTERNAL
    assert all(perm is not None for perm in declared.values())
    assert {k for k, perm in declared.items() if perm.public} == PUBLIC


def test_the_familys_copy_answers_its_parent_by_service_token_and_no_one_else_in_json(site):
    from kezek.trust import parent_principal, staff_principal

    app, _ = site
    keys = ServiceKeys.from_settings(VerificationSettings(_env_file=None, env="test"))   # the site's: derived alike
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    path = "/api/v1/families/parent-1/copy"

    def bearer(caller, who):
        return {"authorization": f"Bearer {keys.sign(caller, 'verification', who)}"}
    r = client.get(path, headers=bearer("gateway", parent_principal("parent-1")))
    assert r.status_code == 200, r.text
    [applicant] = r.json()["applicants"]
    assert applicant["application_id"] == "a-a" and applicant["child_pin"] == "10103202300011"
    assert client.get("/api/v1/families/someone/copy",
                      headers=bearer("gateway", parent_principal("someone"))).json()["applicants"] == []
    assert client.get(path, headers=bearer("gateway", parent_principal("other"))).status_code == 404
    # a caller of the API gets JSON problem details, never the login page
    anonymous = client.get(path)
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    assert client.get("/api/v1/nothing").headers["content-type"] == "application/problem+json"
    assert client.get(path, headers=bearer("verification", staff_principal(1, "caseworker",
                                                                            district=DISTRICT_A))).status_code == 403
    caseworker, _ = signed_in(app, "caseworker")
    assert caseworker.get(path).status_code == 403


def test_every_look_at_a_childs_data_is_listed_for_the_supervisor_and_told_to_the_family(site):
    from kezek.trust import parent_principal

    app, sessions = site
    caseworker, csrf = signed_in(app, "caseworker")
    assert caseworker.get("/cases/r-a").status_code == 200
    # A search by PIN says why first: refused without a purpose, or without the request's reference.
    for form, field in (({"pin": "10103202300011"}, "purpose"),
                        ({"pin": "10103202300011", "purpose": "official_request"}, "note")):
        r = caseworker.post("/children", data={"csrf": csrf, **form})
        assert r.status_code == 422 and f'aria-describedby="e-{field}"' in r.text, field
    found = caseworker.post("/children", data={"csrf": csrf, "pin": "10103202300011",
                                               "purpose": "official_request", "note": "court 12/3"})
    assert found.status_code == 200 and "10103202300011" in found.text and "/cases/r-a" in found.text
    supervisor, _ = signed_in(app, "supervisor")
    page = supervisor.get("/children/a-a/looks")
    assert page.status_code == 200, page.text
    rows = [r for r in page.text.split("<tr>")[2:]]
    assert any("aida" in r and "court 12/3" in r and "нашёл ребёнка по ПИН" in r for r in rows), page.text
    assert any("aida" in r and "открыл дело" in r and "работа по делу" in r for r in rows)
    t = audit_trail.table
    with sessions() as s:
        looked = s.execute(sa.select(t.c.action, t.c.actor, t.c.reason, t.c.kind).where(
            t.c.subject == "application:a-a", t.c.action.in_(("child.search", "child.looks")))).all()
    assert {(a, k) for a, _, _, k in looked} == {("child.search", "look"), ("child.looks", "look")}
    assert ("child.search", "official_request: court 12/3") in {(a, why) for a, _, why, _ in looked}
    # The family is told which offices looked, never who.
    keys = ServiceKeys.from_settings(VerificationSettings(_env_file=None, env="test"))
    client = TestClient(app, raise_server_exceptions=False)

    def bearer(who):
        return {"authorization": f"Bearer {keys.sign('gateway', 'verification', parent_principal(who))}"}
    told = client.get("/api/v1/families/parent-1/looks", headers=bearer("parent-1"))
    assert told.status_code == 200, told.text
    assert {(x["role"], x["office"], x["what"]) for x in told.json()} >= {
        ("caseworker", DISTRICT_A, "case.view"), ("caseworker", DISTRICT_A, "child.search"),
        ("supervisor", DISTRICT_A, "child.looks")}
    assert "aida" not in told.text and "staff:" not in told.text
    assert client.get("/api/v1/families/parent-1/looks", headers=bearer("other")).status_code == 404
    assert caseworker.get("/api/v1/families/parent-1/looks").status_code == 403


def test_every_non_public_route_sends_an_anonymous_caller_to_the_login_page(site):
    app, _ = site
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    for method, path in MATRIX:
        r = client.request(method, url_of(path), data={"csrf": "x"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), (method, path, r.status_code)


def test_each_role_reaches_exactly_the_routes_of_the_matrix(site):
    app, _ = site
    for role in STAFF:
        client, csrf = signed_in(app, role)
        lang = STAFF[role][1]
        for (method, path), roles in sorted(MATRIX.items(), key=lambda kv: kv[0][1] == "/logout"):
            r = client.request(method, url_of(path), data={"csrf": csrf} if method == "POST" else None)
            refused = r.status_code == 403 and WRONG_ROLE[lang] in r.text
            assert refused == (role not in roles), (role, method, path, r.status_code)
            assert r.status_code < 500, (role, method, path, r.status_code)


def test_a_wrong_role_gets_a_403_page_in_its_language_and_the_attempt_is_audited(site):
    app, sessions = site
    emil, _ = signed_in(app, "commission")
    r = emil.get("/worklist")
    assert r.status_code == 403 and "Сиздин ролуңуз" in r.text and "text/html" in r.headers["content-type"]
    with sessions() as s:
        emil_id = s.query(Staff.id).filter_by(login="emil").scalar()
        denied = [e for e in audit_trail.trail(s, actor=f"staff:{emil_id}") if e["action"] == "access.denied"]
    assert [(e["subject"], e["outcome"], e["actor_role"]) for e in denied][-1] == \
        ("page:/worklist", "denied", "commission")


ODD = ["a\x00b", "\x1b[31m", "\ud7ff\ufffe", "9" * 400, "-1e309", "' OR 1=1 --", "<script>x</script>", ""]


def test_bad_form_input_never_gives_a_5xx(site):
    """Every form and query the staff app reads, sent by the roles that may,
    with odd bytes, control characters, huge numbers, missing fields and
    over-long values."""
    app, _ = site
    answers: list[tuple[str, str, int]] = []
    for role in ("caseworker", "supervisor", "commission", "kindergarten", "district"):
        client, csrf = signed_in(app, role)
        for (method, path), roles in MATRIX.items():
            if role not in roles or path == "/logout":
                continue
            target = url_of(path)
            for value in ODD:
                fields = {"csrf": csrf, "nonce": value, "reason": value, "organisation": value, "number": value,
                          "issued_on": value, "decision": value, "benefit_type": value, "documents": [value],
                          "members": [value], "resolution": value, value[:20] or "x": value,
                          "cohort": value, "language": value, "count": value, "for_category": value, "when": value,
                          "publish_on": value, "publish_time": value, "kindergarten": value, "id": value,
                          "name": value, "address": value, "lat": value, "lon": value, "languages": [value],
                          "month": value}
                if method == "POST":
                    r = client.post(target, data=fields)
                else:
                    r = client.get(target, params={k: v for k, v in fields.items() if isinstance(v, str)})
                answers.append((role, f"{method} {path} {value[:10]!r}", r.status_code))
            if method == "POST":
                for body, ctype in ((b"csrf=" + csrf.encode() + b"&reason=%ff%fe%00\xff", "application/x-www-form-urlencoded"),
                                    (b"--xyz\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + csrf.encode()
                                     + b"\r\n--xyz\r\nContent-Disposition: form-data; name=\"scan\"; filename=\"\xff\"\r\n\r\n%PDF",
                                     "multipart/form-data; boundary=xyz"),
                                    (b"garbage", "multipart/form-data"),
                                    (b"x" * 70_000, "application/x-www-form-urlencoded")):
                    r = client.post(target, content=body, headers={"content-type": ctype})
                    answers.append((role, f"{method} {path} raw {body[:12]!r}", r.status_code))
                r = client.post(target, data={"csrf": csrf})                 # every field missing
                answers.append((role, f"{method} {path} empty", r.status_code))
    anonymous = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    for value in ODD:
        r = anonymous.post("/login", data={"login": value, "password": value * 3, "next": value})
        answers.append(("anonymous", f"POST /login {value[:10]!r}", r.status_code))
        r = anonymous.get("/language", params={"to": value, "next": value})
        answers.append(("anonymous", f"GET /language {value[:10]!r}", r.status_code))
    failures = [a for a in answers if a[2] >= 500]
    assert not failures and len(answers) > 300, failures[:10]


def test_a_control_character_is_refused_naming_the_field_in_the_readers_language(site):
    app, _ = site
    aida, csrf = signed_in(app, "caseworker")
    r = aida.post("/cases/r-a/reject", data={"csrf": csrf, "nonce": "n1", "reason": "forged\x00"})
    assert r.status_code == 422 and "Причина: содержит недопустимые символы" in r.text
    r = aida.get("/worklist", params={"district": "\x00"})
    assert r.status_code == 422


def test_a_database_that_does_not_answer_gives_a_503_page_with_retry_after(tmp_path):
    closed = free_port()
    settings = VerificationSettings(_env_file=None, state_dir=tmp_path, env="test",
                                    database_url=f"postgresql+psycopg://kezek@127.0.0.1:{closed}/{{service}}")
    app = create_app(settings, referrals=FakeReferrals(), hasher=FAST)
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    client.cookies.set("kezek_lang", "ky")
    r = client.post("/login", data={"login": "aida", "password": PASSWORD, "next": "/"})
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert "Маалымат базасы жооп бербей жатат" in r.text and "text/html" in r.headers["content-type"]
    client.cookies.set("kezek_staff", "a-session-token")
    r = client.get("/worklist")
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert client.get("/ready").status_code == 503
