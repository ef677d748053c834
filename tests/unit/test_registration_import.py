"""Parents moved from the old portal: their children's applications recorded
for the cabinet (import_applications) without anything queued or sent, and
the activation link they ask for themselves (resend_activation)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.registration.domain import RegistrationRefused
from services.registration.service import ImportAccount, ImportApplication
from tests.unit.test_registration_service import (CHILD, CONFIRM, PARENT, PASSWORD, env, events, filled,  # noqa: F401
                                                  raw_events, rows)

QUEUE_DATE = datetime(2023, 6, 7, 8, 39, 15, tzinfo=UTC)


def imported_parent(svc, id_="balalyk-parent-p1", email="aigul@example.kg") -> str:
    [got] = svc.import_accounts([ImportAccount(id=id_, email=email, pin="20101198012345", surname="Асанова",
                                               name="Айгерим", phone="0555 123 456")])
    assert got is True
    return id_


def child_app(id_="balalyk-100001", account="balalyk-parent-p1", pin="21506202400031", **over) -> ImportApplication:
    fields = dict(id=id_, account_id=account, child_pin=pin, surname="Асанов", name="Айбек",
                  birth_date=date(2024, 6, 15), category="general", language="ru", queue_date=QUEUE_DATE,
                  preferences=("bsk-12", "bsk-7"))
    return ImportApplication(**{**fields, **over})


def test_imported_application_is_listed_for_its_parent_with_its_queue_date(env):
    svc, engine, _ = env
    parent = imported_parent(svc)
    assert svc.import_applications([child_app()]) == [True]
    [app] = svc.profile(parent)["applications"]
    assert app["id"] == "balalyk-100001" and app["status"] == "submitted"
    assert app["child"] == {"pin": "21506202400031", "surname": "Асанов", "name": "Айбек", "patronymic": None,
                            "birth_date": "2024-06-15", "sex": "male"}
    assert app["submitted_at"] == QUEUE_DATE.isoformat() and app["preferences"] == ["bsk-12", "bsk-7"]
    assert svc.owns_application(parent, "balalyk-100001")


def test_importing_applications_queues_nothing_and_only_hands_over_the_parents_contacts(env):
    svc, engine, _ = env
    imported_parent(svc)
    svc.import_applications([child_app(), child_app(id_="balalyk-100002", pin="11003202300032",
                                                    birth_date=date(2023, 3, 10))])
    got = raw_events(engine)
    # The queue has the entries already: nothing is queued twice. The
    # contacts go to notifications, marked as moved (no receipt is sent).
    assert [e["type"] for e in got] == ["application.received.v1"] * 2
    assert [e["data"]["application_id"] for e in got] == ["balalyk-100001", "balalyk-100002"]
    assert all(e["data"]["imported"] is True and e["data"]["parent_id"] == "balalyk-parent-p1"
               and e["data"]["email"] == "aigul@example.kg" and e["data"]["phone"] for e in got)


def test_importing_an_application_twice_changes_nothing(env):
    svc, engine, _ = env
    imported_parent(svc)
    assert svc.import_applications([child_app()]) == [True]
    before = rows(engine, "SELECT * FROM applications")
    assert svc.import_applications([child_app()]) == [False]
    assert rows(engine, "SELECT * FROM applications") == before


def test_dry_run_of_imported_applications_writes_nothing(env):
    svc, engine, _ = env
    assert svc.import_applications([child_app(account="balalyk-parent-p9")], dry_run=True,
                                   accounts_to_come=frozenset({"balalyk-parent-p9"})) == [True]
    assert rows(engine, "SELECT count(*) FROM applications") == [(0,)]


def codes(got) -> set[tuple[str, str]]:
    assert isinstance(got, RegistrationRefused), got
    return {(e.field, e.code) for e in got.errors}


def test_imported_application_refused_naming_the_field_others_go_on(env):
    svc, engine, _ = env
    imported_parent(svc)
    got = svc.import_applications([
        child_app(id_="a-1", pin="21506202400031", birth_date=date(2024, 6, 16)),
        child_app(id_="a-2", pin="123", name="Ай1бек"),
        child_app(id_="a-3", account="balalyk-parent-unknown", pin="11003202300032", birth_date=date(2023, 3, 10)),
        child_app(id_="a-4", pin="21506202400033"),
        child_app(id_="a-5", pin="21506202400033"),
    ])
    assert codes(got[0]) == {("child.birth_date", "birth_date_contradicts_pin")}
    assert codes(got[1]) == {("child.pin", "pin_format"), ("child.name", "name_format")}
    assert codes(got[2]) == {("parent.id", "account_unknown")}
    assert got[3] is True
    assert codes(got[4]) == {("child.pin", "child_already_registered")}, "one application per child"
    assert rows(engine, "SELECT id FROM applications") == [("a-4",)]


def test_imported_application_id_taken_by_another_child_is_refused(env):
    svc, engine, _ = env
    imported_parent(svc)
    svc.import_applications([child_app()])
    [got] = svc.import_applications([child_app(pin="11003202300032", birth_date=date(2023, 3, 10))])
    assert codes(got) == {("application.id", "application_id_taken")}


def test_imported_child_older_than_the_registration_age_limit_is_still_listed(env):
    """The queue keeps such a child with its queue date; the cabinet must show it."""
    svc, engine, _ = env
    parent = imported_parent(svc)
    assert svc.import_applications([child_app(pin="22805201994653", birth_date=date(2019, 5, 28))]) == [True]
    assert len(svc.profile(parent)["applications"]) == 1


def test_imported_child_cannot_be_registered_again_through_the_portal(env):
    svc, engine, _ = env
    imported_parent(svc)
    svc.import_applications([child_app(pin=CHILD["pin"], birth_date=date(2024, 6, 15))])
    with pytest.raises(RegistrationRefused) as exc:
        filled(svc, engine)
    assert codes(exc.value) == {("child.pin", "child_already_registered")}


# --- the activation link an imported parent asks for ----------------------------

def links(engine) -> list[str]:
    return [e["data"]["activation_url"].split("token=")[1] for e in events(engine, "account.activation_issued.v1")]


def test_imported_parent_gets_a_link_sets_a_password_and_sees_the_child(env):
    svc, engine, _ = env
    parent = imported_parent(svc)
    svc.import_applications([child_app()])
    svc.resend_activation("aigul@example.kg", "ky")
    [event] = events(engine, "account.activation_issued.v1")
    assert event["data"]["locale"] == "ky" and event["data"]["email"] == "aigul@example.kg"
    assert svc.activate(links(engine)[0], PASSWORD) == parent
    _, who = svc.login("aigul@example.kg", PASSWORD)
    assert [a["id"] for a in svc.profile(who.account_id)["applications"]] == ["balalyk-100001"]


def test_activation_link_request_answers_the_same_for_unknown_and_activated_addresses(env):
    svc, engine, _ = env
    assert svc.resend_activation("nobody@example.kg") is None
    svc.submit(filled(svc, engine), CONFIRM)
    svc.activate(links(engine)[0], PASSWORD)
    assert svc.resend_activation(PARENT["email"]) is None
    assert len(links(engine)) == 1, "no link for an account that has a password"


def test_activation_link_request_refuses_a_malformed_address_naming_the_field(env):
    svc, _, _ = env
    for raw, code in (("", "required"), ("not an address", "email_format")):
        with pytest.raises(RegistrationRefused) as exc:
            svc.resend_activation(raw)
        assert codes(exc.value) == {("email", code)}


def test_activation_links_are_sent_at_most_once_a_minute_and_five_an_hour(env):
    svc, engine, clock = env
    imported_parent(svc)
    svc.resend_activation("aigul@example.kg")
    svc.resend_activation("aigul@example.kg")
    assert len(links(engine)) == 1, "a second request within the minute sends nothing"
    for _ in range(10):
        clock.now += timedelta(minutes=1)
        svc.resend_activation("Aigul@Example.KG")
    assert len(links(engine)) == 5, "five an hour"
    clock.now += timedelta(hours=1)
    svc.resend_activation("aigul@example.kg")
    assert len(links(engine)) == 6
