"""The application's forms state and enforce the same length limits as the
registration service (kezek/lengths.py): every text input carries its
`maxlength`, and a longer value is refused naming the limit, not as "letters
only". The categories are explained where a parent meets them: who
qualifies, and — from the queue's policy — whether a caseworker must confirm
the privilege, so the page never asks for documents a category does not
need."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from kezek import lengths
from services.registration import domain as d
from tests.fakes.gateway import Stack
from tests.unit.test_gateway_portal import PARENT_FORM, csrf, errors

CONFIRM_NEEDED = "подтвердить в управлении образования"
NO_DOCUMENTS = "Документы приносить не нужно"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("limits"), rate_limit_per_minute=100_000)


def inputs(html: str) -> list[str]:
    return [tag for tag in re.findall(r"<input\b[^>]*>", html, re.S)
            if not re.search(r'type="(hidden|radio|checkbox)"', tag)]


def to_confirm_step(c: TestClient, stack: Stack, pin: str, email: str) -> str:
    token = csrf(c.get("/apply", follow_redirects=True).text)
    c.post("/apply/child", data={"csrf": token, "pin": pin, "surname": "Асанов", "name": "Айбек"})
    c.post("/apply/parent", data={"csrf": token, **PARENT_FORM, "email": email})
    c.post("/apply/contacts", data={"csrf": token, "action": "send"})
    r = c.post("/apply/contacts", data={"csrf": token, "action": "verify", "code": stack.last_code(email)})
    assert r.url.path == "/apply/confirm"
    return r.text


def test_every_text_input_carries_the_limit_the_service_checks(stack):
    c = stack.browser("ru")
    pages = [c.get("/apply", follow_redirects=True).text]
    token = csrf(pages[0])
    c.post("/apply/child", data={"csrf": token, "pin": "21506202400101", "surname": "Асанов", "name": "Айбек"})
    pages.append(c.get("/apply/parent").text)
    pages += [c.get("/login").text, c.get("/activate/request").text]
    seen = 0
    for html in pages:
        for tag in inputs(html):
            if 'type="date"' in tag:
                continue
            key = re.search(r'id="f-([^"]+)"', tag).group(1).replace("-", ".", 1)
            key = {"pin": "child.pin", "surname": "child.surname"}.get(key, key)
            found = re.search(r'maxlength="(\d+)"', tag)
            assert found, f"no maxlength: {tag}"
            assert int(found.group(1)) == lengths.MAX_LENGTH[key], tag
            seen += 1
    assert seen >= 17


def test_a_ten_thousand_character_name_is_refused_naming_the_limit(stack):
    c = stack.browser("ru")
    token = csrf(c.get("/apply", follow_redirects=True).text)
    r = c.post("/apply/child", data={"csrf": token, "pin": "21506202400102", "surname": "Асанов",
                                     "name": "А" * 10_000})
    assert r.status_code == 422
    assert ("f-child-name", "Имя ребёнка: слишком длинно: не более 60 символов (введено 10000).") in errors(r.text)


def test_the_rules_refuse_a_long_value_with_its_limit():
    with pytest.raises(d.RegistrationRefused) as refused:
        d.validate_child({"pin": "21506202400011", "surname": "Асанов" * 20, "name": "Айбек"}, "KG",
                         __import__("datetime").date(2026, 12, 1))
    assert [e.as_dict() for e in refused.value.errors] == [
        {"field": "child.surname", "code": "too_long", "params": {"max": "60", "length": "120"}}]


def test_the_confirmation_explains_each_category_by_the_policy(stack):
    html = to_confirm_step(stack.browser("ru"), stack, "21506202400103", "cats@example.kg")
    hints = dict(re.findall(r'<p class="hint category-hint" id="cat-(\w+)-hint"[^>]*>(.*?)</p>', html, re.S))
    assert set(hints) >= {"general", "privileged", "extraordinary"}
    assert CONFIRM_NEEDED in hints["extraordinary"] and NO_DOCUMENTS not in hints["extraordinary"]
    assert NO_DOCUMENTS in hints["privileged"] and CONFIRM_NEEDED not in hints["privileged"]
    assert "Сироты" in hints["privileged"] and "военнослужащих" in hints["extraordinary"]
    assert "должна быть подтверждена документами" not in html


def test_a_policy_that_confirms_another_category_changes_what_the_page_says(tmp_path):
    stack = Stack(tmp_path)
    stack.queue.confirmed = {"extraordinary", "privileged"}
    html = to_confirm_step(stack.browser("ru"), stack, "21506202400104", "cats2@example.kg")
    hint = re.search(r'id="cat-privileged-hint"[^>]*>(.*?)</p>', html, re.S).group(1)
    assert CONFIRM_NEEDED in hint


def test_the_first_step_says_who_has_a_privilege(stack):
    html = stack.browser("kk").get("/apply", follow_redirects=True).text
    assert "Кімде жеңілдік бар? Кезек санаттары" in html and 'data-category="extraordinary"' in html
