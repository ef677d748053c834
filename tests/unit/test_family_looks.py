"""The parent's cabinet tells which offices looked at the family's data
(DOMAIN.md section 7): the looks the queue and verification recorded, newest
first, with the role and the office in the parent's language, never the
member of staff; a service that does not answer is not hidden."""
from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fakes.gateway import Stack
from tests.unit.test_gateway_portal import activate_and_login, apply

DISTRICT = "41711210000000"


def signed_in_family(tmp_path):
    stack = Stack(tmp_path, rate_limit_per_minute=100_000)
    c = TestClient(stack.gateway, base_url="https://testserver", raise_server_exceptions=False)
    c.cookies.set("kezek_lang", "ru")
    apply(c, stack, "21506202400411", "looks@example.kg")
    activate_and_login(c, stack, "looks@example.kg")
    received = stack.events("application.received.v1")[-1]
    return stack, c, received["parent_id"], received["application_id"]


def test_the_cabinet_lists_each_offices_look_at_the_familys_data_newest_first_without_names(tmp_path):
    stack, c, parent, app_id = signed_in_family(tmp_path)
    assert 'href="/cabinet/looks"' in c.get("/cabinet").text
    assert "Пока никто из сотрудников не смотрел данные вашей семьи." in c.get("/cabinet/looks").text
    stack.verification.looks[parent] = [
        {"at": "2027-03-01T05:00:00+00:00", "role": "caseworker", "office": DISTRICT, "what": "scan.view",
         "application_id": app_id, "service": "verification"}]
    stack.queue.looks[parent] = [
        {"at": "2027-03-02T05:00:00+00:00", "role": "kindergarten", "office": "kg-sun",
         "what": "kindergarten.children_viewed", "application_id": app_id, "service": "queue"}]
    page = c.get("/cabinet/looks")
    assert page.status_code == 200
    rows = page.text.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert "сотрудник детского сада" in rows[0] and "список детей детского сада" in rows[0] and "kg-sun" in rows[0]
    assert "специалист управления образования" in rows[1] and "открыл скан справки" in rows[1]
    assert "Ленинский район" in rows[1]          # the district by its name, in the reader's language
    assert len(rows) == 2
    other = TestClient(stack.gateway, base_url="https://testserver", raise_server_exceptions=False)
    assert other.get("/cabinet/looks", follow_redirects=False).status_code in (302, 303)


def test_the_list_of_looks_is_not_shown_half_when_a_service_does_not_answer(tmp_path):
    stack, c, parent, _ = signed_in_family(tmp_path)

    stack.queue.looks[parent] = [
        {"at": "2027-03-02T05:00:00+00:00", "role": "kindergarten", "office": "kg-sun",
         "what": "kindergarten.children_viewed", "service": "queue"}]
    stack.verification.failing = True
    page = c.get("/cabinet/looks")
    assert page.status_code >= 500 and "kg-sun" not in page.text
