"""A Kazakh deployment (KEZEK_COUNTRY=KZ) takes a family in Kazakh: the
address registry knows Astana and Almaty (their districts by KATO code and
real streets, in Kazakh and Russian), the forms ask for the IIN, a +7 phone
and a Kazakh identity card, and the application goes through to the
cabinet. District names are known to every service (kezek/territories.py)."""
from __future__ import annotations

import re

import pytest

from kezek import territories
from services.registration.address import ReferenceAddressRegistry, street_key
from services.registration.domain import Address
from tests.fakes.gateway import Stack
from tests.unit.test_gateway_portal import PASSWORD, csrf, errors

CHILD_IIN = "230514510001"        # born 14.05.2023, a boy (century digit 5)
PARENT_IIN = "880712310004"       # born 12.07.1988
ALMATY, BOSTANDYK = "750000000", "751410000"
FAMILY = {
    "role": "mother", "surname": "Сейітқызы", "name": "Әйгерім", "pin": PARENT_IIN,
    "document_type": "id_card", "document_number": "012345678", "document_issued_on": "2019-03-01",
    "address.region": ALMATY, "address.district": BOSTANDYK, "address.settlement": ALMATY,
    "address.street": "Сәтбаев көшесі", "address.house": "22", "phone": "8 701 123 45 67",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("kz"), country="KZ", rate_limit_per_minute=100_000)


def test_the_registry_knows_astana_and_almaty_in_kazakh_and_russian():
    registry = ReferenceAddressRegistry(country="KZ")
    regions = {r.code: r for r in registry.regions()}
    assert set(regions) == {"710000000", ALMATY}
    assert regions["710000000"].name("kk") == "Астана қаласы" and regions[ALMATY].name("ru") == "город Алматы"
    assert len(registry.districts("710000000")) == 6 and len(registry.districts(ALMATY)) == 8
    for city in ("710000000", ALMATY):
        streets = registry.streets(city)
        assert len(streets) >= 25 and all(s.names.get("kk") and s.names.get("ru") for s in streets)
    found = registry.resolve(Address(ALMATY, BOSTANDYK, ALMATY, "проспект Аль-Фараби", "77"))
    assert found.street.name("kk") == "Әл-Фараби даңғылы"
    assert street_key("Абай даңғылы") == street_key("Абай") == street_key("пр. Абай")


def test_every_service_can_name_a_district_in_the_readers_language():
    assert territories.district_name(BOSTANDYK, "kk") == "Бостандық ауданы"
    assert territories.district_name(BOSTANDYK, "ru") == "Бостандыкский район"
    assert territories.district_name("41711210000000", "ky") == "Ленин району"
    assert territories.district_name("no-such", "kk") == "no-such"


def test_a_family_registers_in_kazakh_with_an_iin_and_an_almaty_address(stack):
    c = stack.browser("kk")
    r = c.get("/apply", follow_redirects=True)
    assert "Баланың жеке сәйкестендіру нөмірі (ЖСН)" in r.text and "12 цифр" in r.text
    token = csrf(r.text)
    r = c.post("/apply/child", data={"csrf": token, "pin": CHILD_IIN, "surname": "Сейітов", "name": "Нұрсұлтан"})
    assert r.url.path == "/apply/parent", errors(r.text)
    assert "Бостандық ауданы" in r.text and "Сәтбаев көшесі" in r.text and "Астана қаласы" in r.text
    r = c.post("/apply/parent", data={"csrf": token, **FAMILY, "email": "aigerim@example.kz"})
    assert r.url.path == "/apply/contacts", errors(r.text)
    assert "+77011234567" in r.text
    c.post("/apply/contacts", data={"csrf": token, "action": "send"})
    r = c.post("/apply/contacts", data={"csrf": token, "action": "verify",
                                        "code": stack.last_code("aigerim@example.kz")})
    assert r.url.path == "/apply/confirm"
    assert "ЖСН" in r.text and "Алматы қаласы, Бостандық ауданы, Алматы, Сәтбаев көшесі, 22" in r.text
    r = c.post("/apply/confirm", data={"csrf": token, "category": "general", "language": "kk",
                                       "preference1": "bsk-12", "agreement": "on"})
    assert r.url.path == "/apply/done", errors(r.text)
    stack.queue.feed_from_outbox(stack.registration.state.engine)
    submitted = stack.events("application.submitted.v1")[-1]
    assert submitted["child_pin"] == CHILD_IIN and submitted["child_birth_date"] == "2023-05-14"
    activation = stack.last_activation_token("aigerim@example.kz")
    r = c.post("/activate", data={"token": activation, "email": "aigerim@example.kz", "password": PASSWORD,
                                  "password2": PASSWORD})
    r = c.post("/login", data={"login": "aigerim@example.kz", "password": PASSWORD})
    assert r.url.path == "/cabinet" and "Нұрсұлтан" in r.text


def test_a_kyrgyz_document_number_is_refused_in_kazakhstan_in_kazakh(stack):
    c = stack.browser("kk")
    token = csrf(c.get("/apply", follow_redirects=True).text)
    c.post("/apply/child", data={"csrf": token, "pin": "220901610008", "surname": "Сейітова", "name": "Аружан"})
    r = c.post("/apply/parent", data={"csrf": token, **FAMILY, "document_number": "ID1234567",
                                      "email": "second@example.kz"})
    assert r.status_code == 422
    assert ("f-parent-document_number", "Құжат нөмірі: жеке куәліктің нөмірі 9 цифрдан тұрады, мысалы 012345678.") \
        in [(f, re.sub(r"\s+", " ", t)) for f, t in errors(r.text)]
