"""The parents' portal: pages in the parent's language with the Balalyk
wording, errors that name the field, drafts that survive a closed browser,
the cabinet with only the buttons the rules allow, catalogs complete."""
from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from services.gateway import i18n
from tests.fakes.gateway import Stack

PARENT_FORM = {
    "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
    "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
    "address.region": "41711000000000", "address.district": "41711210000000",
    "address.settlement": "41711000000001", "address.street": "Киев көчөсү", "address.house": "12",
    "phone": "0555 123 456",
}
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("portal"), rate_limit_per_minute=100_000)


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def errors(html: str) -> list[str]:
    summary = re.search(r'<div class="error-summary".*?</ul>', html, re.S)
    return re.findall(r"<a href=\"#([^\"]+)\">([^<]+)</a>", summary.group(0)) if summary else []


def apply(c: TestClient, stack: Stack, pin: str, email: str, lang_of_instruction="ru", category="general") -> None:
    r = c.get("/apply")
    token = csrf(r.text)
    r = c.post("/apply/child", data={"csrf": token, "pin": pin, "surname": "Асанов", "name": "Айбек"})
    assert r.url.path == "/apply/parent", errors(r.text)
    r = c.post("/apply/parent", data={"csrf": token, **PARENT_FORM, "email": email})
    assert r.url.path == "/apply/contacts", errors(r.text)
    c.post("/apply/contacts", data={"csrf": token, "action": "send"})
    r = c.post("/apply/contacts", data={"csrf": token, "action": "verify", "code": stack.last_code(email)})
    assert r.url.path == "/apply/confirm"
    r = c.post("/apply/confirm", data={"csrf": token, "category": category, "language": lang_of_instruction,
                                       "preference1": "bsk-12", "preference2": "bsk-7", "agreement": "on"})
    assert r.url.path == "/apply/done", errors(r.text)
    stack.queue.feed_from_outbox(stack.registration.state.engine)


def activate_and_login(c: TestClient, stack: Stack, email: str) -> None:
    token = stack.last_activation_token(email)
    r = c.post("/activate", data={"token": token, "email": email, "password": PASSWORD, "password2": PASSWORD})
    assert r.url.path == "/login"
    r = c.post("/login", data={"login": email, "password": PASSWORD})
    assert r.url.path == "/cabinet"


# --- language and wording -----------------------------------------------------------

def test_application_pages_use_the_balalyk_kyrgyz_wording(stack):
    c = stack.browser("ky")
    r = c.get("/apply", follow_redirects=True)
    assert '<html lang="ky">' in r.text
    for words in ("Бала жөнүндө маалымат", "Баланын жеке идентификациялык номери (ПИН)", "Алга"):
        assert words in r.text
    token = csrf(r.text)
    c.post("/apply/child", data={"csrf": token, "pin": "21506202400011", "surname": "Асанов", "name": "Айбек"})
    r = c.get("/apply/parent")
    for words in ("Ата-энеси / мыйзамдуу өкүлү жөнүндө маалымат", "Атасы", "Энеси", "Мыйзамдуу өкүлү",
                  "Жашаган жери", "Байланыш маалыматтары", "Калкты тейлөө борборуна"):
        assert words in r.text


def test_russian_pages_when_the_parent_chooses_russian(stack):
    c = stack.browser("en")
    r = c.get("/lang/ru?next=/login")
    assert r.url.path == "/login" and '<html lang="ru">' in r.text
    assert "Родителям" in r.text and "Войти через ЕСИ Тундук" in r.text


def test_language_switch_refuses_to_redirect_elsewhere(stack):
    c = stack.browser("ky")
    r = c.get("/lang/ru?next=//evil.example/", follow_redirects=False)
    assert r.headers["location"] == "/"


def test_every_error_names_the_field_in_the_parents_language(stack):
    c = stack.browser("ru")
    r = c.get("/apply", follow_redirects=True)
    r = c.post("/apply/child", data={"csrf": csrf(r.text), "pin": "23102202400011", "surname": "", "name": "А1"})
    assert r.status_code == 422
    assert errors(r.text) == [
        ("f-child-pin", "Персональный идентификационный номер ребёнка (ПИН): цифры со 2-й по 9-ю должны быть "
                        "настоящей датой рождения (ДДММГГГГ)."),
        ("f-child-surname", "Фамилия ребёнка: это поле обязательно."),
        ("f-child-name", "Имя ребёнка: используйте только буквы (между словами допустимы дефис, пробел или апостроф)."),
    ]
    assert 'id="f-child-pin"' in r.text and 'aria-invalid="true"' in r.text


def test_unknown_street_page_advises_the_public_service_centre(stack):
    c = stack.browser("ky")
    r = c.get("/apply", follow_redirects=True)
    token = csrf(r.text)
    c.post("/apply/child", data={"csrf": token, "pin": "21506202400012", "surname": "Асанов", "name": "Айбек"})
    r = c.post("/apply/parent", data={"csrf": token, **PARENT_FORM, "address.street": "Мира проспекти",
                                      "email": "street@example.kg"})
    assert r.status_code == 422
    [(anchor, text)] = errors(r.text)
    assert anchor == "f-address-street" and text.startswith("Көчө:") and "Калкты тейлөө борборуна" in text


def test_a_form_without_its_csrf_token_changes_nothing(stack):
    c = stack.browser("ky")
    c.get("/apply")
    r = c.post("/apply/child", data={"pin": "21506202400013", "surname": "Асанов", "name": "Айбек"})
    assert r.url.path == "/apply/child"
    assert 'value="21506202400013"' not in r.text


def test_draft_survives_a_closed_browser(stack):
    first = stack.browser("ky")
    r = first.get("/apply", follow_redirects=True)
    first.post("/apply/child", data={"csrf": csrf(r.text), "pin": "21506202400014", "surname": "Асанов",
                                      "name": "Айбек"})
    kept = first.cookies.get("kezek_draft")
    first.close()
    again = stack.browser("ky")
    again.cookies.set("kezek_draft", kept)
    r = again.get("/apply")
    assert r.url.path == "/apply/parent"
    r = again.get("/apply/child")
    assert 'value="21506202400014"' in r.text and "15.06.2024" in r.text


def test_draft_cookie_is_persistent_httponly_and_secure(stack):
    c = stack.browser("ky")
    r = c.get("/apply", follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "kezek_draft=" in cookie and "HttpOnly" in cookie and "Secure" in cookie and "Max-Age=2592000" in cookie


def test_later_steps_cannot_be_opened_early(stack):
    c = stack.browser("ky")
    c.get("/apply")
    assert c.get("/apply/confirm").url.path == "/apply/child"


# --- accessibility ---------------------------------------------------------------------

class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.labels, self.unnamed = set(), set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"])
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "radio", "checkbox", "submit"):
            if a.get("id"):
                self.ids.add(a["id"])
            else:
                self.unnamed.append(a.get("name"))


@pytest.mark.parametrize("path", ["/apply/child", "/apply/parent", "/login"])
def test_every_field_has_a_label(stack, path):
    c = stack.browser("ky")
    r = c.get("/apply", follow_redirects=True)
    if path == "/apply/parent":
        c.post("/apply/child", data={"csrf": csrf(r.text), "pin": "21506202400015", "surname": "Асанов",
                                     "name": "Айбек"})
    html = c.get(path).text
    p = _Inputs()
    p.feed(html)
    assert not p.unnamed and p.ids <= p.labels
    assert 'class="skip" href="#main"' in html and 'name="viewport"' in html


def test_pages_forbid_framing_and_foreign_scripts(stack):
    r = stack.browser("ky").get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"


# --- the cabinet -----------------------------------------------------------------------

def test_cabinet_shows_status_position_chart_and_map(stack):
    c = stack.browser("ru")
    apply(c, stack, "21506202400016", "cabinet@example.kg")
    activate_and_login(c, stack, "cabinet@example.kg")
    r = c.get("/cabinet")
    assert r.status_code == 200
    for words in ("Личный кабинет", "Асанов Айбек", "В очереди", "Общая очередь", "Дата постановки в очередь",
                  "Место в очереди по каждому выбранному детскому саду", "Мои направления",
                  "Детские сады рядом с вашим адресом"):
        assert words in r.text, words
    assert re.search(r'<td class="position"><strong>\d+</strong>', r.text)
    assert r.text.count("<svg") == 2 and "<polyline" in r.text
    assert "tile" not in r.text and "https://" not in r.text.split("<main", 1)[1]


def test_a_notification_is_marked_read_from_the_cabinet(stack):
    c = stack.browser("ru")
    apply(c, stack, "21506202400029", "inbox@example.kg")
    activate_and_login(c, stack, "inbox@example.kg")
    parent_id = stack.events("application.received.v1")[-1]["parent_id"]
    stack.inbox.add(parent_id, "Заявление принято", title="Kezek")
    [message_id] = [m["id"] for m in stack.inbox.messages[parent_id]]
    page = c.get("/cabinet").text
    assert f'data-message="{message_id}"' in page and 'class="unread"' in page and "Отметить как прочитанное" in page
    assert stack.inbox.asked_in[-1] == "ru"         # messages rendered in the reader's language
    c.post(f"/cabinet/notifications/{message_id}/read", data={"csrf": "forged"})
    assert stack.inbox.messages[parent_id][0]["read"] is False            # no CSRF token, no change
    r = c.post(f"/cabinet/notifications/{message_id}/read", data={"csrf": csrf(page)})
    assert r.url.path == "/cabinet" and stack.inbox.messages[parent_id][0]["read"] is True
    assert 'class="unread"' not in r.text and "Заявление принято" in r.text
    r = c.post("/cabinet/notifications/not-mine/read", data={"csrf": csrf(page)})
    assert r.status_code == 404 and "Уведомление" in r.text


def confirm_page(stack: Stack, pin: str, email: str) -> str:
    """Step 3 of a draft whose earlier steps the registration service took directly."""
    c = stack.browser("ru")
    c.get("/apply")
    draft, service = c.cookies.get("kezek_draft"), stack.registration.state.service
    service.save_child(draft, {"pin": pin, "surname": "Асанов", "name": "Айбек"})
    parent = {k: v for k, v in PARENT_FORM.items() if not k.startswith("address.")}
    address = {k.split(".", 1)[1]: v for k, v in PARENT_FORM.items() if k.startswith("address.")}
    service.save_parent(draft, {**parent, "email": email, "address": address})
    service.request_code(draft)
    service.verify_code(draft, stack.last_code(email))
    return c.get("/apply/confirm").text


def test_voucher_is_offered_only_where_the_queue_runs_the_programme(stack, tmp_path):
    page = confirm_page(stack, "21506202400031", "offer@example.kg")
    assert 'value="voucher"' in page and "частном детском саду" in page
    without = Stack(tmp_path, queue_categories=("extraordinary", "privileged", "general"),
                    rate_limit_per_minute=100_000)
    page = confirm_page(without, "21506202400032", "nooffer@example.kg")
    assert 'value="general"' in page and 'value="voucher"' not in page


def test_cabinet_shows_the_voucher_commissions_decision(stack):
    from kezek.events import new_event
    from services.gateway import vouchers

    c = stack.browser("ru")
    apply(c, stack, "21506202400033", "voucher@example.kg", category="voucher")
    activate_and_login(c, stack, "voucher@example.kg")
    app_id = list(stack.queue.entries)[-1]
    page = c.get("/cabinet").text
    assert 'data-voucher="pending"' in page and "Районная комиссия ещё не приняла решение" in page

    decided = new_event("verification.voucher_decided.v1", app_id, {
        "application_id": app_id, "parent_id": None, "decision": "approved", "benefit_type": "full", "reason": "",
        "decision_number": 17, "decided_at": "2026-11-23T20:30:00+00:00"}, source="verification")
    older = new_event("verification.voucher_decided.v1", app_id, {
        "application_id": app_id, "parent_id": None, "decision": "rejected", "benefit_type": None,
        "reason": "нет мест", "decision_number": 16, "decided_at": "2026-11-20T10:00:00+00:00"},
        source="verification")
    with stack.gateway.state.gateway.sessions() as s, s.begin():
        vouchers.record(s, decided)
        vouchers.record(s, older)      # late and out of order: the newer decision stands
    page = c.get("/cabinet").text
    assert 'data-voucher="approved"' in page
    # 20:30 UTC is already the next day in Bishkek.
    assert "решение № 17 от 24.11.2026" in page and "Государство оплачивает место полностью" in page


def test_session_cookie_is_httponly_and_secure(stack):
    c = stack.browser("ky")
    apply(c, stack, "21506202400017", "cookie@example.kg")
    token = stack.last_activation_token("cookie@example.kg")
    c.post("/activate", data={"token": token, "email": "cookie@example.kg", "password": PASSWORD,
                              "password2": PASSWORD})
    r = c.post("/login", data={"login": "cookie@example.kg", "password": PASSWORD}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("kezek_session=") and "HttpOnly" in cookie and "Secure" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()


@pytest.fixture
def reset_day(stack):
    yield
    stack.today_is(None)


def test_directions_show_only_the_buttons_the_rules_allow(stack, reset_day):
    c = stack.browser("ky")
    apply(c, stack, "21506202400018", "buttons@example.kg")
    activate_and_login(c, stack, "buttons@example.kg")
    app_id = next(a for a, e in stack.queue.entries.items() if e["queue_date"] ==
                  stack.events("application.submitted.v1")[-1]["queue_date"])
    ref = stack.queue.publish_place(app_id, needs_confirmation=True)
    # Its window ends Thursday 11 March 2027, as the queue records it.
    stack.queue.referrals[ref["referral_id"]]["deadline"] = "2027-03-11T00:00:00+06:00"
    stack.today_is(date(2027, 3, 9))
    html = c.get("/cabinet").text
    assert "Жолдомодон баш тартуу" in html and "Жолдомону узартуу" not in html
    # Its last working day: the extension is offered.
    stack.today_is(date(2027, 3, 10))
    html = c.get("/cabinet").text
    assert "Жолдомону узартуу" in html
    r = c.post(f"/cabinet/referrals/{ref['referral_id']}/extend", data={"csrf": csrf(html)})
    assert r.url.path == "/cabinet" and "30 күнгө узартылды" in r.text
    assert "Жолдомону узартуу" not in r.text


def test_cancel_direction_asks_first_then_keeps_the_child_queued(stack):
    c = stack.browser("ru")
    apply(c, stack, "21506202400019", "cancel@example.kg")
    activate_and_login(c, stack, "cancel@example.kg")
    app_id = list(stack.queue.entries)[-1]
    ref = stack.queue.publish_place(app_id)
    r = c.get(f"/cabinet/referrals/{ref['referral_id']}/cancel")
    assert "вернётся в реестр свободных мест" in r.text
    r = c.post(f"/cabinet/referrals/{ref['referral_id']}/cancel", data={"csrf": csrf(r.text)})
    assert "Направление отменено" in r.text and stack.queue.entries[app_id]["status"] == "queued"


def test_remove_from_queue_warns_before_it_acts(stack):
    c = stack.browser("ky")
    apply(c, stack, "21506202400020", "leave@example.kg")
    activate_and_login(c, stack, "leave@example.kg")
    app_id = list(stack.queue.entries)[-1]
    r = c.get(f"/cabinet/applications/{app_id}/remove")
    assert "Көңүл буруңуз!" in r.text and "дароо кезектен чыгарат" in r.text
    assert stack.queue.entries[app_id]["status"] == "queued"
    r = c.post(f"/cabinet/applications/{app_id}/remove", data={"csrf": csrf(r.text)})
    assert "Бала кезектен чыгарылды" in r.text and stack.queue.entries[app_id]["status"] == "removed"


def test_another_familys_pages_are_not_found(stack):
    owner = stack.browser("ky")
    apply(owner, stack, "21506202400021", "owner@example.kg")
    app_id = list(stack.queue.entries)[-1]
    ref = stack.queue.publish_place(app_id)
    intruder = stack.browser("ky")
    apply(intruder, stack, "21506202400022", "intruder@example.kg")
    activate_and_login(intruder, stack, "intruder@example.kg")
    assert intruder.get(f"/cabinet/referrals/{ref['referral_id']}/cancel").status_code == 404
    assert intruder.get(f"/cabinet/applications/{app_id}/remove").status_code == 404
    html = intruder.get("/cabinet").text
    r = intruder.post(f"/cabinet/applications/{app_id}/remove", data={"csrf": csrf(html)})
    assert r.status_code == 404 and stack.queue.entries[app_id]["status"] == "referred"
    # (the referral id is a small number: look for its links, not its digits)
    assert "21506202400021" not in html and f"/referrals/{ref['referral_id']}/" not in html


def test_a_child_who_aged_out_or_left_is_named_so_and_offers_no_removal(stack):
    c = stack.browser("ru")
    apply(c, stack, "21506202400034", "aged@example.kg")
    activate_and_login(c, stack, "aged@example.kg")
    app_id = list(stack.queue.entries)[-1]
    for status, words in (("aged_out", "Выбыл из очереди: достиг школьного возраста"),
                          ("left", "Выбыл из детского сада")):
        stack.queue.entries[app_id]["status"] = status
        page = c.get("/cabinet").text
        assert f'data-status="{status}"' in page and words in page
        assert f"/cabinet/applications/{app_id}/remove" not in page


def test_cabinet_without_a_session_goes_to_login(stack):
    assert stack.browser("ky").get("/cabinet").url.path == "/login"


# --- catalogs ---------------------------------------------------------------------------

GATEWAY = Path(i18n.__file__).parent


def used_msgids() -> set[str]:
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
    out = set()
    for _f, _l, msg, _c, _ctx in extract_from_dir(str(GATEWAY), method_map, options_map=options,
                                                   keywords={"_": None, "N_": None, "gettext": None}):
        out.add(msg[0] if isinstance(msg, tuple) else msg)
    return out


@pytest.mark.parametrize("lang", ["ky", "ru", "kk"])
def test_every_message_is_translated(lang):
    with (GATEWAY / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    translated = {m.id for m in catalog if m.id and m.string}
    assert used_msgids() - translated == set()


def test_a_message_missing_in_kazakh_falls_back_to_russian(tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(GATEWAY / "locale", src)
    kk_po = src / "kk" / "LC_MESSAGES" / "messages.po"
    kk_po.write_text(kk_po.read_text().replace('msgstr "Қабылдауды күтуде"', 'msgstr ""'))
    i18n.compile_catalogs(tmp_path / "mo", src)
    kk = i18n.translations(str(tmp_path / "mo"), "kk")
    assert kk.gettext("Submit an application") == "Өтініш беру"
    assert kk.gettext("Waiting for enrolment") == "Ожидает зачисления"   # not in Kazakh: Russian


def test_catalogs_compile_outside_the_source_tree(tmp_path):
    written = i18n.compile_catalogs(tmp_path)
    assert {p.parent.parent.name for p in written} == {"ky", "ru", "kk", "en"}
    assert not list((GATEWAY / "locale").rglob("*.mo"))
    assert i18n.compile_catalogs(tmp_path) == []    # up to date: nothing to do
