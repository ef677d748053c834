"""Phones and e-mail addresses by phonenumbers and email-validator (kezek/contacts.py)."""
from __future__ import annotations

import socket

import pytest

from kezek.contacts import ContactError, email_address, phone_e164


@pytest.mark.parametrize(("raw", "e164"), [
    ("+996 555 123 456", "+996555123456"),
    ("996555123456", "+996555123456"),
    ("0555 12-34-56", "+996555123456"),
    ("00996 555 123456", "+996555123456"),       # the international prefix, not "+"
    ("555 123 456", "+996555123456"),            # the national number alone
    ("+996 (700) 123-456", "+996700123456"),
    ("+996 220 123 456", "+996220123456"),
    ("+7 (701) 123-45-67", "+77011234567"),
    ("8 701 123 45 67", "+77011234567"),
    ("8 (747) 123.45.67", "+77471234567"),
    ("701 123 4567", "+77011234567"),
    ("8 10 996 555 123456", "+996555123456"),    # Kazakhstan's international prefix
])
def test_a_kyrgyz_or_kazakh_mobile_is_accepted_in_the_forms_people_write_it_and_kept_in_e164(raw, e164):
    assert phone_e164(raw) == e164


@pytest.mark.parametrize("raw", [
    "+996 312 123456",          # a Bishkek landline: no SMS reaches it
    "+7 727 212 3456",          # an Almaty landline
    "+7 916 123 4567",          # +7 9XX is Russia, not Kazakhstan
    "+1 202 555 0100",
    "+99655512345", "+9965551234567",
    "+996 555 123 456 ext. 12",
    "+996 555 FLOWERS",         # letters are not read as digits
    "phone",
    "+996 555 123 456" + "-" * 30,      # over 40 characters
])
def test_landlines_other_countries_wrong_lengths_extensions_and_letters_are_refused(raw):
    with pytest.raises(ContactError) as exc:
        phone_e164(raw)
    assert exc.value.code == "phone_format"


def test_a_country_list_narrows_what_is_accepted():
    with pytest.raises(ContactError):
        phone_e164("+77011234567", countries=("KG",))
    assert phone_e164("0555123456", countries=("KG",)) == "+996555123456"


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_an_empty_contact_is_required_not_malformed(raw):
    for check in (phone_e164, email_address):
        with pytest.raises(ContactError) as exc:
            check(raw)
        assert exc.value.code == "required"


@pytest.mark.parametrize(("raw", "kept"), [
    (" Aida@Mail.KG ", "Aida@mail.kg"),
    ("user+tag@gmail.com", "user+tag@gmail.com"),
    ("parent@мвд.рф", "parent@xn--b1aew.xn--p1ai"),     # an internationalised domain, written as IDNA
])
def test_an_address_keeps_its_local_part_and_writes_its_domain_in_lower_case_ascii(raw, kept):
    assert email_address(raw) == kept


@pytest.mark.parametrize("raw", [
    "aida@", "parent.example.kg", "a..b@mail.kg", "x@mail.kg.", "x@localhost", "x@kezek.local",
    "x@kezek.test", "x@[127.0.0.1]", "ä@mail.kg", '"quoted"@mail.kg', "x" * 250 + "@mail.kg",
])
def test_a_malformed_or_undeliverable_by_design_address_is_refused(raw):
    with pytest.raises(ContactError) as exc:
        email_address(raw)
    assert exc.value.code == "email_format"


def test_an_address_is_checked_without_reaching_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("e-mail checking looked something up on the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "socket", no_network)
    assert email_address("parent@no-such-domain-for-kezek.kg") == "parent@no-such-domain-for-kezek.kg"
