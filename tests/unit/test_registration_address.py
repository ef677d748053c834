"""The address registry adapter and its reference data."""
from __future__ import annotations

import pytest

from services.registration.address import ReferenceAddressRegistry, street_key
from services.registration.domain import Address, RegistrationRefused

BISHKEK = "41711000000000"
LENINSKY = "41711210000000"
BISHKEK_CITY = "41711000000001"
OSH_CITY = "41721000000000"


@pytest.fixture(scope="module")
def registry():
    return ReferenceAddressRegistry()


def test_reference_data_lists_all_nine_first_level_units(registry):
    names = {p.names["ru"] for p in registry.regions()}
    assert len(names) == 9
    assert {"город Бишкек", "город Ош", "Чуйская область", "Баткенская область"} <= names
    assert all(len(p.code) == 14 and p.code.startswith("417") for p in registry.regions())


def test_every_district_code_sits_inside_its_region_code(registry):
    for region in registry.regions():
        districts = registry.districts(region.code)
        assert districts
        assert all(d.code[:5] == region.code[:5] for d in districts)


def test_bishkek_and_osh_have_sample_streets_with_coordinates(registry):
    assert len(registry.streets(BISHKEK_CITY)) >= 20
    assert registry.streets("41721000000001")
    assert all(s.lat and s.lon for s in registry.streets(BISHKEK_CITY))


def test_street_found_by_any_official_name_without_street_words(registry):
    for given in ("улица Киевская", "Киевская", "Киев көчөсү", "kievskaya street", "S-BSK-0006"):
        resolved = registry.resolve(Address(BISHKEK, LENINSKY, BISHKEK_CITY, given, "1"))
        assert resolved.street.code == "S-BSK-0006"


def test_unknown_street_refused_with_check_the_official_name_advice(registry):
    with pytest.raises(RegistrationRefused) as exc:
        registry.resolve(Address(BISHKEK, LENINSKY, BISHKEK_CITY, "проспект Мира", "1"))
    assert [(e.field, e.code) for e in exc.value.errors] == [("address.street", "address_unknown_street")]


def test_district_must_belong_to_the_region(registry):
    with pytest.raises(RegistrationRefused) as exc:
        registry.resolve(Address(OSH_CITY, LENINSKY, BISHKEK_CITY, "Киевская", "1"))
    assert exc.value.errors[0].field == "address.district"


def test_settlement_must_belong_to_the_district(registry):
    with pytest.raises(RegistrationRefused) as exc:
        registry.resolve(Address(BISHKEK, LENINSKY, "41721000000001", "Ленина", "1"))
    assert exc.value.errors[0].field == "address.settlement"


def test_street_search_matches_part_of_a_name(registry):
    assert [s.code for s in registry.streets(BISHKEK_CITY, "токтог")] == ["S-BSK-0007"]


def test_street_key_ignores_word_order_and_street_words():
    assert street_key("ул. Льва Толстого") == street_key("Льва Толстого улица")
