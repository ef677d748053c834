"""The kindergarten and district pages of the staff app (issue 19), against
the real queue service (its app in process, over HTTP with service tokens)
and a stand-in for the referral workflow's updates: each role lands on its
pages, every act goes through the queue's use cases or the workflow's
updates, refusals are said in the reader's language, and a clerk of one
kindergarten neither sees nor acts on another's."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from kezek.db import make_engine, make_session_factory
from kezek.infra.procs import free_port
from tests.migrated import upgrade
from kezek.trust import ServiceKeys
from services.queue.api import create_app as queue_app
from services.queue.domain import JoinQueue
from services.queue.usecases import Queue
from services.verification import domain as d
from services.verification.api import create_app
from services.verification.models import audit_trail
from services.verification.queue import QueueDesk
from services.verification.referrals import TemporalReferrals
from services.verification.settings import VerificationSettings
from tests.fakes.verification import DISTRICT_A, DISTRICT_B, PASSWORD, FakeDirectory, FakeReferrals
from workflows import rules
from workflows.client import ReferralRefused

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)        # Monday 10:00 in Bishkek
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
STAFF = {  # login: (role, district, kindergarten, locale)
    "sun-clerk": ("kindergarten", "", "sun", "ru"), "moon-clerk": ("kindergarten", "", "moon", "ky"),
    "officer": ("district", DISTRICT_A, "", "ru"), "officer-b": ("district", DISTRICT_B, "", "kk"),
    "root": ("admin", "", "", "ru"), "aida": ("caseworker", DISTRICT_A, "", "ru"),
    "chynara": ("supervisor", DISTRICT_A, "", "ru"),
}


class Site:
    def __init__(self, tmp_path):
        self.settings = VerificationSettings(_env_file=None, state_dir=tmp_path, env="test")
        qurl = f"sqlite:///{tmp_path / 'queue.db'}"
        upgrade("queue", qurl)
        upgrade("verification", self.settings.database_url_for("verification"))
        self.engine = make_engine(qurl)
        self.queue = Queue(make_session_factory(self.engine), clock=lambda: NOW)
        for kid, district, langs in (("sun", DISTRICT_A, ["ru", "ky"]), ("moon", DISTRICT_A, ["ky"]),
                                     ("star", DISTRICT_B, ["ru"])):
            self.queue.kindergartens.save({"id": kid, "name": f"Kindergarten {kid}", "district": district,
                                           "address": "1", "languages": langs}, actor="admin:1")
        keys = ServiceKeys.from_settings(self.settings)
        desk = QueueDesk("http://queue", keys, transport=httpx.ASGITransport(
            app=queue_app(self.settings, queue=self.queue, keys=keys)))
        self.referrals = FakeReferrals()
        self.app = create_app(self.settings, referrals=self.referrals, clock=lambda: NOW, hasher=FAST, queue=desk)
        directory = FakeDirectory({"sun": DISTRICT_A, "moon": DISTRICT_A, "star": DISTRICT_B})
        for login, (role, district, kg, locale) in STAFF.items():
            self.app.state.service.staff.add(login, login.title(), role, district, PASSWORD, locale,
                                             kindergarten=kg, directory=directory)

    def signed_in(self, login: str, lang: str | None = None) -> tuple[TestClient, str]:
        client = TestClient(self.app, follow_redirects=False, raise_server_exceptions=True)
        client.cookies.set("kezek_lang", lang or STAFF[login][3])
        r = client.post("/login", data={"login": login, "password": PASSWORD, "next": "/"})
        assert r.status_code == 303, r.text
        return client, self.app.state.service.staff.csrf_token(client.cookies.get("kezek_staff"))

    def join(self, cid: str, serial: int, *, kg: str = "sun", lang: str = "ru", category: str = "general",
             queued: str = "2026-01-10T10:00:00+06:00") -> None:
        self.queue.entries.join(JoinQueue(
            application_id=cid, pin=f"2150620240{serial:04d}", surname="Асанов", name=cid.title(), category=category,
            language=lang, preferences=(kg,), queue_date=datetime.fromisoformat(queued)), actor="parent:1")

    def referral_of(self, cid: str) -> int:
        ref = self.queue.views.application(cid)["referral"]
        return ref["id"]

    def audit(self, action: str) -> list[dict]:
        with self.app.state.service.sessions() as s:
            return [e for e in audit_trail.trail(s, limit=5000) if e["action"] == action]


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.engine.dispose()


def referred(site: Site, *children: str, kg: str = "sun") -> None:
    for cid in children:
        site.join(cid, 100 + sum(map(ord, cid)) % 9000, kg=kg)
    site.queue.places.publish(kg, 2024, "ru", len(children), actor="admin:1")
    site.queue.allocation.process_requests()      # issued and announced, with their first deadlines


def text(r) -> str:
    return re.sub(r"\s+", " ", r.text)


# ------------------------------------------------------------ landing and reading


@pytest.mark.parametrize("lang,heading", [("ru", "Направления в этот детский сад"),
                                          ("ky", "Бул бала бакчага жолдомолор"),
                                          ("kk", "Осы балабақшаға жолдамалар")])
def test_kindergarten_staff_land_on_their_kindergarten_with_its_referrals(site, lang, heading):
    referred(site, "aibek")
    clerk, _ = site.signed_in("sun-clerk", lang)
    r = clerk.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/kindergarten"
    r = clerk.get("/kindergarten")
    assert r.headers["location"] == "/kindergartens/sun"
    r = clerk.get("/kindergartens/sun")
    assert r.status_code == 200, r.text
    assert heading in text(r) and "Асанов Aibek" in r.text
    assert f"2150620240{100 + sum(map(ord, 'aibek')) % 9000:04d}" in r.text     # the PIN, for the enrolment
    with site.queue.sessions() as s:
        looks = s.execute(sa.text("SELECT actor, kind FROM audit_trail WHERE action = "
                                  "'kindergarten.referrals_viewed'")).all()
    assert looks and looks[-1].kind == "look" and looks[-1].actor.startswith("staff:")


def test_a_district_officer_lands_on_the_district_and_an_admin_sees_every_district(site):
    officer, _ = site.signed_in("officer")
    assert officer.get("/").headers["location"] == "/district"
    assert officer.get("/district").headers["location"] == f"/districts/{DISTRICT_A}"
    r = officer.get(f"/districts/{DISTRICT_A}")
    assert r.status_code == 200 and "Kindergarten sun" in r.text and "Kindergarten star" not in r.text
    assert officer.get(f"/districts/{DISTRICT_B}").status_code == 404
    root, _ = site.signed_in("root")
    r = root.get("/districts")
    assert r.status_code == 200 and DISTRICT_A in r.text and DISTRICT_B in r.text
    assert root.get(f"/districts/{DISTRICT_B}").status_code == 200
    assert "Создать" not in text(root.get(f"/districts/{DISTRICT_B}"))      # oversees, changes nothing


# ------------------------------------------------------------ places


def test_places_are_published_now_or_at_a_time_withdrawn_and_called_off_through_the_page(site):
    site.join("aibek", 1)
    clerk, csrf = site.signed_in("sun-clerk")
    r = clerk.post("/kindergartens/sun/places", data={"csrf": csrf, "cohort": "2024", "language": "ru", "count": "2",
                                                      "for_category": "", "when": "now"})
    assert r.status_code == 303, r.text
    assert site.queue.views.places("sun")[0]["free"] == 2
    r = clerk.post("/kindergartens/sun/places", data={"csrf": csrf, "cohort": "2023", "language": "ky", "count": "3",
                                                      "when": "later", "publish_on": "2027-03-05", "publish_time": "09:30"})
    assert r.status_code == 303, r.text
    [pub] = site.queue.views.scheduled_publications(kindergarten="sun")
    assert pub["count"] == 3 and pub["publish_at"] == datetime(2027, 3, 5, 3, 30, tzinfo=UTC)
    r = clerk.post("/kindergartens/sun/places/withdrawal", data={"csrf": csrf, "cohort": "2024", "language": "ru",
                                                                 "count": "5"})
    assert r.status_code == 422 and "свободных мест только 2" in text(r)
    r = clerk.post(f"/kindergartens/sun/publications/{pub['publication']}/cancel", data={"csrf": csrf})
    assert r.status_code == 303 and site.queue.views.scheduled_publications(kindergarten="sun") == []
    r = clerk.post("/kindergartens/sun/places", data={"csrf": csrf, "cohort": "1999", "language": "ru", "count": "x"})
    assert r.status_code == 422 and "Год рождения" in text(r) and "целое число" in text(r)
    assert [e["outcome"] for e in site.audit("places.withdraw")] == ["refused"]


# ------------------------------------------------------------ referrals


def test_the_enrolment_is_the_workflow_s_enrol_update_by_the_verified_clerk(site):
    referred(site, "aibek")
    rid = site.referral_of("aibek")
    clerk, csrf = site.signed_in("sun-clerk")
    r = clerk.post(f"/kindergartens/sun/referrals/{rid}/enrolment", data={"csrf": csrf, "nonce": "n-1"})
    assert r.status_code == 303 and r.headers["location"].startswith("/kindergartens/sun?done=enrol")
    [(act, referral_id, req, update_id)] = site.referrals.calls
    clerk_id = site.audit("login")[0]["actor"].removeprefix("staff:")
    assert (act, referral_id, update_id) == ("enrol", str(rid), "kindergarten-n-1")
    assert req.actor == f"kindergarten:{clerk_id}" and req.acted_at == NOW
    [audit] = site.audit("referral.enrol")
    assert audit["outcome"] == "ok" and audit["actor"] == f"staff:{clerk_id}"


def test_an_enrolment_before_the_referrals_workflow_is_started_is_a_503_page_that_says_so(site, temporal_dev):
    """The allocation announced the referral (the clerk sees it) and the
    queue's starter has not started its workflow yet: the real Temporal
    client finds none, and the clerk is told to try again in seconds."""
    referred(site, "aibek")
    rid = site.referral_of("aibek")
    site.referrals.enrol = TemporalReferrals(temporal_dev.address).enrol
    clerk, csrf = site.signed_in("sun-clerk", "ru")
    r = clerk.post(f"/kindergartens/sun/referrals/{rid}/enrolment", data={"csrf": csrf, "nonce": "n-early"})
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    assert "Это направление выдано только что и ещё оформляется" in text(r)
    [audit] = site.audit("referral.enrol")
    assert audit["outcome"] == "failed"


@pytest.mark.parametrize("lang,said", [
    ("ru", "зачисление до подтверждения льготы не допускается"),
    ("ky", "жеңилдик тастыкталганга чейин каттоого алынбайт"),
    ("kk", "жеңілдік расталғанға дейін қабылдауға болмайды")])
def test_an_enrolment_the_workflow_refuses_is_said_in_the_page_s_language(site, lang, said):
    referred(site, "aibek")
    site.referrals.refuse = None
    rid = site.referral_of("aibek")

    async def refuse(referral_id, act, update_id):
        raise ReferralRefused(rules.Refusal("enrol_before_confirmation"))
    site.referrals.enrol = refuse
    clerk, csrf = site.signed_in("sun-clerk", lang)
    r = clerk.post(f"/kindergartens/sun/referrals/{rid}/enrolment", data={"csrf": csrf})
    assert r.status_code == 409 and said in text(r).lower()
    [audit] = site.audit("referral.enrol")
    assert audit["outcome"] == "refused" and audit["details"]["refusal_code"] == "enrol_before_confirmation"


def test_a_family_that_declined_in_person_ends_the_referral_as_a_parent_s_cancel(site):
    referred(site, "aibek")
    rid = site.referral_of("aibek")
    clerk, csrf = site.signed_in("sun-clerk")
    r = clerk.post(f"/kindergartens/sun/referrals/{rid}/declined", data={"csrf": csrf, "reason": "closer to home"})
    assert r.status_code == 303
    [(act, _, req, _)] = site.referrals.calls
    assert act == "cancel" and req.drop_preference is True and req.reason == "declined in person: closer to home"


def test_a_child_who_left_frees_the_place_and_the_next_child_gets_it(site):
    referred(site, "aibek")
    rid = site.referral_of("aibek")
    site.queue.referrals.record_enrolment(key="e", referral_id=str(rid), application_id="aibek", at=NOW)
    site.join("bermet", 2, queued="2026-06-01T10:00:00+06:00")
    clerk, csrf = site.signed_in("sun-clerk")
    assert "Асанов Aibek" in clerk.get("/kindergartens/sun").text
    r = clerk.post("/kindergartens/sun/children/aibek/leaving", data={"csrf": csrf, "reason": "moved to Osh"})
    assert r.status_code == 303, r.text
    assert site.queue.views.application("aibek")["status"] == "left"
    [issued] = site.queue.allocation.process_requests().issued
    assert issued.application_id == "bermet"
    r = clerk.post("/kindergartens/sun/children/aibek/leaving", data={"csrf": csrf})
    assert r.status_code == 409 and "выбыл из детского сада" in text(r)


def test_a_clerk_of_another_kindergarten_can_neither_see_nor_act_on_its_referrals(site):
    referred(site, "aibek")
    rid = site.referral_of("aibek")
    site.queue.referrals.record_enrolment(key="e", referral_id=str(rid), application_id="aibek", at=NOW)
    referred(site, "dana")
    other, csrf = site.signed_in("moon-clerk")
    assert other.get("/kindergarten").headers["location"] == "/kindergartens/moon"
    for r in (other.get("/kindergartens/sun"),
              other.post(f"/kindergartens/sun/referrals/{site.referral_of('dana')}/enrolment", data={"csrf": csrf}),
              other.post(f"/kindergartens/moon/referrals/{site.referral_of('dana')}/enrolment", data={"csrf": csrf}),
              other.post("/kindergartens/moon/children/aibek/leaving", data={"csrf": csrf}),
              other.post("/kindergartens/sun/places", data={"csrf": csrf, "cohort": "2024", "language": "ru",
                                                           "count": "1"})):
        assert r.status_code == 404, (r.request.url, r.status_code)
        assert "Dana" not in r.text and "Aibek" not in r.text
    assert site.referrals.calls == []
    assert site.queue.views.application("aibek")["status"] == "enrolled"
    denied = [e for e in site.audit("kindergarten.view") + site.audit("referral.enrol") + site.audit("child.leave")
              if e["outcome"] == "denied"]
    assert len(denied) >= 3
    officer_b, _ = site.signed_in("officer-b")
    assert officer_b.get("/kindergartens/sun").status_code == 404


# ------------------------------------------------------------ district office


def test_a_district_office_creates_edits_and_closes_its_kindergartens(site):
    officer, csrf = site.signed_in("officer")
    new = {"csrf": csrf, "id": "sky", "name": "Kindergarten sky", "address": "Street 5", "lat": "42.87", "lon": "74.6",
           "languages": ["ky", "ru"]}
    assert officer.post(f"/districts/{DISTRICT_A}/kindergartens", data=new).status_code == 303
    assert site.queue.kindergartens.get("sky")["district"] == DISTRICT_A
    r = officer.post(f"/districts/{DISTRICT_A}/kindergartens", data={**new, "id": "star"})
    assert r.status_code == 422 and "занят" in text(r)
    r = officer.post(f"/districts/{DISTRICT_A}/kindergartens/sky/edit", data={**new, "name": "Sky, renamed"})
    assert r.status_code == 303 and site.queue.kindergartens.get("sky")["name"] == "Sky, renamed"
    referred(site, "aibek", kg="sun")
    r = officer.post(f"/districts/{DISTRICT_A}/kindergartens/sun/closure", data={"csrf": csrf})
    assert r.status_code == 409 and "занятых направлениями, — 1" in text(r)
    r = officer.post(f"/districts/{DISTRICT_A}/kindergartens/sky/closure", data={"csrf": csrf, "reason": "merged"})
    assert r.status_code == 303 and site.queue.kindergartens.get("sky")["closed_at"] is not None
    assert officer.post(f"/districts/{DISTRICT_B}/kindergartens/star/closure", data={"csrf": csrf}).status_code == 404
    assert site.queue.kindergartens.get("star")["closed_at"] is None


def test_the_schedule_page_lists_older_birth_years_and_the_extraordinary_right_first_and_explains_why(site):
    officer, csrf = site.signed_in("officer")
    for kg, cohort, lang, cat in (("sun", "2024", "ru", ""), ("moon", "2023", "ky", ""),
                                  ("sun", "2024", "ru", "extraordinary")):
        r = officer.post(f"/districts/{DISTRICT_A}/schedule", data={
            "csrf": csrf, "kindergarten": kg, "cohort": cohort, "language": lang, "count": "2", "for_category": cat,
            "publish_on": "2027-03-02", "publish_time": "09:00"})
        assert r.status_code == 303, text(r)
    page = text(officer.get(f"/districts/{DISTRICT_A}/schedule"))
    assert "старшие годы рождения" in page
    rows = re.findall(r"<tr><td>02\.03\.2027,? 09:00</td><td>(\d{4})</td> ?<td>([^<]+)</td>", page)
    assert [(y, c.strip()) for y, c in rows] == [("2023", "открыты для всех"), ("2024", "только внеочередное право"),
                                                 ("2024", "открыты для всех")]
    r = officer.post(f"/districts/{DISTRICT_A}/schedule", data={
        "csrf": csrf, "kindergarten": "star", "cohort": "2024", "language": "ru", "count": "1",
        "publish_on": "2027-03-02", "publish_time": "09:00"})
    assert r.status_code == 404
    r = officer.post(f"/districts/{DISTRICT_A}/schedule", data={
        "csrf": csrf, "kindergarten": "sun", "cohort": "2024", "language": "ru", "count": "1",
        "publish_on": "2027-02-02", "publish_time": "09:00"})
    assert r.status_code == 422 and "в прошлом" in text(r)


def test_the_figures_page_draws_its_charts_on_the_server(site):
    referred(site, "aibek", "dana")
    site.join("erlan", 5, kg="moon", lang="ky")
    officer, _ = site.signed_in("officer")
    r = officer.get(f"/districts/{DISTRICT_A}/figures")
    assert r.status_code == 200 and r.text.count("<svg") == 3 and "<script" not in r.text
    assert re.search(r"<title>Дети в очереди по годам рождения и языкам</title>", r.text)
    assert officer.get(f"/districts/{DISTRICT_A}/figures", params={"month": "2027-13"}).status_code == 422
    chynara, _ = site.signed_in("chynara")
    assert chynara.get(f"/districts/{DISTRICT_A}/figures").status_code == 200
    aida, _ = site.signed_in("aida")
    assert aida.get(f"/districts/{DISTRICT_A}/figures").status_code == 403


# ------------------------------------------------------------ accounts, outages


def test_staff_add_checks_the_kindergarten_and_district_exist_naming_them(site):
    staff = site.app.state.service.staff
    directory = FakeDirectory({"sun": DISTRICT_A})
    with pytest.raises(d.Refused) as exc:
        staff.add("nobody-kg", "N", "kindergarten", "", PASSWORD, kindergarten="nowhere", directory=directory)
    assert [(e.field, e.code, dict(e.params)) for e in exc.value.errors] == [
        ("kindergarten", "kindergarten_unknown", {"kindergarten": "nowhere"})]
    with pytest.raises(d.Refused) as exc:
        staff.add("nobody-d", "N", "district", "41799999999999", PASSWORD, directory=directory)
    assert exc.value.errors[0].code == "district_unknown" and "41799999999999" in str(dict(exc.value.errors[0].params))
    staff.add("sun-head", "Head", "kindergarten", "", PASSWORD, kindergarten="sun", directory=directory)
    head, _ = site.signed_in("sun-head", "ru")
    assert head.get("/kindergarten").headers["location"] == "/kindergartens/sun"


def test_a_queue_that_does_not_answer_gives_a_503_page_and_changes_nothing(site):
    site.app.state.service.kindergartens._queue = QueueDesk(f"http://127.0.0.1:{free_port()}",
                                                            ServiceKeys.from_settings(site.settings))
    clerk, _ = site.signed_in("sun-clerk")
    r = clerk.get("/kindergartens/sun")
    assert r.status_code == 503 and r.headers["retry-after"] and "Очередь не отвечает" in text(r)
