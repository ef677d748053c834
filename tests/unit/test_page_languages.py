"""Every page speaks one language: the reader's. Each portal page (the
application, sign-in, the cabinet with a direction and a message, the
confirmations, the open queue, the event catalogue, the error pages) and
each staff page is rendered in every language it offers, and its visible
text must hold no phrase of another language.

The check is a dictionary of each language's own phrases, taken from the
catalogs themselves: every translation (and, for English, every msgid) cut
at its placeholders into fragments of at least 12 characters. A page in
language L fails when its text contains a fragment of another language that
is not also one of L's own (shared words such as "SMS" or a code are
allowed). An untranslated msgid (English in a Kazakh page), a Russian
fallback in a Kyrgyz page, a sentence written into a template outside the
catalogs in another language: each shows up as a foreign fragment. Data —
names, addresses, codes, examples in <code> and <pre>, the language
switcher's own names — is not the page's language and is left out."""
from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from tests.fakes.gateway import Stack
from tests.unit.test_gateway_portal import activate_and_login, apply, csrf

GATEWAY = Path(__file__).resolve().parents[2] / "services" / "gateway" / "locale"
VERIFICATION = Path(__file__).resolve().parents[2] / "services" / "verification" / "locale"
PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\{\w*\}")
MIN_FRAGMENT = 12


@cache
def phrases(locale_dir: Path, lang: str) -> frozenset[str]:
    """Every fragment of every text the catalogs give `lang`."""
    with (locale_dir / ("ru" if lang == "en" else lang) / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    texts = []
    for m in catalog:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        texts += list(ids) if lang == "en" else [s for s in strings if s]
    out = set()
    for text in texts:
        for part in PLACEHOLDER.split(html.unescape(text)):
            part = " ".join(part.split()).strip(" .,:;()«»\"'—-")
            if len(part) >= MIN_FRAGMENT:
                out.add(part)
    return frozenset(out)


def visible_text(page: str) -> str:
    """What a reader sees, data and the language switcher left out."""
    page = re.sub(r"<(script|style|code|pre|datalist|title)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r'<a\b[^>]*\blang="\w+"[^>]*>.*?</a>', " ", page, flags=re.S)      # the language switcher
    page = re.sub(r'<option\b[^>]*>.*?</option>', " ", page, flags=re.S)              # registry names, kindergartens
    attrs = " ".join(re.findall(r'\b(?:aria-label|title|placeholder|alt)="([^"]*)"', page))
    text = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(f"{text} {attrs}").split())


def foreign(page: str, lang: str, languages: tuple[str, ...], locale_dir: Path) -> set[str]:
    own = phrases(locale_dir, lang)
    own_text = " ".join(own)
    text = visible_text(page)
    found = set()
    for other in languages:
        if other == lang:
            continue
        for fragment in phrases(locale_dir, other) - own:
            if fragment in text and fragment not in own_text:
                found.add(f"{other}: {fragment}")
    return found


# ------------------------------------------------------------------ the portal

PORTAL_LANGUAGES = ("ky", "ru", "kk", "en")


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """A family that applied, signed in, holds a direction and has a message."""
    stack = Stack(tmp_path_factory.mktemp("languages"), rate_limit_per_minute=100_000)
    c = stack.browser("ru", raise_server_exceptions=False)
    apply(c, stack, "21506202400311", "languages@example.kg")
    activate_and_login(c, stack, "languages@example.kg")
    received = stack.events("application.received.v1")[-1]
    stack.inbox.add(received["parent_id"], "Kezek", title="Kezek")
    referral = stack.queue.publish_place(received["application_id"], needs_confirmation=True)
    stack.verification.looks[received["parent_id"]] = [
        {"at": "2027-03-01T05:00:00+00:00", "role": role, "office": "41711210000000", "what": what,
         "application_id": received["application_id"], "service": "verification"}
        for role, what in (("caseworker", "case.view"), ("caseworker", "scan.view"), ("supervisor", "child.looks"),
                           ("kindergarten", "kindergarten.children_viewed"), ("admin", "something.new"))]
    return stack, c, received["application_id"], referral["referral_id"]


def portal_pages(stack: Stack, c: TestClient, application_id: str, referral_id: str) -> dict[str, str]:
    anonymous = TestClient(stack.gateway, base_url="https://testserver", raise_server_exceptions=False)
    anonymous.cookies.set("kezek_lang", c.cookies.get("kezek_lang"))
    pages = {path: anonymous.get(path).text for path in (
        "/", "/login", "/activate/request", "/activate?token=nope", "/events", "/queue", "/figures",
        "/no/such/page", "/apply/done?new=1", "/apply/done?new=0")}
    pages["405"] = anonymous.post("/login/tunduk").text
    r = anonymous.get("/apply", follow_redirects=True)
    pages["/apply/child"] = r.text
    token = csrf(r.text)
    pages["/apply/child refused"] = anonymous.post("/apply/child", data={"csrf": token, "pin": "1", "name": "1"}).text
    anonymous.post("/apply/child", data={"csrf": token, "pin": "21506202400312", "surname": "Асанов",
                                         "name": "Айбек"})
    pages["/apply/parent"] = anonymous.get("/apply/parent").text
    pages["/cabinet"] = c.get("/cabinet").text
    pages["/cabinet/looks"] = c.get("/cabinet/looks").text
    pages["cancel"] = c.get(f"/cabinet/referrals/{referral_id}/cancel").text
    pages["remove"] = c.get(f"/cabinet/applications/{application_id}/remove").text
    return pages


@pytest.mark.parametrize("lang", PORTAL_LANGUAGES)
def test_every_portal_page_shows_nothing_of_another_language(portal, lang):
    stack, c, application_id, referral_id = portal
    c.cookies.set("kezek_lang", lang)
    pages = portal_pages(stack, c, application_id, referral_id)
    leaks = {path: sorted(foreign(page, lang, PORTAL_LANGUAGES, GATEWAY)) for path, page in pages.items()}
    assert {p: found for p, found in leaks.items() if found} == {}
    assert all(f'<html lang="{lang}">' in page for page in pages.values())


def test_the_check_finds_a_phrase_of_another_language():
    page = '<html lang="kk"><body><p>Подать заявление</p><p>Өтініш беру</p></body></html>'
    assert foreign(page, "kk", PORTAL_LANGUAGES, GATEWAY) == {"ru: Подать заявление"}
    english = '<p>Information about the child</p>'
    assert "en: Information about the child" in foreign(english, "ky", PORTAL_LANGUAGES, GATEWAY)
    assert foreign('<code>Information about the child</code>', "ky", PORTAL_LANGUAGES, GATEWAY) == set()


# ------------------------------------------------------------------ the staff pages

STAFF_LANGUAGES = ("ru", "ky", "kk")


@pytest.fixture(scope="module")
def staff_app(tmp_path_factory):
    from tests.fakes.verification import DISTRICT_A, PASSWORD, staff_site

    return staff_site(tmp_path_factory.mktemp("staff-languages"), (
        ("aida", "caseworker", DISTRICT_A), ("chynara", "supervisor", DISTRICT_A),
        ("emil", "commission", DISTRICT_A), ("root", "admin", ""))), PASSWORD


@pytest.mark.parametrize("lang", STAFF_LANGUAGES)
def test_every_staff_page_shows_nothing_of_another_language(staff_app, lang):
    app, password = staff_app
    pages = {}
    anonymous = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    anonymous.cookies.set("kezek_lang", lang)
    pages["/login"] = anonymous.get("/login").text
    pages["404"] = anonymous.get("/no/such/page").text
    for login, paths in (("aida", ("/worklist", "/vouchers", "/children")), ("chynara", ("/abuse", "/worklist")),
                         ("emil", ("/vouchers",)), ("root", ("/audit",))):
        c = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
        c.cookies.set("kezek_lang", lang)
        assert c.post("/login", data={"login": login, "password": password, "next": "/"}).status_code == 303
        for path in paths:
            r = c.get(path)
            if r.status_code == 200:
                pages[f"{login} {path}"] = r.text
    assert len(pages) >= 5
    leaks = {path: sorted(foreign(page, lang, STAFF_LANGUAGES, VERIFICATION)) for path, page in pages.items()}
    assert {p: found for p, found in leaks.items() if found} == {}


# ------------------------------------------------------------------ the catalogs

def test_the_english_catalog_of_the_portal_holds_every_message():
    from tests.unit.test_gateway_portal import used_msgids

    with (GATEWAY / "en" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    assert used_msgids() - {m.id for m in catalog if m.id} == set()


def test_every_catalog_of_every_service_is_well_formed():
    """A catalog entry broken by hand (a msgid without its msgstr) is not
    read with a warning and a message lost: it fails here."""
    from babel.messages.pofile import PoFileError

    catalogs = sorted(Path(__file__).resolve().parents[2].glob("services/*/locale/*/LC_MESSAGES/*.po"))
    assert len(catalogs) >= 7
    for path in catalogs:
        with path.open("rb") as f:
            try:
                read_po(f, abort_invalid=True)
            except PoFileError as exc:
                raise AssertionError(f"{path}: {exc}") from exc
