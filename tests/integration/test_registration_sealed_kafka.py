"""The e-mail code and the activation link cross Kafka sealed: the raw
messages on the internal topics do not contain them, and the notifications
service, holding the same secret key, still mails them."""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from kafka import KafkaConsumer
from pydantic import SecretStr

from kezek.db import make_engine, make_session_factory
from kezek.events import Event
from kezek.infra.kafka import ensure_topics
from kezek.migrations import upgrade
from kezek.relay import OutboxRelay, wait_until_relayed
from kezek.settings import Settings
from services.notifications.models import Message
from services.notifications.runtime import NotificationSettings, build_service
from services.registration.address import ReferenceAddressRegistry
from services.registration.models import outbox
from services.registration.service import RegistrationService

pytestmark = pytest.mark.integration

EMAIL = "sealed@example.kg"


def raw_messages(bootstrap: str, topics: list[str], count: int) -> list[bytes]:
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=f"peek-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=20_000)
    out: list[bytes] = []
    try:
        for record in consumer:
            out.append(record.value)
            if len(out) >= count:
                break
    finally:
        consumer.close()
    return out


def test_raw_kafka_messages_carry_neither_the_code_nor_the_link(kafka_bootstrap, tmp_path):
    prefix = f"s{uuid.uuid4().hex[:8]}"
    settings = Settings(state_dir=tmp_path, env="test", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=prefix,
                        secret_key=SecretStr("a deployment's own secret key"))
    ensure_topics(kafka_bootstrap, [settings.topic("registration"), settings.topic("account"),
                                    settings.topic("application")])
    upgrade("registration", settings.database_url_for("registration"))
    engine = make_engine(settings.database_url_for("registration"))
    sessions = make_session_factory(engine)
    svc = RegistrationService(sessions, ReferenceAddressRegistry(),
                              code_key=settings.secret_key.get_secret_value().encode(),
                              public_url="https://kezek.example.kg",
                              hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    token = svc.start_draft("ru")
    svc.save_child(token, {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"})
    svc.save_parent(token, {
        "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
        "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
        "address": {"region": "41711000000000", "district": "41711210000000", "settlement": "41711000000001",
                    "street": "Киевская", "house": "12"}, "phone": "+996555123456", "email": EMAIL})
    svc.request_code(token)

    # The notifications service's side: its own database, the same secret key.
    upgrade("notifications", settings.database_url_for("notifications"))
    notifications = build_service(settings, NotificationSettings(email_transport="console"))

    relay = OutboxRelay(sessions, outbox, kafka_bootstrap, prefix)
    wait_until_relayed(relay)
    [raw_code_event] = raw_messages(kafka_bootstrap, [settings.topic("registration")], 1)
    with notifications.sessions() as s, s.begin():
        notifications.handle(s, Event.from_json(raw_code_event))
    with notifications.sessions() as s:
        mail = s.scalars(sa.select(Message).where(Message.kind == "email_code")).one()
    code = next(w.strip(".,:") for w in mail.body.split() if w.strip(".,:").isdigit() and len(w.strip(".,:")) == 6)
    svc.verify_code(token, code)     # the code the parent was mailed is the one registration issued
    svc.submit(token, {"category": "general", "language": "ru", "preferences": ["k1"], "agreement": True})
    wait_until_relayed(relay)
    relay.close()
    [raw_link_event] = raw_messages(kafka_bootstrap, [settings.topic("account")], 1)
    with notifications.sessions() as s, s.begin():
        notifications.handle(s, Event.from_json(raw_link_event))
    with notifications.sessions() as s:
        link_mail = s.scalars(sa.select(Message).where(Message.kind == "account_activation")).one()
    activation_token = link_mail.body.split("token=", 1)[1].split()[0]
    assert svc.check_activation(activation_token) == EMAIL

    assert code.encode() not in raw_code_event
    data = json.loads(raw_code_event)["data"]
    assert "code" not in data and data["sealed"]["code"] and data["email"] == EMAIL
    assert activation_token.encode() not in raw_link_event and b"/activate" not in raw_link_event
    engine.dispose()
