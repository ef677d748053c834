"""A parent moved from the old portal, in headless Chromium against the whole
system (tests/browser/conftest.py): `kezek import` brings the family in (an
account without a password, the child's queue entry with its old queue
date, the child's application for the cabinet); the parent follows "Get an
activation link" from the login page, reads the link from the e-mail the
real SMTP server received, sets a password, logs in and finds the child in
the cabinet with the queue position the queue service gives. Screenshots
under tests/artifacts/browser/imported/."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.fakes.gateway import KINDERGARTENS
from tests.browser.test_parent_flow import BISHKEK, PASSWORD, Walk

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EMAIL = "imported.parent@example.kg"
QUEUE_DATE = "2024-07-01T10:00:00+06:00"
KG = next(k for k in KINDERGARTENS if k["id"] == "bsk-12")
EXPORT = {
    "source": "balalyk", "country": "KG",
    "kindergartens": [{k: KG[k] for k in ("id", "name", "district", "address", "languages")}],
    "places": [],
    "children": [{"id": "c900", "pin": "21506202400801", "surname": "Асанов", "name": "Эрлан", "patronymic": "",
                  "birth_date": "2024-06-15"}],
    "parents": [{"id": "p900", "child_id": "c900", "role": "mother", "surname": "Асанова", "name": "Гүлнара",
                 "pin": "11203199000801", "phone": "+996555845801", "email": EMAIL}],
    "applications": [{"id": "900001", "child_id": "c900", "parent_id": "p900", "category": "general",
                      "queue_date": QUEUE_DATE, "language": "ru", "preferences": ["bsk-12"], "status": "queued"}],
    "referrals": [],
}


def kezek_import(portal, tmp_path: Path) -> dict:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(EXPORT, ensure_ascii=False))
    env = {**os.environ, **portal.child_env(), "KEZEK_LOG_JSON": "false"}
    out = subprocess.run([sys.executable, "-m", "kezek.cli", "import", str(path), "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["counts"]


def test_imported_parent_gets_an_activation_link_and_sees_the_imported_child(portal, chromium, screenshots,
                                                                               tmp_path):
    counts = kezek_import(portal, tmp_path)
    assert counts["parents"] == {"created": 1} and counts["applications"] == {"created": 1}
    assert counts["cabinets"] == {"created": 1}
    entry = portal.entry_of("21506202400801")
    assert entry["status"] == "queued" and entry["parent_id"] == "balalyk-parent-p900"
    assert portal.mailbox.text_to(EMAIL) == [], "nothing is sent at import"

    walk = Walk(chromium, screenshots, "imported", "ru", {"width": 390, "height": 844})
    page, shot = walk.page, walk.shot
    page.goto(f"{portal.url}/lang/ru?next=/login")
    shot("login")
    page.get_by_role("link", name=re.compile("Получите ссылку для активации")).click()
    page.wait_for_url("**/activate/request")
    page.fill("#f-email", "not an address")
    page.get_by_role("button", name="Отправить ссылку").click()
    assert "Электронная почта: введите адрес электронной почты" in page.locator("#error-summary").inner_text()
    shot("request-error")
    page.fill("#f-email", EMAIL)
    page.get_by_role("button", name="Отправить ссылку").click()
    assert "ссылка" in page.locator("p.notice").inner_text()
    shot("request-sent")

    link = portal.mailbox.wait_for(EMAIL, r"(https?://\S+/activate\?token=[\w\-]+)")
    walk.activate_and_log_in(link, EMAIL, PASSWORD, "Сохранить пароль", "Вход")

    main = page.locator("main")
    assert "Асанов Эрлан" in main.inner_text()
    assert datetime.fromisoformat(QUEUE_DATE).astimezone(BISHKEK).strftime("%d.%m.%Y") in main.inner_text()
    positions = page.locator("td.position")
    for _ in range(50):
        if positions.count():
            break
        page.wait_for_timeout(300)
        page.reload()
    assert positions.count() == 1 and re.fullmatch(r"\d+", positions.first.inner_text().strip())
    shot("cabinet")
    walk.close()
