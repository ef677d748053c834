"""Registration hears the queue over a real Kafka broker: an application
removed there frees its child's PIN here, once, whatever the redelivery."""
from __future__ import annotations

import json
import threading
import uuid

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from kezek.db import make_engine, make_session_factory
from kezek.events import new_event
from kezek.infra.kafka import ensure_topics
from kezek.infra.procs import wait_until
from kezek.migrations import upgrade
from kezek.outbox import payloads
from kezek.relay import make_producer
from services.registration.address import ReferenceAddressRegistry
from services.registration.consumers import make_consumer
from services.registration.service import RegistrationService

pytestmark = pytest.mark.integration


def test_removed_in_the_queue_frees_the_pin_exactly_once(kafka_bootstrap, tmp_path):
    prefix = f"r{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [f"{prefix}.application"])
    url = f"sqlite:///{tmp_path / 'registration.db'}"
    upgrade("registration", url)
    engine = make_engine(url)
    svc = RegistrationService(make_session_factory(engine), ReferenceAddressRegistry(), code_key=b"k",
                              hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    token = svc.start_draft()
    svc.save_child(token, {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"})
    svc.save_parent(token, {
        "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
        "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
        "address": {"region": "41711000000000", "district": "41711210000000", "settlement": "41711000000001",
                    "street": "Киевская", "house": "12"}, "phone": "+996555123456", "email": "a@example.kg"})
    svc.request_code(token)
    sealed = json.loads(payloads(engine)[-1])["data"]["sealed"]
    code = svc.sealer.open("registration.email_code_issued.v1", "code", sealed["code"])
    svc.verify_code(token, code)
    done = svc.submit(token, {"category": "general", "language": "ru", "preferences": ["k1"], "agreement": True})

    event = new_event("application.removed.v1", done.application_id,
                      {"application_id": done.application_id, "parent_id": done.account_id}, source="queue")
    producer = make_producer(kafka_bootstrap)
    for _ in range(2):   # delivered twice: one effect
        producer.send(f"{prefix}.application", key=event.subject, value=event.to_json())
    producer.flush(10)
    producer.close()

    consumer = make_consumer(svc, kafka_bootstrap, prefix)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    worker.start()
    try:
        wait_until(lambda: svc.profile(done.account_id)["applications"][0]["status"] == "removed", 60,
                   "the removal to arrive")
        with engine.connect() as c:
            wait_until(lambda: c.execute(sa.text("SELECT count(*) FROM processed_events")).scalar_one() == 1, 10,
                       "the event id to be recorded")
    finally:
        stop.set()
        worker.join(timeout=15)
    assert svc.start_draft() and svc.save_child(svc.start_draft(), {"pin": "21506202400011", "surname": "Асанов",
                                                                     "name": "Айбек"})["next_step"] == "parent"
