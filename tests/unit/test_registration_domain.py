"""The registration rules of DOMAIN.md section 2."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kezek import pin
from services.registration import domain as d
from services.registration import limits as lim

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = b"test-key"


def codes(exc: pytest.ExceptionInfo) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in exc.value.errors]


# --- personal numbers (the rules: kezek/pin.py, tests/unit/test_pin.py) --------

def make_iin(first11: str) -> str:
    return first11 + str(pin.iin_check_digit(first11))


def test_pin_as_typed_gives_birth_date_and_sex():
    boy = d.parse_personal_number("2 0101 2023 00042", "KG", TODAY)
    assert boy.birth_date == date(2023, 1, 1) and boy.sex == "male" and boy.number == "20101202300042"


@pytest.mark.parametrize("raw,country,code", [
    ("", "KG", "required"), ("1150620240001", "KG", "pin_format"), ("31506202400011", "KG", "pin_sex_digit"),
    ("12411202600011", "KG", "pin_future_date"), ("1234567890", "KZ", "pin_format"),
    ("950101301233", "KZ", "iin_check_digit"),
])
def test_a_refused_pin_names_its_field(raw, country, code):
    with pytest.raises(d.RegistrationRefused) as exc:
        d.parse_personal_number(raw, country, TODAY, "parent.pin")
    assert codes(exc) == [("parent.pin", code)]


def test_a_refused_pin_says_how_many_digits():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.parse_personal_number("1234567890", "KZ", TODAY)
    assert exc.value.errors[0].as_dict()["params"] == {"length": "12"}


# --- phones and e-mail ----------------------------------------------------------

@pytest.mark.parametrize("raw,e164", [
    ("+996 555 123 456", "+996555123456"), ("996555123456", "+996555123456"),
    ("0555 12-34-56", "+996555123456"), ("+7 (701) 123-45-67", "+77011234567"),
    ("87011234567", "+77011234567"), ("00996 555 123456", "+996555123456"), ("8 (747) 123 45 67", "+77471234567"),
])
def test_phone_accepts_kyrgyz_and_kazakh_numbers(raw, e164):
    assert d.normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["+99655512345", "+9965551234567", "+79161234567", "+1 202 555 0100", "phone",
                                 "+996 312 123456"])
def test_phone_outside_plus996_and_plus7_mobiles_refused(raw):
    with pytest.raises(d.RegistrationRefused) as exc:
        d.normalize_phone(raw)
    assert codes(exc) == [("phone", "phone_format")]


def test_email_domain_is_lowercased_and_bad_address_refused():
    assert d.normalize_email(" Aida@Mail.KG ") == "Aida@mail.kg"
    with pytest.raises(d.RegistrationRefused) as exc:
        d.normalize_email("aida@")
    assert codes(exc) == [("email", "email_format")]


# --- the e-mail code ------------------------------------------------------------

def issued(code="123456", at=NOW, previous=None):
    return d.issue_code(previous, "a@b.kg", d.hash_code(code, "a@b.kg", KEY), at)


def test_code_is_six_digits():
    assert all(len(c) == 6 and c.isdigit() for c in (d.new_code() for _ in range(100)))


def test_code_is_stored_hashed_with_a_key():
    state = issued()
    assert "123456" not in state.code_hash
    assert state.code_hash != d.hash_code("123456", "a@b.kg", b"other-key")


def test_right_code_verifies_the_email():
    state = d.check_code(issued(), d.hash_code("123456", "a@b.kg", KEY), "123456", NOW + timedelta(minutes=9))
    assert state.verified_at is not None


def test_code_expires_after_10_minutes():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.check_code(issued(), d.hash_code("123456", "a@b.kg", KEY), "123456", NOW + timedelta(minutes=10))
    assert codes(exc) == [("code", "code_expired")]


def test_code_allows_5_attempts_then_refuses_even_the_right_one():
    state = issued()
    for i in range(5):
        with pytest.raises(d.CodeAttemptFailed) as exc:
            d.check_code(state, d.hash_code("000000", "a@b.kg", KEY), "000000", NOW)
        state = exc.value.state
        assert state.attempts == i + 1
    assert codes(exc) == [("code", "code_too_many_attempts")]
    with pytest.raises(d.RegistrationRefused) as exc2:
        d.check_code(state, d.hash_code("123456", "a@b.kg", KEY), "123456", NOW)
    assert codes(exc2) == [("code", "code_too_many_attempts")]


def test_code_resend_throttled_for_a_minute():
    first = issued()
    with pytest.raises(d.RegistrationRefused) as exc:
        issued("654321", NOW + timedelta(seconds=30), first)
    assert codes(exc) == [("email", "code_resend_too_soon")]
    second = issued("654321", NOW + timedelta(seconds=61), first)
    assert second.attempts == 0 and len(second.sends) == 2


def test_code_resend_limited_to_5_an_hour():
    state = None
    for i in range(5):
        state = issued(at=NOW + timedelta(minutes=2 * i), previous=state)
    with pytest.raises(d.RegistrationRefused) as exc:
        issued(at=NOW + timedelta(minutes=12), previous=state)
    assert codes(exc) == [("email", "code_too_many_sends")]
    assert issued(at=NOW + timedelta(minutes=61), previous=state).sends


def test_code_must_be_six_digits_when_entered():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.check_code(issued(), "", "12ab", NOW)
    assert codes(exc) == [("code", "code_format")]


# --- the three steps ------------------------------------------------------------

CHILD = {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек", "patronymic": ""}
PARENT = {
    "role": "mother", "surname": "Асанова", "name": "Айгүл", "patronymic": "Бакытовна",
    "pin": "11203199000123", "document_type": "id_card", "document_number": "ID1234567",
    "document_issued_on": "2020-05-01",
    "address": {"region": "41711", "district": "41711211", "settlement": "41711000000",
                "street": "chui", "house": "12А", "flat": "5"},
    "phone": "+996 555 123 456", "email": "aigul@example.kg",
}


def test_child_step_takes_birth_date_from_pin():
    step = d.validate_child(CHILD, "KG", TODAY)
    assert step.birth_date == date(2024, 6, 15) and step.patronymic is None and step.sex == "male"


def test_child_birth_date_cannot_contradict_pin():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.validate_child({**CHILD, "birth_date": "2024-06-16"}, "KG", TODAY)
    assert codes(exc) == [("child.birth_date", "birth_date_contradicts_pin")]


def test_child_step_reports_every_bad_field_at_once():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.validate_child({"pin": "123", "surname": "", "name": "A1"}, "KG", TODAY)
    assert codes(exc) == [("child.pin", "pin_format"), ("child.surname", "required"), ("child.name", "name_format")]


def test_child_of_school_age_refused():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.validate_child({**CHILD, "pin": "20101201800011"}, "KG", TODAY)
    assert codes(exc) == [("child.pin", "child_too_old")]


def test_kz_child_birth_date_may_correct_the_iin_hint():
    iin = make_iin("23051550002")
    step = d.validate_child({**CHILD, "pin": iin, "birth_date": "2023-05-16"}, "KZ", TODAY)
    assert step.birth_date == date(2023, 5, 16)


def test_parent_step_normalises_contacts_and_document():
    step = d.validate_parent({**PARENT, "document_number": "id 1234567"}, "KG", TODAY)
    assert step.phone == "+996555123456" and step.document_number == "ID1234567"
    assert step.address.house == "12А"


def test_parent_step_names_each_bad_field():
    bad = {**PARENT, "role": "uncle", "pin": "31203199000123", "document_number": "X1",
           "document_issued_on": "2030-01-01", "phone": "12345", "email": "x",
           "address": {**PARENT["address"], "street": ""}}
    with pytest.raises(d.RegistrationRefused) as exc:
        d.validate_parent(bad, "KG", TODAY)
    assert {f for f, _ in codes(exc)} == {
        "parent.role", "parent.pin", "parent.document_number", "parent.document_issued_on",
        "parent.phone", "parent.email", "address.street"}


def test_parent_pin_cannot_be_the_child_pin():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.validate_parent({**PARENT, "pin": CHILD["pin"]}, "KG", TODAY, child_pin=CHILD["pin"])
    assert ("parent.pin", "parent_pin_is_child_pin") in codes(exc)


def test_confirmation_needs_category_preferences_and_agreement():
    with pytest.raises(d.RegistrationRefused) as exc:
        d.validate_confirmation({"category": "vip", "language": "ru", "preferences": ["a", "a"]})
    assert codes(exc) == [("category", "choice"), ("preferences", "duplicate_preference"),
                          ("agreement", "agreement_required")]
    ok = d.validate_confirmation({"category": "general", "language": "ky", "preferences": ["a", "b"],
                                  "agreement": "on"})
    assert ok.preferences == ("a", "b")


def test_the_voucher_programme_uses_the_same_flow_with_its_own_category():
    voucher = d.validate_confirmation({"category": "voucher", "language": "ru", "preferences": ["a"],
                                       "agreement": True})
    assert voucher.category == "voucher"


def test_draft_opens_steps_in_order_and_needs_the_verified_email():
    draft = d.Draft()
    assert draft.next_step() == "child" and not draft.may_open("parent")
    draft.child = CHILD
    draft.parent = PARENT
    assert draft.next_step() == "contacts"
    draft.email_verified = "other@example.kg"
    assert draft.next_step() == "contacts"
    draft.email_verified = PARENT["email"]
    assert draft.next_step() == "confirm" and draft.may_open("child")


# --- accounts ---------------------------------------------------------------------

def test_short_or_trivial_password_refused():
    for pw, code in (("short", "password_too_short"), ("aaaaaaaaaaaa", "password_too_weak")):
        with pytest.raises(d.RegistrationRefused) as exc:
            d.check_new_password(pw, "aigul@example.kg")
        assert codes(exc) == [("password", code)]
    d.check_new_password("correct horse battery", "aigul@example.kg")


# --- abuse limits (services/registration/limits.py) ---------------------------------

def test_a_guessers_waits_double_after_the_free_attempts_up_to_fifteen_minutes():
    assert [lim.wait_after(n, 3).total_seconds() for n in range(1, 8)] == [0, 0, 0, 2, 4, 8, 16]
    assert lim.wait_after(40, 3) == lim.LONGEST_WAIT


def test_wrong_passwords_of_others_never_slow_the_owners_usual_client():
    many = lim.Failures(50, NOW)          # from many clients: a distributed guesser
    counts = lim.SignInCounts(login=many)
    assert lim.sign_in_wait(counts, NOW, usual_client=True) == timedelta(0)
    assert lim.sign_in_wait(counts, NOW, usual_client=False) == lim.LONGEST_WAIT


def test_a_free_attempt_is_heard_even_when_a_parallel_one_was_counted_after_it_began():
    # the parallel attempt, begun a moment later, was counted first
    counts = lim.SignInCounts(login_and_client=lim.Failures(2, NOW + timedelta(milliseconds=5)))
    assert lim.sign_in_wait(counts, NOW, usual_client=False) == timedelta(0)
    counts = lim.SignInCounts(login_and_client=lim.Failures(3, NOW + timedelta(milliseconds=5)))
    assert lim.sign_in_wait(counts, NOW, usual_client=False) == timedelta(0)
    counts = lim.SignInCounts(login_and_client=lim.Failures(4, NOW + timedelta(milliseconds=5)))
    assert lim.sign_in_wait(counts, NOW, usual_client=False) > timedelta(seconds=2)


def test_wrong_passwords_are_forgotten_after_a_day():
    counts = lim.SignInCounts(login_and_client=lim.Failures(9, NOW))
    assert lim.sign_in_wait(counts, NOW + timedelta(minutes=1), usual_client=True) > timedelta(0)
    assert lim.sign_in_wait(counts, NOW + timedelta(days=1), usual_client=True) == timedelta(0)
    assert lim.Failures(9, NOW).one_more(NOW + timedelta(days=1)) == lim.Failures(1, NOW + timedelta(days=1))


def test_the_owner_is_told_when_guesses_start_to_be_slowed_at_most_once_a_day():
    assert not lim.notice_due(lim.Failures(2, NOW), None, NOW)
    assert lim.notice_due(lim.Failures(3, NOW), None, NOW)
    assert not lim.notice_due(lim.Failures(9, NOW), NOW - timedelta(hours=23), NOW)
    assert lim.notice_due(lim.Failures(9, NOW), NOW - timedelta(days=1), NOW)


def test_codes_to_one_address_are_limited_whatever_the_draft():
    limits = lim.Limits(codes_per_address_per_hour=5, codes_per_client_per_hour=30)
    assert lim.code_send_refusal([], [], NOW, limits) is None
    too_soon = lim.code_send_refusal([NOW - timedelta(seconds=10)], [], NOW, limits)
    assert (too_soon.field, too_soon.code, dict(too_soon.params)) == (
        "parent.email", "code_resend_too_soon", {"seconds": "51"})
    five = [NOW - timedelta(minutes=10 * i + 2) for i in range(5)]
    assert lim.code_send_refusal(five, five, NOW, limits).code == "code_too_many_sends"
    assert lim.code_send_refusal(five[:4], five[:4], NOW, limits) is None


def test_codes_from_one_client_are_limited_whatever_the_address():
    limits = lim.Limits(codes_per_address_per_hour=5, codes_per_client_per_hour=30)
    thirty = [NOW - timedelta(minutes=1 + i) for i in range(30)]
    refusal = lim.code_send_refusal([], thirty, NOW, limits)
    assert refusal.code == "code_too_many_sends" and int(dict(refusal.params)["seconds"]) <= 60 * 31
    assert lim.code_send_refusal([], thirty[:29], NOW, limits) is None
