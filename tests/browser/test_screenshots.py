"""A screenshot of every page, in every language it is offered in, taken in
headless Chromium for people to look at (tests/artifacts/screenshots/<lang>/,
not committed; portal-*, staff-* and mailbox-* in each language's folder):
the portal (home, each application step and a refusal, the confirmation
with the categories explained, sign-in, activation, the cabinet with a
direction and a message, the family's data and the erasure request, the
confirmations, the open queue of the city and of a kindergarten, the
figures, the event catalogue, the error pages 404, 405, 429 and 500,
Swagger UI and ReDoc) in ky, ru, kk and en; the staff pages (login, the
first-login notice, worklist, a case, vouchers and a voucher application,
abuse cases and one case, the audit log, the districts, a kindergarten's
page, the district office's kindergartens, schedule, figures and the form
editing a kindergarten, 403 and 404) in ru, ky and kk; the development
mailbox in all four. The services are the in-process ones of the unit and
integration tests (the real gateway, registration, staff pages and queue,
with stand-ins for the rest) served by uvicorn, so that the set is quick to
make. Each page is checked for phrases of another language
(test_page_languages.foreign) and for codes where a reader expects words;
the API docs, that they rendered without internet."""
from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn

from kezek.infra.procs import free_port
from kezek.problems import TooManyRequests
from kezek.trust import PUBLIC
from tests.fakes.gateway import Stack
from tests.unit.test_gateway_portal import PASSWORD, PARENT_FORM
from tests.unit.test_page_languages import GATEWAY, PORTAL_LANGUAGES, STAFF_LANGUAGES, VERIFICATION, foreign

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
NOW = datetime.now(UTC).replace(microsecond=0)
# What a reader must never see as text: a district's or region's code (the
# registries' 14 digits ending in 7 zeros, KATO's 9 ending in 4), a refusal's
# or message's code, a template's braces, Python's None.
RAW = re.compile(r"\b\d{7}0{7}\b|\b\d{5}0{4}\b|\b[a-z]+(?:_[a-z]+)+\b|\{\{|\}\}|\bNone\b")


def raw_codes(page: str) -> set[str]:
    from tests.unit.test_page_languages import visible_text

    # Inputs keep what was typed; a code as a tooltip (title) or shown as
    # code (<code>: the audit log's actions) is there for those who ask.
    page = re.sub(r"<(input|textarea)\b[^>]*>", " ", page, flags=re.I)
    page = re.sub(r'\stitle="[^"]*"', " ", page)
    text = re.sub(r"\S*/\S*", " ", visible_text(page))       # addresses (a schema's URL) are addresses
    return set(RAW.findall(text))


# Pages that still show codes, each with the reason (the test names them
# when they no longer do, so that the exception is dropped).
RAW_KNOWN = {
    # The family's copy (issue 20) shows its records as the JSON download
    # names them: keys and values as stored. Labels in the reader's
    # language for each field are still to be written.
    "cabinet-data",
}


class Served:
    """An ASGI app on a free port of localhost, in a thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.url = f"http://localhost:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("screens"), rate_limit_per_minute=100_000)

    async def boom():
        raise RuntimeError("a bug, for the 500 page")

    async def busy():
        raise TooManyRequests(30)

    stack.gateway.add_api_route("/boom", boom, dependencies=[PUBLIC], include_in_schema=False)
    stack.gateway.add_api_route("/busy", busy, dependencies=[PUBLIC], include_in_schema=False)
    served = Served(stack.gateway)
    yield stack, served.url
    served.stop()


@pytest.fixture(scope="module")
def staff(tmp_path_factory):
    """The staff app with the real queue behind it (the integration tests'
    site of issue 19: kindergartens sun and moon in district A, star in B;
    a caseworker, a supervisor, an admin, a clerk of sun, a district
    officer), a child referred to sun, a case with a direction waiting for
    its certificate, a voucher application and an abuse case."""
    from kezek.db import make_engine, make_session_factory
    from services.verification.bootstrap import build_ingest
    from tests.fakes.verification import (
        DISTRICT_A, PASSWORD as STAFF_PASSWORD, application_received, application_submitted, deliver, referral_closed,
        referral_issued,
    )
    from tests.integration.test_kindergarten_pages import NOW as SITE_NOW, Site, referred

    site = Site(tmp_path_factory.mktemp("screens-staff"))
    site.app.state.service.staff.add("emil", "Emil", "commission", DISTRICT_A, STAFF_PASSWORD)
    referred(site, "aibek")
    engine = make_engine(site.settings.database_url_for("verification"))
    sessions, ingest = make_session_factory(engine), build_ingest(clock=lambda: SITE_NOW)
    for event in (
            application_submitted("a-shot", pin="10103202300011"), application_received("a-shot"),
            referral_issued("r-shot", "a-shot", deadline=SITE_NOW + timedelta(days=4),
                            at=SITE_NOW - timedelta(hours=3)),
            application_submitted("a-voucher", pin="10204202300012", category="voucher", parent_id="parent-2"),
            application_received("a-voucher", parent_id="parent-2"),
            # Two privileged directions cancelled and a third taken: a pattern the supervisor looks at.
            application_submitted("a-abuse", pin="20305202300013", parent_id="parent-3"),
            referral_issued("r-ab1", "a-abuse", deadline=SITE_NOW - timedelta(days=30), at=SITE_NOW - timedelta(days=40)),
            referral_closed("cancelled", "r-ab1", "a-abuse", at=SITE_NOW - timedelta(days=38)),
            referral_issued("r-ab2", "a-abuse", deadline=SITE_NOW - timedelta(days=10), at=SITE_NOW - timedelta(days=20)),
            referral_closed("cancelled", "r-ab2", "a-abuse", at=SITE_NOW - timedelta(days=18)),
            referral_issued("r-ab3", "a-abuse", deadline=SITE_NOW + timedelta(days=5), at=SITE_NOW - timedelta(days=1)),
    ):
        deliver(sessions, ingest, event)
    served = Served(site.app)
    yield served.url, STAFF_PASSWORD, site
    served.stop()
    engine.dispose()
    site.engine.dispose()


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory):
    """The development mailbox with what the notifications service says in
    each language: the e-mail code and a direction, by e-mail and SMS."""
    from services.notifications import mailbox as mb
    from services.notifications.devservers import DevSmsGateway
    from services.notifications.domain import Channel, Kind
    from services.notifications.rendering import Renderer, template_values

    box = mb.Mailbox(tmp_path_factory.mktemp("screens-mail") / "messages.jsonl")
    renderer = Renderer(ZoneInfo("Asia/Bishkek"))
    for lang, address in (("ky", "aigul@example.kg"), ("ru", "maria@example.kg"), ("kk", "aigerim@example.kz"),
                          ("en", "anna@example.org")):
        values = template_values({"code": "482913", "expires_at": (NOW + timedelta(minutes=10)).isoformat(),
                                  "child_name": "Айбек", "kindergarten_name": "Ясли-сад № 12 «Балажан»",
                                  "deadline": (NOW + timedelta(days=7)).isoformat()},
                                 occurred_at=NOW, tz=renderer.tz, cabinet_url="http://localhost:8000/cabinet")
        code = renderer.render(Kind.EMAIL_CODE, lang, Channel.EMAIL, values)
        box.add("email", address, code.body, subject=code.subject or "", locale=lang)
        sms = renderer.render(Kind.REFERRAL_ISSUED, lang, Channel.SMS, values)
        box.add("sms", "+996555123456", sms.body, locale=lang)
    sms = DevSmsGateway(mailbox=box, receipts=False).start()
    yield f"http://localhost:{sms.port}"
    sms.stop()


class Shooter:
    """Screenshots of one part (portal, staff, mailbox) in one language, in
    tests/artifacts/screenshots/<lang>/<part>-NN-<name>.png, each page
    checked as it is taken."""

    def __init__(self, chromium, lang: str, part: str, width: int = 1280):
        self.dir = SHOTS / lang
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part = part
        for stale in self.dir.glob(f"{part}-*.png"):
            stale.unlink()
        self.n = 0
        self.lang = lang
        self.context = chromium.new_context(viewport={"width": width, "height": 900}, locale=lang)
        self.page = self.context.new_page()
        # Generous: the pages are quick, but the machine running the suite
        # may be shared and busy (Swagger UI renders the whole API document).
        self.page.set_default_timeout(60_000)
        self.leaks: dict[str, list[str]] = {}

    def shot(self, name: str, languages=PORTAL_LANGUAGES, locale_dir: Path | None = GATEWAY, check: bool = True,
             full: bool = True) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.part}-{self.n:02d}-{name}.png"), full_page=full,
                             timeout=120_000)
        if check:
            content = self.page.content()
            assert f'<html lang="{self.lang}"' in content, f"{name}: not a page in {self.lang}"
            found = foreign(content, self.lang, languages, locale_dir) if locale_dir else set()
            raw = raw_codes(content)
            if name in RAW_KNOWN:
                assert raw, f"{name} shows no code any more: drop it from RAW_KNOWN"
            else:
                found |= {f"raw: {code}" for code in raw}
            if found:
                self.leaks[name] = sorted(found)

    def close(self) -> None:
        self.context.close()

    @property
    def count(self) -> int:
        return len(list(self.dir.glob(f"{self.part}-*.png")))


@pytest.mark.parametrize("lang", PORTAL_LANGUAGES)
def test_every_portal_page_in_every_language(portal, chromium, lang):
    stack, url = portal
    s = Shooter(chromium, lang, "portal")
    page = s.page
    try:
        page.goto(f"{url}/lang/{lang}?next=/")
        s.shot("home")
        page.goto(f"{url}/apply")
        s.shot("apply-child")
        page.fill("#f-child-pin", "2150620240")
        page.fill("#f-child-name", "А" * 60)
        page.locator("main form button[type=submit]").click()
        page.wait_for_selector("#error-summary")
        s.shot("apply-child-refused")
        pin = {"ky": "21506202400401", "ru": "21506202400402", "kk": "21506202400403", "en": "21506202400404"}[lang]
        page.fill("#f-child-pin", pin)
        page.fill("#f-child-surname", "Асанов")
        page.fill("#f-child-name", "Айбек")
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/apply/parent")
        s.shot("apply-parent")
        email = f"screens.{lang}@example.kg"
        page.check("input[name=role][value=mother]")
        for name, value in PARENT_FORM.items():
            if name in ("role", "document_type") or name.startswith("address.") and name != "address.street" \
                    and name != "address.house":
                continue
            page.fill(f"#f-parent-{name}" if not name.startswith("address.") else f"#f-{name.replace('.', '-')}",
                      value)
        page.select_option("#f-parent-document_type", "id_card")
        for part in ("region", "district", "settlement"):
            page.select_option(f"#f-address-{part}", PARENT_FORM[f"address.{part}"])
        page.fill("#f-parent-email", email)
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/apply/contacts")
        page.locator("#get-code").click()
        page.wait_for_selector("p.notice")
        s.shot("apply-contacts")
        page.fill("#f-code", stack.last_code(email))
        page.locator("main form:not(.inline-form) button[type=submit]").last.click()
        page.wait_for_url("**/apply/confirm")
        s.shot("apply-confirm")
        page.select_option("#f-preference1", index=1)
        page.check("#agreement")
        page.locator("main form button[type=submit]").last.click()
        page.wait_for_url("**/apply/done**")
        s.shot("apply-done")
        stack.queue.feed_from_outbox(stack.registration.state.engine)
        page.goto(f"{url}/activate?token={stack.last_activation_token(email)}&email={email}")
        s.shot("activate")
        page.fill("#f-password", PASSWORD)
        page.fill("#f-password2", PASSWORD)
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/login**")
        s.shot("login")
        page.fill("#f-login", email)
        page.fill("#f-password", PASSWORD)
        page.locator("main form button[type=submit]").first.click()
        page.wait_for_url("**/cabinet")
        received = [e for e in stack.events("application.received.v1") if e["email"] == email][-1]
        stack.inbox.add(received["parent_id"], "Kezek", title="Kezek")
        referral = stack.queue.publish_place(received["application_id"], needs_confirmation=True)
        page.reload()
        s.shot("cabinet")
        page.goto(f"{url}/cabinet/referrals/{referral['referral_id']}/cancel")
        s.shot("cabinet-cancel")
        page.goto(f"{url}/cabinet/applications/{received['application_id']}/remove")
        s.shot("cabinet-remove")
        page.goto(f"{url}/cabinet/data")
        s.shot("cabinet-data")
        page.goto(f"{url}/cabinet/applications/{received['application_id']}/erase")
        s.shot("cabinet-erase")
        page.goto(f"{url}/activate/request")
        s.shot("activate-request")
        for path, name in (("/queue", "open-queue"), ("/queue/bsk-12", "open-queue-kindergarten"),
                           ("/figures", "figures"), ("/no/such/page", "error-404"), ("/busy", "error-429"),
                           ("/boom", "error-500")):
            page.goto(f"{url}{path}")
            s.shot(name)
        # The catalogue is long: its top, and one event with its example open.
        page.goto(f"{url}/events")
        s.shot("event-catalogue", full=False)
        page.goto(f"{url}/events#referral.issued.v1")
        page.locator("section[id='referral.issued.v1'] details summary").click()
        s.shot("event-catalogue-event", full=False)
        page.set_content(f'<form method="post" action="{url}/login/tunduk"><button>go</button></form>')
        page.click("button")
        page.wait_for_selector("h1")
        s.shot("error-405")
        # The API docs: rendered by their own scripts, served by the gateway (no internet here).
        page.goto(f"{url}/api/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=90_000)
        s.shot("api-docs-swagger", check=False, full=False)
        page.goto(f"{url}/api/redoc")
        page.wait_for_selector("redoc h1, .api-content h1", timeout=90_000)
        s.shot("api-docs-redoc", check=False, full=False)
    finally:
        s.close()
    assert s.leaks == {}, f"phrases of another language or raw codes: {s.leaks}"
    assert s.count == 26


@pytest.mark.parametrize("lang", STAFF_LANGUAGES)
def test_every_staff_page_in_every_language(staff, chromium, lang):
    from tests.fakes.verification import DISTRICT_A

    url, password, site = staff
    s = Shooter(chromium, f"{lang}", "staff")
    page = s.page
    check = {"languages": STAFF_LANGUAGES, "locale_dir": VERIFICATION}

    def sign_in(login: str) -> None:
        page.context.clear_cookies()
        page.context.add_cookies([{"name": "kezek_lang", "value": lang, "url": url}])
        page.goto(f"{url}/login")
        page.fill("#f-login", login)
        page.fill("#f-password", password)
        page.locator("main form button[type=submit]").click()
        page.wait_for_load_state()

    def shoot(name: str, *paths: str, under: str = "") -> None:
        """Each page, named after its path."""
        for path in paths:
            page.goto(f"{url}{under}{path}")
            s.shot(f"{name}{path.replace('/', '-')}", **check)

    try:
        page.context.add_cookies([{"name": "kezek_lang", "value": lang, "url": url}])
        page.goto(f"{url}/login")
        s.shot("login", **check)
        page.goto(f"{url}/no/such/page")
        s.shot("error-404", **check)
        sign_in("aida")
        shoot("caseworker", "/login/notice", "/worklist", "/cases/r-shot")
        sign_in("emil")
        shoot("commission", "/vouchers", "/vouchers/a-voucher")
        sign_in("chynara")
        page.goto(f"{url}/abuse")
        s.shot("supervisor-abuse", **check)
        page.locator("main a[href^='/abuse/']").first.click()
        page.wait_for_url("**/abuse/*")
        s.shot("supervisor-abuse-case", **check)
        sign_in("root")
        shoot("admin", "/audit", "/districts")
        sign_in("sun-clerk")
        page.goto(f"{url}/kindergarten")
        page.wait_for_url("**/kindergartens/sun")
        s.shot("kindergarten", **check)
        page.goto(f"{url}/worklist")
        s.shot("error-403", **check)
        sign_in("officer")
        page.goto(f"{url}/district")
        page.wait_for_url(f"**/districts/{DISTRICT_A}")
        s.shot("district", **check)
        shoot("district", "/schedule", "/figures", "/kindergartens/sun/edit", under=f"/districts/{DISTRICT_A}")
    finally:
        s.close()
    assert s.leaks == {}, f"phrases of another language or raw codes: {s.leaks}"
    assert s.count == 17


def mailbox_leaks(content: str, lang: str) -> set[str]:
    """The mailbox's own words (its letters are data, in their own language)."""
    from services.notifications.mailbox import TEXTS
    from tests.unit.test_page_languages import visible_text

    chrome = visible_text(re.sub(r'<div lang="\w+">.*?</div>', " ", content, flags=re.S))
    return {f"{other}: {words[other]}" for words in TEXTS.values() for other in words
            if other != lang and len(words[other]) >= 6 and words[other] != words[lang] and words[other] in chrome}


@pytest.mark.parametrize("lang", PORTAL_LANGUAGES)
def test_the_mailbox_in_every_language(mailbox, chromium, lang):
    s = Shooter(chromium, lang, "mailbox")
    leaks = {}
    try:
        for query, name in (("", "mailbox"), ("&channel=sms", "mailbox-sms")):
            s.page.goto(f"{mailbox}/?lang={lang}{query}")
            if not query:
                assert s.page.locator("article.letter").count() == 8
                assert s.page.locator("strong.code").count() >= 4
            s.shot(name, locale_dir=None)
            found = mailbox_leaks(s.page.content(), lang)
            if found:
                leaks[name] = sorted(found)
    finally:
        s.close()
    assert leaks == {} and s.leaks == {}, f"{leaks} {s.leaks}"
