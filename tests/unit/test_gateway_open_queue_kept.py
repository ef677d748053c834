"""The queue open to all is read by many visitors and changed by the queue
now and then (issue 15): the gateway renders a kindergarten's queue page
once per answer of the queue and gives the same HTML to the next reader of
that page, language and sign-in; any change in what the queue answers is on
the very next read. Against the real queue service (its API in process)."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from services.gateway.portal import pages
from services.gateway.portal.pages import KeptPages
from tests.fakes.gateway import Stack, real_queue

POOL = {"cohort": "2022", "language": "ru"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    state = tmp_path_factory.mktemp("open-queue-kept")
    queue, callers = real_queue(state)
    stack = Stack(state, queue_app=queue, rate_limit_per_minute=100_000)
    q = TestClient(queue)
    r = q.put("/api/v1/kindergartens/bsk-7", headers=callers.admin(), json={
        "name": "№7 «Ромашка»", "district": "41711210000000", "address": "Киевская, 7", "languages": ["ru", "ky"]})
    assert r.status_code == 200, r.text

    def join(i: int, surname: str, language: str = "ru"):
        r = q.post("/api/v1/queue-entries", headers=callers.service("registration"), json={
            "application_id": f"k{i}", "pin": f"2150620220{i:04d}", "surname": surname, "name": "Айбек",
            "category": "general", "language": language, "preferences": ["bsk-7"], "parent_id": f"p{i}",
            "queue_date": datetime(2025, 2, 1 + i, 4, tzinfo=UTC).isoformat()})
        assert r.status_code == 201, r.text

    join(0, "Асанова")
    join(1, "Бекова")
    stack.join = join
    return stack


@pytest.fixture
def renders(monkeypatch):
    """The templates rendered, by name."""
    made: list[str] = []
    html = pages.Page.html

    def counted(self, name, *args, **kw):
        made.append(name)
        return html(self, name, *args, **kw)

    monkeypatch.setattr(pages.Page, "html", counted)
    return made


def rows(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td>([^<]+)</td>", text)


def test_a_queue_page_read_again_is_the_same_page_rendered_once(world, renders):
    c = world.browser("ru")
    first = c.get("/queue/bsk-7", params=POOL)
    again = world.browser("ru").get("/queue/bsk-7", params=POOL)
    assert first.status_code == again.status_code == 200
    assert again.text == first.text and rows(first.text) == [("1", "1", "А****** А."), ("2", "2", "Б***** А.")]
    assert renders.count("open_queue.html") <= 1      # the first read may find it kept by an earlier test


def test_a_change_in_the_queue_is_on_the_next_read(world, renders):
    c = world.browser("ru")
    before = c.get("/queue/bsk-7", params=POOL).text
    world.join(2, "Ким")
    after = c.get("/queue/bsk-7", params=POOL).text
    assert "Ожидают 2 ребёнка." in before and "Ожидают 3 ребёнка." in after
    assert rows(after)[-1] == ("3", "3", "К** А.")
    assert renders.count("open_queue.html") >= 1


def test_a_kept_page_is_kept_per_language_and_sign_in_and_still_sets_the_language_asked(world, renders):
    ru = world.browser("ru").get("/queue/bsk-7", params=POOL)
    ky = world.browser("ru").get("/queue/bsk-7", params={**POOL, "lang": "ky"})
    assert ru.status_code == ky.status_code == 200
    assert '<html lang="ru">' in ru.text and '<html lang="ky">' in ky.text
    assert ky.cookies.get("kezek_lang") == "ky"           # the reader's choice kept, as on a page rendered anew
    again = world.browser("ru").get("/queue/bsk-7", params={**POOL, "lang": "ky"})
    assert again.text == ky.text and again.cookies.get("kezek_lang") == "ky"
    assert renders.count("open_queue.html") <= 2


def test_kept_pages_drop_the_least_recently_read_beyond_their_capacity():
    kept = KeptPages(capacity=2)
    kept.put(("a",), ({}, "A"))
    kept.put(("b",), ({}, "B"))
    assert kept.get(("a",)) == ({}, "A")                # read: now the most recent
    kept.put(("c",), ({}, "C"))
    assert kept.get(("b",)) is None and kept.get(("a",)) is not None and kept.get(("c",)) is not None
    assert len(kept) == 2
