"""A district supervisor revokes a privilege found false, raised by the abuse
rule, and the child returns to the general queue through the REAL
ReferralWorkflow; a voucher commission member decides an application and
prints the decision record."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from caseworker_support import (  # noqa: F401
    caseworker_page, caseworker_screenshots, caseworker_site,
)
from playwright.sync_api import Page, expect

from kezek.events import Event
from services.verification.models import outbox
from tests.fakes.verification import (
    PASSWORD, application_received, application_submitted, referral_closed, referral_issued,
)
from workflows.contracts import ReferralState

pytestmark = pytest.mark.integration


@pytest.fixture
def page(caseworker_page):
    return caseworker_page


def log_in(page: Page, site, login: str) -> None:
    page.goto(f"{site.url}/login")
    page.get_by_label("Логин").fill(login)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    expect(page.get_by_role("button", name="Выйти")).to_be_visible()


def outbox_events(site, event_type: str) -> list[Event]:
    with site.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == event_type)).scalars()
        return [Event.from_json(r) for r in rows]


def test_supervisor_revokes_a_false_privilege_and_the_child_returns_to_the_general_queue(
        page, caseworker_site, caseworker_screenshots):
    site = caseworker_site
    pin, app = site.new_pin(), "app-abuse"
    site.publish(application_submitted(app, pin=pin, surname="Мамытова", name="Аэлита"))
    site.publish(application_received(app))
    now = datetime.now(UTC)
    for i, old in enumerate(("old-1", "old-2")):       # taken, cancelled, taken again, cancelled ...
        t = now - timedelta(days=90 - 30 * i)
        site.publish(referral_issued(old, app, deadline=t + timedelta(days=7), at=t))
        site.publish(referral_closed("cancelled", old, app, at=t + timedelta(days=3)))
    rid, _ = site.issue_privileged_referral(application_id=app)      # ... and taken again

    log_in(page, site, "aida")
    row = page.locator("tr", has_text="Мамытова Аэлита")
    expect(row.get_by_role("link", name="Признак: возможное злоупотребление")).to_be_visible()
    expect(row.locator("ul.history li")).to_have_count(2)
    page.get_by_role("button", name="Выйти").click()

    log_in(page, site, "chynara")
    page.get_by_role("link", name="Признаки злоупотреблений").click()
    page.get_by_role("link", name="Мамытова Аэлита").click()
    expect(page.locator("main")).to_contain_text("льготное направление оставлено и взято новое: 2 раза")
    expect(page.locator("tr.flagged")).to_have_count(3)
    page.get_by_role("button", name="Отозвать льготу: она недостоверна").click()
    expect(page.locator("#errors")).to_contain_text("Причина: обязательное поле")
    page.get_by_label("Причина").fill("Справка из в/ч поддельная: ответ военкомата № 45 от 12.03")
    page.screenshot(path=str(caseworker_screenshots / "supervisor_abuse_case.png"), full_page=True)
    page.get_by_role("button", name="Отозвать льготу: она недостоверна").click()
    expect(page.locator("#outcome")).to_contain_text("Льгота отозвана; ребёнок возвращается в общую очередь.")

    assert site.status(rid).state is ReferralState.PRIVILEGE_REJECTED
    site.wait_parent_state(rid, "privilege_rejected")
    assert site.queue.general_queue[app] == "extraordinary"
    [revoked] = outbox_events(site, "verification.privilege_revoked.v1")
    assert revoked.data["application_id"] == app and revoked.data["referral_rejected"] is True
    assert revoked.data["referral_id"] == rid and revoked.data["to_category"] == "general"


def test_commission_member_approves_a_voucher_and_prints_the_decision_record(
        page, caseworker_site, caseworker_screenshots):
    site = caseworker_site
    site.publish(application_submitted("app-voucher", pin=site.new_pin(), surname="Касымова", name="Мээрим",
                                       category="voucher"))
    site.publish(application_received("app-voucher"))
    log_in(page, site, "emil")
    expect(page).to_have_url(re.compile(r"/vouchers$"))
    page.get_by_role("link", name="Касымова Мээрим").click()
    page.get_by_label("одобрить").check()
    page.get_by_role("button", name="Записать решение").click()
    errors = page.locator("#errors")
    expect(errors).to_contain_text("Вид поддержки: обязательное поле")
    expect(errors).to_contain_text("Проверенные документы: проверены не все обязательные документы")

    for doc in ("свидетельство о рождении ребёнка", "документ, удостоверяющий личность родителя",
                "подтверждение проживания в районе", "договор с частным детским садом"):
        page.get_by_label(doc).check()
    page.get_by_label("Вид поддержки").select_option("full")
    page.get_by_label("Фарида Исакова").check()
    page.get_by_role("button", name="Записать решение").click()

    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(re.compile(r"Протокол решения № \d+"))
    record = page.locator("article.record")
    expect(record).to_contain_text("одобрено")
    expect(record).to_contain_text("полное финансирование")
    expect(record.locator("table.signatures tbody tr")).to_have_count(2)
    expect(record).to_contain_text("Фарида Исакова")
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    page.screenshot(path=str(caseworker_screenshots / "voucher_decision_print.png"), full_page=True)
    [decided] = outbox_events(site, "verification.voucher_decided.v1")
    assert decided.data["decision"] == "approved" and decided.data["benefit_type"] == "full"
