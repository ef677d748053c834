"""A Kazakh deployment (KEZEK_COUNTRY=KZ) registers a family end to end, in
Kazakh, in headless Chromium against the whole system (conftest.Portal with
country KZ): the child's and the parent's IIN, an Almaty address from the
Kazakh reference data (region, district and street named in Kazakh), a +7
phone and a Kazakh identity card, the e-mail code read from the real SMTP
server, the confirmation, the activation link from the e-mail (in Kazakh),
the password, the login and the cabinet, where the queue service has taken
the child in. Screenshots under tests/artifacts/browser/kz/."""
from __future__ import annotations

import pytest

from kezek import pin as kpin
from tests.browser.conftest import Portal
from tests.browser.test_parent_flow import PASSWORD, Walk

pytestmark = pytest.mark.integration

CHILD_IIN = "230514510001"       # a boy born on 14 May 2023
PARENT_IIN = "880712310004"
EMAIL = "aigerim.kz@example.kz"
ALMATY, BOSTANDYK = "750000000", "751410000"
# Kindergartens of Almaty in the queue's register (the portal offers those near the address).
ALMATY_KINDERGARTENS = [
    {"id": "almaty-101", "name": "№ 101 «Айгөлек» балабақшасы", "address": "Сәтбаев көшесі, 30",
     "district": BOSTANDYK, "lat": 43.2335, "lon": 76.9215, "languages": ["kk", "ru"]},
    {"id": "almaty-57", "name": "№ 57 «Балдырған» балабақшасы", "address": "Әл-Фараби даңғылы, 12",
     "district": BOSTANDYK, "lat": 43.2180, "lon": 76.9190, "languages": ["kk"]},
]


@pytest.fixture(scope="module")
def kz_portal(kafka_bootstrap, temporal_dev, tmp_path_factory):
    p = Portal(tmp_path_factory.mktemp("portal-kz"), kafka_bootstrap, temporal_dev.address, country="KZ")
    try:
        p.start()
        for kg in ALMATY_KINDERGARTENS:
            r = p.queue.put(f"/api/v1/kindergartens/{kg['id']}", json={k: v for k, v in kg.items() if k != "id"})
            assert r.status_code in (200, 201), r.text
    except BaseException:
        p.stop()
        raise
    yield p
    p.stop()


def test_a_family_registers_in_kazakh_with_an_iin_and_an_almaty_address(kz_portal, chromium, screenshots):
    assert kpin.parse(CHILD_IIN, "KZ").birth_date.isoformat() == "2023-05-14"
    walk = Walk(chromium, screenshots, "kz", "kk", {"width": 1280, "height": 900})
    page, shot = walk.page, walk.shot
    try:
        page.goto(f"{kz_portal.url}/lang/kk?next=/")
        assert page.locator("html").get_attribute("lang") == "kk"
        assert "ЖСН" in page.inner_text("main")
        shot("home")
        page.locator("main a.button", has_text="Өтініш беру").click()

        # Step 1: the child, by IIN; a Kyrgyz PIN is refused, naming the IIN's 12 digits.
        page.wait_for_url("**/apply/child")
        page.fill("#f-child-pin", "21506202400011")
        page.fill("#f-child-surname", "Сейітов")
        page.fill("#f-child-name", "Нұрсұлтан")
        page.get_by_role("button", name="Әрі қарай").click()
        assert "Баланың жеке сәйкестендіру нөмірі (ЖСН)" in page.locator("#error-summary").inner_text()
        shot("child-error")
        page.fill("#f-child-pin", CHILD_IIN)
        shot("child")
        page.get_by_role("button", name="Әрі қарай").click()

        # Step 2: the parent, an Almaty address named in Kazakh, +7 phone, a Kazakh identity card.
        page.wait_for_url("**/apply/parent")
        page.check("input[name=role][value=mother]")
        page.fill("#f-parent-surname", "Сейітқызы")
        page.fill("#f-parent-name", "Әйгерім")
        page.fill("#f-parent-pin", PARENT_IIN)
        page.select_option("#f-parent-document_type", "id_card")
        page.fill("#f-parent-document_number", "012345678")
        page.fill("#f-parent-document_issued_on", "2019-03-01")
        page.select_option("#f-address-region", ALMATY)
        assert page.locator("#f-address-region option:checked").inner_text() == "Алматы қаласы"
        page.select_option("#f-address-district", BOSTANDYK)
        assert page.locator("#f-address-district option:checked").inner_text() == "Бостандық ауданы"
        # Every district of Almaty has the city as its settlement: the one in the chosen district's group.
        index = page.evaluate("""v => [...document.querySelector('#f-address-settlement').options]
                                      .findIndex(o => o.value === v && !o.parentElement.disabled)""", ALMATY)
        page.select_option("#f-address-settlement", index=index)
        page.fill("#f-address-street", "Сәтбаев көшесі")
        page.fill("#f-address-house", "22")
        page.fill("#f-parent-phone", "+7 701 123 45 67")
        page.fill("#f-parent-email", EMAIL)
        shot("parent")
        page.get_by_role("button", name="Әрі қарай").click()

        # The e-mail code, from the real SMTP server.
        page.wait_for_url("**/apply/contacts")
        assert "+77011234567" in page.inner_text("main")
        page.get_by_role("button", name="Кодты алу").click()
        page.wait_for_selector("p.notice")
        code = kz_portal.mailbox.wait_for(EMAIL, r"\b(\d{6})\b")
        page.fill("#f-code", code)
        shot("code")
        page.get_by_role("button", name="Әрі қарай").click()

        # Step 3: the review in Kazakh, the category explained, a kindergarten, the agreement.
        page.wait_for_url("**/apply/confirm")
        review = page.inner_text("main")
        assert CHILD_IIN in review and "Алматы қаласы, Бостандық ауданы, Алматы, Сәтбаев көшесі, 22" in review
        assert "ЖСН" in review
        page.check("input[name=category][value=general]")
        assert "«Айгөлек»" in page.locator("#f-preference1").inner_text()
        page.select_option("#f-preference1", "almaty-101")
        page.check("#agreement")
        shot("confirm")
        page.get_by_role("button", name="Өтініш беру").click()
        page.wait_for_url("**/apply/done**")
        shot("submitted")

        # Activation from the e-mailed link (the letter is in Kazakh), the password, the login.
        link = kz_portal.mailbox.wait_for(EMAIL, r"(https?://\S+/activate\?token=[\w\-]+)")
        assert any("Жеке кабинет" in text or "кабинет" in text for text in kz_portal.mailbox.text_to(EMAIL))
        walk.activate_and_log_in(link, EMAIL, PASSWORD, "Құпиясөзді сақтау", "Кіру")
        assert "Жеке кабинет" in page.inner_text("h1")

        # The queue service has the child, with the IIN's birth year as the cohort.
        entry = kz_portal.entry_of(CHILD_IIN)
        assert entry["status"] == "queued" and entry["cohort"] == 2023
        page.reload()
        assert "Нұрсұлтан" in page.inner_text("main")
        shot("cabinet")
    finally:
        walk.close()
