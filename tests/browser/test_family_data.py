"""A family downloads everything Kezek holds about it, and asks for erasure
(DOMAIN.md section 7), in headless Chromium against the whole system
(tests/browser/conftest.py): the cabinet's page gathers the family's data
from every service as the parent (registration, the queue, verification,
notifications, the portal's own), the JSON file downloads with the same;
erasure is refused, with the legal reason, while the child is in the
queue, and once the child is removed it is granted: every service
anonymises its data (over Kafka) and the account with its last
application, so the parent cannot sign in again. Screenshots under
tests/artifacts/browser/family/."""
from __future__ import annotations

import json
import time

import pytest

from tests.browser.test_parent_flow import PASSWORD, Walk, apply_activate_and_log_in

pytestmark = pytest.mark.integration

FAMILY = {"child_pin": "21109202300504", "parent_pin": "21203198700504", "email": "dinara.data@example.kg",
          "phone": "+996 700 222 504", "viewport": {"width": 1280, "height": 900}, "cohort": 2023,
          "preferences": ["bsk-55", "bsk-12"]}
WORDS = {"data": "Всё, что Kezek хранит о вашей семье", "filed": "Заявление, как оно было подано",
         "confirm_erase": "Да, удалить данные", "in_queue": "ребёнок в очереди",
         "confirm_remove": "Да, снять с очереди", "erased": "Данные заявления удаляются"}


def test_a_family_downloads_its_data_and_erasure_is_refused_while_queued_then_granted(portal, chromium, screenshots):
    walk = Walk(chromium, screenshots, "family", "ru", FAMILY["viewport"])
    page, shot = walk.page, walk.shot
    apply_activate_and_log_in(walk, portal, FAMILY)
    entry = portal.entry_of(FAMILY["child_pin"])
    assert entry["status"] == "queued"

    # The readable page, gathered from every service as this parent.
    page.get_by_role("link", name=WORDS["data"]).click()
    page.wait_for_url("**/cabinet/data")
    main = page.inner_text("main")
    assert WORDS["data"] in page.inner_text("h1") and WORDS["filed"] in main
    assert FAMILY["child_pin"] in main and FAMILY["email"] in main and "ID1234567" in main
    shot("data-page")

    # The same as a file; the notifications reach it once they are made.
    for _ in range(60):
        with page.expect_download() as download:
            page.click("#download-json")
        copy = json.loads(open(download.value.path(), encoding="utf-8").read())
        if copy["notifications"]["messages"] and copy["applications"][0]["queue"]["positions"]:
            break
        time.sleep(1)
    assert download.value.suggested_filename == "kezek-family-data.json"
    assert copy["format"] == "kezek.family-copy.v1" and copy["parent"]["email"] == FAMILY["email"]
    [app] = copy["applications"]
    assert app["id"] == entry["id"] and app["registration"]["child"]["pin"] == FAMILY["child_pin"]
    assert "ID1234567" in json.dumps(app["registration"]["parent"])
    assert app["queue"]["entry"]["status"] == "queued" and app["queue"]["entry"]["pin"] == FAMILY["child_pin"]
    assert app["queue"]["positions"][0]["position"] >= 1
    assert "application.queued" in [h["action"] for h in app["queue"]["history"]]
    assert app["verification"]["applicant"]["child_pin"] == FAMILY["child_pin"]
    assert {m["kind"] for m in copy["notifications"]["messages"]} >= {"application_received"}
    assert "application.submitted" in [h["action"] for h in copy["history"]["registration"]]

    # Erasure while the child is in the queue: refused, with why.
    page.goto(f"{portal.url}/cabinet")
    page.locator(f"a[href='/cabinet/applications/{entry['id']}/erase']").click()
    page.get_by_role("button", name=WORDS["confirm_erase"]).click()
    assert WORDS["in_queue"] in page.inner_text("main")
    shot("erasure-refused")
    assert portal.entry(entry["id"])["status"] == "queued"

    # Removed from the queue, then erased: granted.
    page.goto(f"{portal.url}/cabinet/applications/{entry['id']}/remove")
    page.get_by_role("button", name=WORDS["confirm_remove"]).click()
    page.wait_for_url("**/cabinet?done=removed**")
    page.goto(f"{portal.url}/cabinet/applications/{entry['id']}/erase")
    page.get_by_role("button", name=WORDS["confirm_erase"]).click()
    page.wait_for_url("**/cabinet?done=erased**")
    assert WORDS["erased"] in page.inner_text("main")
    shot("erasure-granted")

    # Every service anonymises its data; registration the account with the
    # family's last application: its sessions end, its password is gone.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        page.goto(f"{portal.url}/cabinet")
        if "/login" in page.url:
            break
        time.sleep(1)
    assert "/login" in page.url
    page.fill("#f-login", FAMILY["email"])
    page.fill("#f-password", PASSWORD)
    page.locator("main form button").first.click()
    assert "/cabinet" not in page.url
    shot("cannot-sign-in")
    # The queue's entry: its PIN is gone (no entry is found by it), its row stays.
    assert portal.queue.post("/api/v1/queue-entries/search", json={
        "pin": FAMILY["child_pin"], "purpose": "other", "note": "browser test"}).status_code == 404
    assert portal.entry(entry["id"])["status"] == "removed"
    walk.close()
