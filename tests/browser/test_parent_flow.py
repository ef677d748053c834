"""A parent walks the whole flow in headless Chromium, in Kyrgyz and in
Russian, against the whole system (tests/browser/conftest.py): apply (three
steps, the e-mail code read from a real SMTP server after it crossed Kafka
sealed), activate the account from the e-mailed link, log in, see the
position the real queue service gives, then, once an administrator has
published a place, see the direction the allocation issued with its
deadline, and cancel it: a Temporal update to the real ReferralWorkflow,
which returns the place to the register and keeps the child queued without
that kindergarten. Each step leaves a screenshot under
tests/artifacts/browser/<language>/."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.fakes.gateway import KINDERGARTENS

pytestmark = pytest.mark.integration

WORDS = {
    "ky": {"apply": "Арыз берүү", "next": "Алга", "get_code": "Кодду алуу", "submit": "Арыз берүү",
           "save_password": "Сыр сөздү сактоо", "log_in": "Кирүү", "cancel": "Жолдомодон баш тартуу",
           "confirm_cancel": "Ооба, жолдомодон баш тартуу", "street": "Киев көчөсү",
           "cabinet": "Жеке кабинет", "position": "Тандалган ар бир бала бакча боюнча кезектеги орду",
           "directions": "Менин жолдомолорум", "cancelled": "Жолдомо жокко чыгарылды",
           "code_sent": "Код", "done": "Арыз ийгиликтүү тапшырылды", "bad_pin": "14 сандан турушу керек",
           "mark_read": "Окулду деп белгилөө"},
    "ru": {"apply": "Подать заявление", "next": "Далее", "get_code": "Получить код",
           "submit": "Подать заявление", "save_password": "Сохранить пароль", "log_in": "Вход",
           "cancel": "Отменить направление", "confirm_cancel": "Да, отменить направление",
           "street": "улица Киевская", "cabinet": "Личный кабинет",
           "position": "Место в очереди по каждому выбранному детскому саду", "directions": "Мои направления",
           "cancelled": "Направление отменено", "code_sent": "Код", "done": "Заявление подано",
           "bad_pin": "должен состоять из 14 цифр", "mark_read": "Отметить как прочитанное"},
}
# Each family wants kindergartens of its own, so that the place one family
# gives back is not taken by the other's child.
FAMILIES = {
    "ky": {"child_pin": "21506202400501", "parent_pin": "11203199000501", "email": "aigul.ky@example.kg",
           "phone": "0555 123 456", "viewport": {"width": 1280, "height": 900},
           "cohort": 2024, "preferences": ["bsk-7", "bsk-55"]},
    # A phone-sized screen: the portal must be usable there too.
    "ru": {"child_pin": "11003202300502", "parent_pin": "21203198800502", "email": "bakyt.ru@example.kg",
           "phone": "+996 700 987 654", "viewport": {"width": 390, "height": 844},
           "cohort": 2023, "preferences": ["bsk-31", "bsk-12"]},
}
# Applies for a voucher; born in 2022, so no place published here is hers.
VOUCHER_FAMILY = {"child_pin": "10504202200503", "parent_pin": "21203198500503", "email": "nurlan.voucher@example.kg",
                  "phone": "+996 700 111 503", "viewport": {"width": 1024, "height": 800},
                  "preferences": ["bsk-12", "bsk-55"]}
PASSWORD = "тоолор жана көлдөр 2026"
BISHKEK = ZoneInfo("Asia/Bishkek")


class Walk:
    """One parent in one browser context, with a numbered screenshot per step
    under tests/artifacts/browser/<folder>/."""

    def __init__(self, chromium, screenshots, folder: str, lang: str, viewport: dict):
        self.shots = screenshots / folder
        self.shots.mkdir(exist_ok=True)
        for stale in self.shots.glob("*.png"):     # the steps of an earlier run
            stale.unlink()
        self.step = iter(range(1, 100))
        self.lang = lang
        self.context = chromium.new_context(viewport=viewport, locale=lang)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{next(self.step):02d}-{name}.png"), full_page=True)

    def activate_and_log_in(self, link: str, email: str, password: str, save: str, log_in: str) -> None:
        """The e-mailed activation link (the page names the login), the
        password set, then the "Parents" login with it: the cabinet opens.
        `save` and `log_in` are the buttons' words in the page's language."""
        page = self.page
        page.goto(link)
        assert email in page.locator("main").inner_text()
        page.fill("#f-password", password)
        page.fill("#f-password2", password)
        self.shot("activate")
        page.get_by_role("button", name=save).click()
        page.wait_for_url("**/login?activated=1")
        page.fill("#f-login", email)
        page.fill("#f-password", password)
        self.shot("login")
        page.locator("main form button", has_text=log_in).click()
        page.wait_for_url("**/cabinet")

    def close(self) -> None:
        self.context.close()


def apply_activate_and_log_in(walk: Walk, portal, family: dict, category: str = "general") -> None:
    """The Balalyk flow from the home page to the cabinet: the three steps
    (the e-mail code read from the real SMTP server), the activation link
    from the e-mail, the "Parents" login."""
    page, shot, lang = walk.page, walk.shot, walk.lang
    w = WORDS[lang]
    page.goto(f"{portal.url}/lang/{lang}?next=/")
    assert page.locator("html").get_attribute("lang") == lang
    shot("home")
    page.locator("main a.button", has_text=w["apply"]).click()

    # Step 1: the child. A wrong PIN first: the error names the field.
    page.fill("#f-child-pin", family["child_pin"][:-1])
    page.fill("#f-child-surname", "Асанов" if lang == "ky" else "Иванова")
    page.fill("#f-child-name", "Айбек" if lang == "ky" else "Алина")
    page.get_by_role("button", name=w["next"]).click()
    assert w["bad_pin"] in page.locator("#error-summary").inner_text()
    shot("child-error")
    page.fill("#f-child-pin", family["child_pin"])
    shot("child")
    page.get_by_role("button", name=w["next"]).click()

    # Step 2: parent, place of residence, contacts.
    page.wait_for_url("**/apply/parent")
    page.check("input[name=role][value=mother]")
    page.fill("#f-parent-surname", "Асанова" if lang == "ky" else "Иванова")
    page.fill("#f-parent-name", "Айгүл" if lang == "ky" else "Мария")
    page.fill("#f-parent-pin", family["parent_pin"])
    page.select_option("#f-parent-document_type", "id_card")
    page.fill("#f-parent-document_number", "ID1234567")
    page.fill("#f-parent-document_issued_on", "2020-05-01")
    page.select_option("#f-address-region", "41711000000000")
    page.select_option("#f-address-district", "41711210000000")
    page.select_option("#f-address-settlement", "41711000000001")
    page.fill("#f-address-street", w["street"])
    page.fill("#f-address-house", "12")
    page.fill("#f-parent-phone", family["phone"])
    page.fill("#f-parent-email", family["email"])
    shot("parent")
    page.get_by_role("button", name=w["next"]).click()

    # Contacts: "Get code", read the code from the e-mail, enter it. The code
    # crossed Kafka sealed: no raw message on the topic carries it.
    page.wait_for_url("**/apply/contacts")
    page.get_by_role("button", name=w["get_code"]).click()
    page.wait_for_selector("p.notice")
    code = portal.mailbox.wait_for(family["email"], r"\b(\d{6})\b")
    raw = portal.raw_messages("registration")
    assert any(family["email"].encode() in m for m in raw)
    assert not any(code.encode() in m for m in raw)
    page.fill("#f-code", code)
    shot("code")
    page.get_by_role("button", name=w["next"]).click()

    # Step 3: confirmation, category, kindergartens, user agreement.
    page.wait_for_url("**/apply/confirm")
    assert family["child_pin"] in page.locator("main").inner_text()
    page.check(f"input[name=category][value={category}]")
    first, second = family["preferences"]
    page.select_option("#f-preference1", first)
    page.select_option("#f-preference2", second)
    page.check("#agreement")
    shot("confirm")
    page.get_by_role("button", name=w["submit"]).click()
    page.wait_for_url("**/apply/done**")
    assert w["done"] in page.inner_text("h1")
    shot("submitted")

    # Activation: the one-time link from the e-mail; no password in the mail.
    link = portal.mailbox.wait_for(family["email"], r"(https?://\S+/activate\?token=[\w\-]+)")
    assert PASSWORD not in "".join(portal.mailbox.text_to(family["email"]))
    assert not any(link.split("token=")[1].encode() in m for m in portal.raw_messages("account"))
    walk.activate_and_log_in(link, family["email"], PASSWORD, w["save_password"], w["log_in"])
    assert w["cabinet"] in page.inner_text("h1")


@pytest.mark.parametrize("lang", ["ky", "ru"])
def test_parent_applies_activates_sees_position_and_cancels_a_direction(lang, portal, chromium, screenshots):
    w, family = WORDS[lang], FAMILIES[lang]
    walk = Walk(chromium, screenshots, lang, lang, family["viewport"])
    page, shot = walk.page, walk.shot
    first, second = family["preferences"]
    apply_activate_and_log_in(walk, portal, family)

    # The position, once the queue service has taken the application in
    # (registration's outbox -> Kafka -> the queue's consumer).
    entry = portal.entry_of(family["child_pin"])
    assert entry["status"] == "queued" and entry["preferences"] == [first, second]
    page.reload()
    assert w["position"] in page.inner_text("main")
    positions = page.locator("td.position")
    assert positions.count() == 2
    assert re.fullmatch(r"\d+", positions.first.inner_text().strip())
    assert page.locator("figure.chart svg polyline").count() == 1
    shot("cabinet-position")

    # The notifications inbox: the in-app messages that the application was
    # received and, the child's first position being within the top ten (the
    # queue's application.position_changed), that it is among the first ten;
    # both marked read.
    notes = page.locator("section:has(#h-notes)")
    for _ in range(100):
        if notes.locator("li.unread").count() >= 2:
            break
        page.wait_for_timeout(300)
        page.reload()
    assert notes.locator("li.unread").count() == 2
    for left in (1, 0):
        with page.expect_navigation():
            notes.locator("li.unread").first.get_by_role("button", name=w["mark_read"]).click()
        assert notes.locator("li.unread").count() == left
    assert notes.locator("li").count() == 2
    shot("notification-read")

    # An administrator publishes a place; the allocation issues the
    # direction and its workflow starts. The parent sees it with its deadline.
    portal.publish_place(first, family["cohort"], lang)
    referral = portal.wait_referral_workflow(entry["id"])
    assert referral["kindergarten"] == first
    # The window ends at 24:00 of its last working day; the parent is shown that day.
    last_day = (datetime.fromisoformat(referral["deadline"]).astimezone(BISHKEK) - timedelta(seconds=1)).date()
    page.reload()
    direction = page.locator(f"article.referral[data-referral='{referral['id']}']")
    name = next(k["name"] for k in KINDERGARTENS if k["id"] == first)
    assert name in direction.inner_text()
    assert direction.locator("strong").inner_text() == last_day.strftime("%d.%m.%Y")
    shot("direction")
    direction.get_by_role("link", name=w["cancel"]).click()
    page.wait_for_url(f"**/cabinet/referrals/{referral['id']}/cancel")
    shot("cancel-warning")
    page.get_by_role("button", name=w["confirm_cancel"]).click()
    page.wait_for_url("**/cabinet?done=cancelled**")
    assert w["cancelled"] in page.inner_text("main")
    assert page.locator("article.referral").count() == 0
    shot("cancelled")

    # The queue: the place is back in the register, the child is still
    # queued with the same queue date and without that kindergarten, and the
    # audit names the parent.
    [pool] = [p for p in portal.places(first) if p["cohort"] == family["cohort"] and p["language"] == lang]
    assert (pool["free"], pool["held"]) == (1, 0)
    after = portal.entry(entry["id"])
    assert after["status"] == "queued" and after["preferences"] == [second] and after["referral"] is None
    assert after["queue_date"] == entry["queue_date"]
    trail = portal.queue.get(f"/api/v1/queue-entries/{entry['id']}/audit").json()
    [cancelled] = [e for e in trail if e["action"] == "referral.cancelled"]
    assert cancelled["actor"].startswith("parent:")
    page.reload()
    assert page.locator("td.position").count() == 1
    walk.close()


def test_voucher_applicant_sees_the_district_commissions_decision(portal, commission, chromium, screenshots):
    """The voucher programme: the same flow with the voucher category; the
    commission decides in the verification service, whose event reaches the
    cabinet through Kafka."""
    from services.verification.domain import VoucherPolicy

    family = VOUCHER_FAMILY
    walk = Walk(chromium, screenshots, "voucher", "ru", family["viewport"])
    page, shot = walk.page, walk.shot
    apply_activate_and_log_in(walk, portal, family, category="voucher")
    entry = portal.entry_of(family["child_pin"])
    assert entry["category"] == "voucher"
    page.reload()
    voucher = page.locator("section.voucher")
    assert voucher.get_attribute("data-voucher") == "pending"
    assert "Ваучерная программа" in page.locator("main").inner_text()
    shot("voucher-pending")

    number = commission.decide(entry["id"], "approved", benefit_type="full",
                               documents=list(VoucherPolicy().required_documents), reason="")
    for _ in range(100):
        if voucher.get_attribute("data-voucher") == "approved":
            break
        page.wait_for_timeout(300)
        page.reload()
    assert voucher.get_attribute("data-voucher") == "approved", portal.log("consume-gateway")
    assert f"решение № {number} от " in voucher.inner_text()
    assert "Государство оплачивает место полностью" in voucher.inner_text()
    shot("voucher-approved")
    walk.close()


def test_the_child_step_works_with_the_keyboard_alone(portal, chromium, screenshots):
    context = chromium.new_context(viewport={"width": 1024, "height": 768}, locale="ky")
    page = context.new_page()
    page.goto(f"{portal.url}/lang/ky?next=/apply")
    page.wait_for_url("**/apply/child")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-child-pin"
    page.keyboard.type("21506202400601")
    for field, text in (("f-child-surname", "Асанов"), ("f-child-name", "Айбек")):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == field
        page.keyboard.type(text)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Алга"
    page.screenshot(path=str(screenshots / "keyboard-child.png"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/apply/parent")
    context.close()
