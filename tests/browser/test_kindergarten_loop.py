"""The loop of issue 19 in headless Chromium, in Kyrgyz and in Russian,
against the whole system as `kezek run --postgres` wires it (tests/browser/conftest.py:
every service on PostgreSQL, Kafka, the real ReferralWorkflow on Temporal): staff made by
`kezek staff-add` (the kindergarten checked against the queue's register); a
district officer puts a place on the schedule; at that moment the allocation
issues the direction and the parent sees it in the cabinet; the
kindergarten's clerk records the enrolment (the workflow's enrol update) and
the parent sees the child enrolled and the direction closed; the child
leaves, and the next child in line gets a direction within seconds; a clerk
of another kindergarten can neither see nor act on these referrals. The
public queue and figures pages are shown too. Screenshots under
tests/artifacts/browser/kindergarten-<language>/; the seconds measured in
tests/artifacts/kindergarten_loop.json."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from kezek.infra.procs import wait_until
from test_parent_flow import Walk, apply_activate_and_log_in

pytestmark = pytest.mark.integration

BISHKEK = ZoneInfo("Asia/Bishkek")
STAFF_PASSWORD = "балабакча 2027 кезек"
# Each language has its own kindergarten, district and families, so that the
# two runs share nothing on the one system the module starts.
CASES = {
    "ky": {"kindergarten": "bsk-7", "other": "bsk-12", "district": "41711210000000", "cohort": 2023,
           "language": "ky", "preferences": ["bsk-7", "bsk-55"],
           "family": {"child_pin": "21506202300701", "parent_pin": "11203199000701", "email": "asel.kg@example.kg",
                      "phone": "0555 700 701", "viewport": {"width": 1280, "height": 900}}},
    "ru": {"kindergarten": "bsk-31", "other": "bsk-55", "district": "41711220000000", "cohort": 2023,
           "language": "ru", "preferences": ["bsk-31", "bsk-12"],
           "family": {"child_pin": "11003202300702", "parent_pin": "21203198800702", "email": "dina.ru@example.kg",
                      "phone": "+996 700 700 702", "viewport": {"width": 1280, "height": 900}}},
}
WORDS = {
    "ky": {"schedule": "Графикке киргизүү", "scheduled": "Орундар графикке киргизилди.",
           "enrol": "Кабыл алууну жазуу", "enrolled_done": "Кабыл алуу жазылды", "left_summary": "Бала чыкты",
           "leave": "Баланын чыкканын жазуу", "left_done": "Жазылды: бала чыкты",
           "cabinet_enrolled": "Кабыл алынды", "cabinet_left": "Бала бакчадан чыкты", "not_found": "Табылган жок"},
    "ru": {"schedule": "Внести в график", "scheduled": "Места включены в график.",
           "enrol": "Записать зачисление", "enrolled_done": "Зачисление записано", "left_summary": "Ребёнок выбыл",
           "leave": "Записать выбытие ребёнка", "left_done": "Записано: ребёнок выбыл",
           "cabinet_enrolled": "Зачислен", "cabinet_left": "Выбыл из детского сада", "not_found": "Не найдено"},
}
MEASURED: dict[str, dict] = {}


def staff_add(portal, login: str, role: str, *, district: str = "", kindergarten: str = "",
              locale: str = "ru") -> subprocess.CompletedProcess:
    """`kezek staff-add`, as an administrator runs it on the console."""
    env = {**os.environ, **portal.child_env(), "KEZEK_STAFF_PASSWORD": STAFF_PASSWORD}
    args = [sys.executable, "-m", "kezek.cli", "staff-add", login, "--name", login.title(), "--role", role,
            "--locale", locale]
    if district:
        args += ["--district", district]
    if kindergarten:
        args += ["--kindergarten", kindergarten]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


class Staff:
    """A member of staff in a browser context of their own, on the staff pages."""

    def __init__(self, chromium, portal, walk: Walk, login: str, lang: str):
        self.url = portal.settings.url_of("verification")
        self.context = chromium.new_context(viewport={"width": 1280, "height": 1000}, locale=lang)
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.walk = walk
        page = self.page
        page.goto(f"{self.url}/language?to={lang}&next=/login")
        page.fill("#f-login", login)
        page.fill("#f-password", STAFF_PASSWORD)
        page.locator("main form button").click()
        page.wait_for_load_state()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.walk.shots / f"{next(self.walk.step):02d}-{name}.png"), full_page=True)

    def csrf(self) -> str:
        return self.page.locator("input[name=csrf]").first.get_attribute("value")

    def close(self) -> None:
        self.context.close()


def queue_join(portal, application_id: str, pin: str, case: dict) -> None:
    """A second child, next in line (the registration service's call, as
    its consumer of application.submitted makes it)."""
    from kezek.trust import ServiceKeys, service_principal

    token = ServiceKeys.from_settings(portal.settings).sign("registration", "queue", service_principal("registration"))
    r = portal.queue.post("/api/v1/queue-entries", headers={"authorization": f"Bearer {token}"}, json={
        "application_id": application_id, "pin": pin, "surname": "Садыков", "name": "Эрлан", "category": "general",
        "language": case["language"], "preferences": [case["kindergarten"]], "parent_id": f"p-{application_id}"})
    assert r.status_code == 201, r.text


def referral_of(portal, application_id: str) -> dict | None:
    return portal.entry(application_id).get("referral")


@pytest.fixture(scope="module")
def portal(portal_on_postgres):
    """The loop on PostgreSQL, as a deployment runs it."""
    return portal_on_postgres


@pytest.mark.parametrize("lang", ["ky", "ru"])
def test_scheduled_places_to_enrolment_to_a_child_leaving_through_the_pages(lang, portal, chromium, screenshots):
    case, w = CASES[lang], WORDS[lang]
    kg, other, district = case["kindergarten"], case["other"], case["district"]
    tag = uuid.uuid4().hex[:4]
    walk = Walk(chromium, screenshots, f"kindergarten-{lang}", lang, case["family"]["viewport"])

    # The accounts, made on the console; an unknown kindergarten is refused, named.
    refused = staff_add(portal, f"nobody-{tag}", "kindergarten", kindergarten="nowhere")
    assert refused.returncode == 2 and "kindergarten: no kindergarten 'nowhere'" in refused.stderr, refused
    for login, role, scope in ((f"district-{tag}", "district", {"district": district}),
                               (f"clerk-{tag}", "kindergarten", {"kindergarten": kg}),
                               (f"other-{tag}", "kindergarten", {"kindergarten": other})):
        made = staff_add(portal, login, role, locale=lang, **scope)
        assert made.returncode == 0, made.stderr

    # A parent applies for the kindergarten through the portal; a second
    # child, joining after, is next in line.
    family = {**case["family"], "preferences": case["preferences"]}
    apply_activate_and_log_in(walk, portal, family)
    entry = portal.entry_of(family["child_pin"])
    queue_join(portal, f"next-{lang}-{tag}", f"2{'0107' if lang == 'ky' else '0207'}2023{int(tag, 16) % 90000 + 10000:05d}",
               case)
    assert entry["status"] == "queued" and referral_of(portal, entry["id"]) is None

    # The district officer puts one place on the schedule, at the next minute.
    officer = Staff(chromium, portal, walk, f"district-{tag}", lang)
    assert officer.page.url.endswith(f"/districts/{district}")
    officer.shot("district-kindergartens")
    officer.page.goto(f"{officer.url}/districts/{district}/schedule")
    moment = (datetime.now(BISHKEK) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (moment - datetime.now(BISHKEK)).total_seconds() < 20:
        moment += timedelta(minutes=1)
    page = officer.page
    page.select_option("#s-kg", kg)
    page.select_option("#s-cohort", str(case["cohort"]))
    page.select_option("#s-language", case["language"])
    page.fill("#s-count", "1")
    page.fill("#s-on", moment.date().isoformat())
    page.fill("#s-at", moment.strftime("%H:%M"))
    page.get_by_role("button", name=w["schedule"]).click()
    expect(page.get_by_text(w["scheduled"])).to_be_visible()
    expect(page.locator("#schedule")).to_contain_text(moment.strftime("%d.%m.%Y"))
    officer.shot("schedule")
    assert referral_of(portal, entry["id"]) is None              # not before its moment

    # At that moment the place is published and the allocation issues the direction.
    referral = portal.wait_referral_workflow(entry["id"], timeout=150)
    issued = datetime.fromisoformat(referral["issued_at"])
    assert issued >= moment, (issued, moment)
    seconds_to_referral = (issued - moment).total_seconds()
    assert referral["kindergarten"] == kg
    page.goto(f"{officer.url}/districts/{district}/figures")
    expect(page.locator("svg.chart").first).to_be_visible()
    officer.shot("district-figures")

    # The parent sees it in the cabinet, with its deadline.
    parent = walk.page
    parent.reload()
    direction = parent.locator(f"article.referral[data-referral='{referral['id']}']")
    expect(direction).to_be_visible()
    walk.shot("cabinet-direction")

    # A clerk of another kindergarten neither sees nor acts on it.
    stranger = Staff(chromium, portal, walk, f"other-{tag}", lang)
    assert stranger.page.url.endswith(f"/kindergartens/{other}")
    assert stranger.page.locator(f"#referral-{referral['id']}").count() == 0
    assert family["child_pin"] not in stranger.page.content()
    csrf = stranger.csrf()
    seen = stranger.page.goto(f"{stranger.url}/kindergartens/{kg}")
    assert seen.status == 404 and w["not_found"] in stranger.page.content()
    stranger.shot("other-clerk-not-found")
    for target in (f"/kindergartens/{kg}/referrals/{referral['id']}/enrolment",
                   f"/kindergartens/{other}/referrals/{referral['id']}/enrolment",
                   f"/kindergartens/{other}/referrals/{referral['id']}/declined"):
        r = stranger.page.request.post(f"{stranger.url}{target}", form={"csrf": csrf, "nonce": f"x-{tag}"})
        assert r.status == 404, (target, r.status)
    assert referral_of(portal, entry["id"])["status"] == "live"
    stranger.close()

    # The clerk of the kindergarten records the enrolment.
    clerk = Staff(chromium, portal, walk, f"clerk-{tag}", lang)
    assert clerk.page.url.endswith(f"/kindergartens/{kg}")
    row = clerk.page.locator(f"#referral-{referral['id']}")
    expect(row).to_be_visible()
    clerk.shot("kindergarten-referrals")
    row.get_by_role("button", name=w["enrol"]).click()
    expect(clerk.page.locator("#done")).to_contain_text(w["enrolled_done"])
    expect(clerk.page.locator(f"#child-{entry['id']}")).to_be_visible()
    clerk.shot("kindergarten-enrolled")
    assert portal.entry(entry["id"])["status"] == "enrolled"

    # The parent sees the child enrolled and the direction closed.
    parent.reload()
    expect(parent.locator("dd.status").first).to_have_text(w["cabinet_enrolled"])
    assert parent.locator(f"article.referral[data-referral='{referral['id']}'] a.danger-link").count() == 0
    walk.shot("cabinet-enrolled")

    # The child leaves: the place is free at once and the next child gets it.
    child = clerk.page.locator(f"#child-{entry['id']}")
    child.locator("summary", has_text=w["left_summary"]).click()
    child.locator("input[name=reason]").fill("moved")
    clicked = time.monotonic()
    child.get_by_role("button", name=w["leave"]).click()
    expect(clerk.page.locator("#done")).to_contain_text(w["left_done"])
    acknowledged = time.monotonic() - clicked
    next_id = f"next-{lang}-{tag}"
    wait_until(lambda: referral_of(portal, next_id) is not None, 60, f"a direction for {next_id}")
    seconds_to_next = time.monotonic() - clicked
    portal.wait_referral_workflow(next_id, timeout=60)
    seconds_to_next_workflow = time.monotonic() - clicked
    assert referral_of(portal, next_id)["kindergarten"] == kg
    clerk.page.reload()
    clerk.shot("kindergarten-after-leaving")
    parent.reload()
    expect(parent.locator("dd.status").first).to_have_text(w["cabinet_left"])
    walk.shot("cabinet-left")
    clerk.close()

    # The queue open to all and the figures, on the portal.
    parent.goto(f"{portal.url}/queue")
    walk.shot("public-queue-index")
    parent.goto(f"{portal.url}/queue/{kg}?cohort={case['cohort']}&language={case['language']}")
    walk.shot("public-queue")
    parent.goto(f"{portal.url}/figures")
    expect(parent.locator("svg.bars").first).to_be_visible()
    walk.shot("public-figures")
    officer.close()
    walk.close()

    MEASURED[lang] = {"seconds_from_scheduled_moment_to_referral": round(seconds_to_referral, 2),
                      "seconds_from_child_left_click_to_page_answer": round(acknowledged, 2),
                      "seconds_from_child_left_click_to_next_referral": round(seconds_to_next, 2),
                      "seconds_from_child_left_click_to_next_workflow_recorded": round(seconds_to_next_workflow, 2)}
    out = screenshots.parent / "kindergarten_loop.json"
    known = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**known, **MEASURED}, indent=2) + "\n")
    print(f"kindergarten loop ({lang}): {MEASURED[lang]}")
