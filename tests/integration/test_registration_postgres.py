"""Registration on real PostgreSQL: the migrations, and two parents
submitting the same child at the same moment (the database decides: one
application, one event, the other parent told why)."""
from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from kezek.db import make_engine, make_session_factory
from kezek.migrations import upgrade
from services.registration.address import ReferenceAddressRegistry
from services.registration.domain import RegistrationRefused
from services.registration.service import RegistrationService

pytestmark = pytest.mark.integration

CHILD = {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"}
PARENT = {
    "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
    "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
    "address": {"region": "41711000000000", "district": "41711210000000", "settlement": "41711000000001",
                "street": "Киевская", "house": "12"},
    "phone": "+996555123456",
}
CONFIRM = {"category": "general", "language": "ru", "preferences": ["bsk-12"], "agreement": True}


@pytest.fixture
def svc(pg_url):
    url = pg_url("registration")
    upgrade("registration", url)
    engine = make_engine(url)
    yield RegistrationService(make_session_factory(engine), ReferenceAddressRegistry(), code_key=b"k",
                              hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)), engine
    engine.dispose()


def ready_draft(svc: RegistrationService, engine, email: str) -> str:
    token = svc.start_draft("ru")
    svc.save_child(token, CHILD)
    svc.save_parent(token, {**PARENT, "email": email})
    svc.request_code(token)
    with engine.connect() as c:
        code = [svc.sealer.open("registration.email_code_issued.v1", "code", json.loads(p)["data"]["sealed"]["code"])
                for (p,) in c.execute(sa.text(
                    "SELECT payload FROM outbox WHERE type = 'registration.email_code_issued.v1' ORDER BY seq"))
                if json.loads(p)["data"]["email"] == email][-1]
    svc.verify_code(token, code)
    return token


def test_migrations_run_on_postgres_and_keep_the_partial_unique_index(svc):
    _, engine = svc
    with engine.connect() as c:
        index = c.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ux_applications_live_child_pin'"
                                  )).scalar_one()
    assert "UNIQUE" in index and "removed" in index


def test_two_parents_submitting_one_child_at_once_get_one_application(svc):
    service, engine = svc
    drafts = [ready_draft(service, engine, f"parent{i}@example.kg") for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(token: str) -> None:
        barrier.wait()
        try:
            service.submit(token, CONFIRM)
            outcomes.append("accepted")
        except RegistrationRefused as exc:
            outcomes.append(exc.errors[0].code)

    threads = [threading.Thread(target=submit, args=(t,)) for t in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["accepted", "child_already_registered"]
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM applications")).scalar_one() == 1
        assert c.execute(sa.text("SELECT count(*) FROM outbox WHERE type = 'application.submitted.v1'")).scalar_one() == 1
        # The refused parent's account was not left half-made either.
        assert c.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one() == 1


def test_a_removed_child_may_be_registered_again(svc):
    service, engine = svc
    first = service.submit(ready_draft(service, engine, "first@example.kg"), CONFIRM)
    service.mark_removed(first.application_id)
    again = service.submit(ready_draft(service, engine, "again@example.kg"), CONFIRM)
    assert again.application_id != first.application_id
