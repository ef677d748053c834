"""A caseworker, in headless Chromium, works the privilege cases of their
district: confirm, reject, ask for a fresh certificate. Each act goes to the
REAL ReferralWorkflow on a Temporal dev server, and the parent's referral
(the queue's record, which the cabinet shows) changes accordingly."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.fakes.verification import PASSWORD
from caseworker_support import (  # noqa: F401
    caseworker_page, caseworker_screenshots, caseworker_site, pdf_scan,
)
from workflows.contracts import ReferralState

pytestmark = pytest.mark.integration


@pytest.fixture
def page(caseworker_page, caseworker_site):
    caseworker_page.goto(f"{caseworker_site.url}/login")
    return caseworker_page


def log_in(page: Page, login: str = "aida") -> None:
    """With the keyboard only: the login field has the focus."""
    expect(page.locator("#f-login")).to_be_focused()
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/worklist$"))


def open_case(page: Page, child: str) -> None:
    page.get_by_role("link", name=child).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(child)


def record_certificate(page: Page, site, tmp_path, issued_days_ago: int) -> None:
    details = page.locator("details")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    page.get_by_label("Организация, выдавшая справку").fill("Войсковая часть 12345")
    page.get_by_label("Номер справки").fill("17/3-45")
    page.get_by_label("Дата выдачи").fill((site.today() - timedelta(days=issued_days_ago)).isoformat())
    page.get_by_label("Скан справки").set_input_files(pdf_scan(tmp_path))
    page.get_by_role("button", name="Внести справку").click()
    expect(page.get_by_text("Справка внесена.")).to_be_visible()


def test_caseworker_confirms_a_privilege_and_the_parents_referral_moves_to_enrolment(
        page, caseworker_site, tmp_path, caseworker_screenshots):
    site = caseworker_site
    rid, _ = site.issue_privileged_referral(surname="Асанова", name="Айгерим")
    log_in(page)
    row = page.locator("tr", has_text="Асанова Айгерим")
    expect(row).to_contain_text("внеочередное право")
    expect(row).to_contain_text("Бала бакча № 12 «Күн»")
    expect(row).to_contain_text(re.compile(r"осталось \d+ (дня|дней)|остался \d+ день"))
    expect(row).to_contain_text("справки нет")
    page.screenshot(path=str(caseworker_screenshots / "caseworker_worklist.png"), full_page=True)
    open_case(page, "Асанова Айгерим")
    record_certificate(page, site, tmp_path, issued_days_ago=2)
    until = (site.today() + timedelta(days=8)).strftime("%d.%m.%Y")
    expect(page.locator(".cert-state")).to_have_text(f"действительна по {until}")
    page.screenshot(path=str(caseworker_screenshots / "caseworker_case_in_date.png"), full_page=True)

    page.get_by_role("button", name="Подтвердить льготу").click()
    expect(page.locator("#outcome")).to_contain_text("Льгота подтверждена.")
    status = site.status(rid)
    assert status.state is ReferralState.AWAITING_ENROLMENT and status.window == "enrolment"
    parent = site.wait_parent_state(rid, "awaiting_enrolment")
    assert parent.deadline == status.enrolment_deadline
    assert any(k.endswith("privilege_confirmed:record") for k in parent.events)
    deadline = status.enrolment_deadline.strftime("%d.%m.%Y, %H:%M")   # as Russian readers write it (Babel)
    expect(page.locator("#outcome")).to_contain_text(deadline)
    page.screenshot(path=str(caseworker_screenshots / "caseworker_confirmed.png"), full_page=True)
    page.get_by_role("link", name="Рабочий список").first.click()
    expect(page.locator("main")).not_to_contain_text("Асанова Айгерим")


def test_caseworker_rejects_a_privilege_with_a_reason_and_the_child_returns_to_the_general_queue(
        page, caseworker_site):
    site = caseworker_site
    rid, app = site.issue_privileged_referral(surname="Бекова", name="Нурайым")
    log_in(page)
    open_case(page, "Бекова Нурайым")
    page.get_by_role("button", name="Отклонить льготу").click()
    expect(page.locator("#errors")).to_contain_text("Причина: обязательное поле")
    expect(page.get_by_label("Причина")).to_have_attribute("aria-invalid", "true")
    assert site.status(rid).state is ReferralState.AWAITING_CONFIRMATION

    page.get_by_label("Причина").fill("Справка выдана не органом специального назначения")
    page.get_by_role("button", name="Отклонить льготу").click()
    expect(page.locator("#outcome")).to_contain_text("Льгота отклонена.")
    assert site.status(rid).state is ReferralState.PRIVILEGE_REJECTED
    parent = site.wait_parent_state(rid, "privilege_rejected")
    assert parent.reason == "Справка выдана не органом специального назначения"
    assert site.queue.general_queue[app] == "extraordinary"
    assert (rid, "privilege_rejected") in site.queue.places_returned


def test_an_out_of_date_certificate_asks_for_a_fresh_one_then_the_fresh_one_confirms(
        page, caseworker_site, tmp_path, caseworker_screenshots):
    site = caseworker_site
    rid, _ = site.issue_privileged_referral(surname="Джумабаева", name="Элина")
    log_in(page)
    open_case(page, "Джумабаева Элина")
    record_certificate(page, site, tmp_path, issued_days_ago=15)
    expect(page.locator(".cert-state")).to_contain_text("просрочена")
    expect(page.get_by_role("button", name="Подтвердить льготу")).to_be_disabled()
    expect(page.get_by_text("Справка просрочена: запросите новую.")).to_be_visible()
    page.screenshot(path=str(caseworker_screenshots / "caseworker_out_of_date.png"), full_page=True)

    page.get_by_role("button", name="Запросить новую справку").click()
    expect(page.locator("#outcome")).to_contain_text("Запрошена новая справка.")
    status = site.status(rid)
    assert status.state is ReferralState.AWAITING_CONFIRMATION and status.certificate_requests == 1
    parent = site.wait_parent_state(rid, "awaiting_confirmation")
    assert any(k.endswith("certificate_requested:1:record") for k in parent.events)
    assert "valid up to and including" in (parent.reason or "")

    # The parent brings a fresh certificate within the same window.
    record_certificate(page, site, tmp_path, issued_days_ago=0)
    page.get_by_role("button", name="Подтвердить льготу").click()
    expect(page.locator("#outcome")).to_contain_text("Льгота подтверждена.")
    assert site.status(rid).state is ReferralState.AWAITING_ENROLMENT
    site.wait_parent_state(rid, "awaiting_enrolment")


def test_the_workflows_refusal_is_shown_to_the_caseworker(page, caseworker_site, tmp_path):
    site = caseworker_site
    # The parent's cancellation has not reached the worklist yet (Kafka lag).
    site.queue.publish_cancellations = False
    try:
        rid, _ = site.issue_privileged_referral(surname="Омурова", name="Сезим")
        log_in(page)
        open_case(page, "Омурова Сезим")
        record_certificate(page, site, tmp_path, issued_days_ago=1)
        site.parent_cancels(rid)
        page.get_by_role("button", name="Подтвердить льготу").click()
    finally:
        site.queue.publish_cancellations = True
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text("Направление отказало: подтвердить льготу")
    expect(outcome).to_contain_text("направление уже закрыто (отменено родителем)")     # the reader's language
    # The page now says what the workflow knows, and the worklist drops the case.
    expect(page.locator("dd").first).to_have_text("отменено родителем")
    expect(page.get_by_role("button", name="Подтвердить льготу")).to_have_count(0)
    assert site.status(rid).state is ReferralState.CANCELLED
    page.get_by_role("link", name="Рабочий список").first.click()
    expect(page.locator("main")).not_to_contain_text("Омурова")


def test_a_caseworker_of_another_district_finds_nothing_of_this_one(page, caseworker_site):
    site = caseworker_site
    rid, _ = site.issue_privileged_referral(surname="Сыдыкова", name="Адинай")
    log_in(page, "bakyt")
    expect(page.locator("main")).not_to_contain_text("Сыдыкова")
    page.goto(f"{site.url}/cases/{rid}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Не найдено")
    expect(page.locator("main")).not_to_contain_text("Сыдыкова")
    assert site.status(rid).state is ReferralState.AWAITING_CONFIRMATION
    assert site.queue.referrals[rid].state == "awaiting_confirmation"


def test_the_case_reads_in_kyrgyz_and_names_the_field_in_kyrgyz(page, caseworker_site, caseworker_screenshots):
    site = caseworker_site
    site.issue_privileged_referral(surname="Токтогулова", name="Айсулуу")
    log_in(page)
    page.get_by_role("link", name="Кыргызча").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Жеңилдикти ырастоону күткөн жолдомолор")
    page.get_by_role("link", name="Токтогулова Айсулуу").click()
    page.get_by_role("button", name="Жеңилдикти четке кагуу").click()
    expect(page.locator("#errors")).to_contain_text("Себеби: толтурулушу керек")
    expect(page.get_by_role("button", name="Жеңилдикти ырастоо")).to_be_disabled()
    page.get_by_role("button", name="Маалымкатты киргизүү").click()      # every field left empty
    errors = page.locator("#errors li")
    expect(errors).to_have_text(["Маалымкатты берген уюм: толтурулушу керек",
                                 "Маалымкаттын номери: толтурулушу керек",
                                 "Берилген күнү: толтурулушу керек",
                                 "Маалымкаттын сканы: толтурулушу керек"])
    errors.first.get_by_role("link").click()                             # the summary leads to the field
    expect(page.locator("#f-organisation")).to_be_focused()
    page.screenshot(path=str(caseworker_screenshots / "caseworker_case_ky.png"), full_page=True)
