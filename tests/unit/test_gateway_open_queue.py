"""The queue open to all on the portal (issue 19), against the real queue
service (its API in process): no sign-in, in ky, ru, kk and en, the masked
list of a kindergarten, birth year and language with the same order and
explanation as the cabinet and both numbers (in this language, and the
cabinet's position over every language), and the figures of the city and
its districts with charts drawn on the server."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tests.fakes.gateway import Stack, real_queue

LENINSKY = "41711210000000"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    state = tmp_path_factory.mktemp("open-queue")
    queue, callers = real_queue(state)
    stack = Stack(state, queue_app=queue, rate_limit_per_minute=100_000)
    with TestClient(queue) as q:
        r = q.put("/api/v1/kindergartens/bsk-12", headers=callers.admin(), json={
            "name": "№12 «Солнышко»", "district": LENINSKY, "address": "Киевская, 45", "languages": ["ru", "ky"]})
        assert r.status_code == 200, r.text
        for i, (surname, lang, category) in enumerate((("Асанова", "ru", "general"), ("Бекова", "ky", "extraordinary"),
                                                        ("Ким", "ru", "general"))):
            r = q.post("/api/v1/queue-entries", headers=callers.service("registration"), json={
                "application_id": f"a{i}", "pin": f"2150620220{i:04d}", "surname": surname, "name": "Айбек",
                "category": category, "language": lang, "preferences": ["bsk-12"], "parent_id": f"p{i}",
                "queue_date": datetime(2025, 1, 1 + i, 4, tzinfo=UTC).isoformat()})
            assert r.status_code == 201, r.text
        r = q.post("/api/v1/kindergartens/bsk-12/places", headers=callers.admin(),
                   json={"cohort": 2019, "language": "ru", "count": 1})
    return stack


@pytest.mark.parametrize("lang,title", [("ky", "Баарына ачык кезек"), ("ru", "Очередь для всех"),
                                        ("kk", "Барлығына ашық кезек"), ("en", "The queue, open to all")])
def test_the_home_page_links_the_queue_open_to_all_in_every_language(world, lang, title):
    c = world.browser(lang)
    home = c.get("/")
    assert title in home.text and 'href="/queue"' in home.text and 'href="/figures"' in home.text
    r = c.get("/queue")
    assert r.status_code == 200 and "№12 «Солнышко»" in r.text
    assert "Ленинский район" in r.text or "Ленин району" in r.text or "Leninsky district" in r.text


def test_the_list_masks_names_and_shows_the_cabinet_s_position_beside_the_number_in_its_language(world):
    r = world.browser("ru").get("/queue/bsk-12", params={"cohort": "2022", "language": "ru"})
    assert r.status_code == 200, r.text
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>", r.text)
    # the extraordinary child (Kyrgyz) is first in the cabinet; in the Russian list the number restarts
    assert [(n, p, child) for n, p, child, _ in rows] == [("1", "2", "А****** А."), ("2", "3", "К** А.")]
    assert "Асанова" not in r.text and "Ким" not in r.text
    assert "по более ранней дате постановки" in r.text and "показаны оба номера" in r.text
    assert "Ожидают 2 ребёнка." in r.text


def test_a_parent_s_cabinet_position_is_the_one_the_public_list_shows(world):
    from services.queue.api.models import PublicEntry  # noqa: F401 (the contract's field)

    r = world.browser("en").get("/queue/bsk-12", params={"cohort": "2022", "language": "ky"})
    [(number, position)] = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td>", r.text)
    assert (number, position) == ("1", "1")


def test_an_unknown_kindergarten_is_a_404_page_and_odd_input_no_5xx(world):
    c = world.browser("ky")
    assert c.get("/queue/nowhere").status_code == 404
    for params in ({"cohort": "1900", "language": "ru"}, {"cohort": "x", "language": "zz"},
                   {"cohort": "2022", "language": "ru", "page": "-1"}, {"cohort": "2022", "language": "ru", "page": "9" * 30}):
        assert c.get("/queue/bsk-12", params=params).status_code == 200
    assert c.get("/figures", params={"month": "2027-13"}).status_code == 200


@pytest.mark.parametrize("lang", ["ky", "ru", "kk", "en"])
def test_the_figures_of_the_city_and_districts_are_public_with_charts(world, lang):
    r = world.browser(lang).get("/figures")
    assert r.status_code == 200 and r.text.count("<svg") == 3 and "<script>" not in r.text
    assert re.search(r"<td>3</td>", r.text)                      # three children waiting in the district
