"""Secrets on their way through the notifications service: codes and
one-time links arrive sealed, are opened only here, and are not kept once
the message is sent or given up."""
from __future__ import annotations

import base64
import os
from datetime import timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from test_notifications_service import (  # noqa: F401  (fixtures)
    Scripted, clock, dispatch, ev, messages, migrated_db, service,
)

from kezek.db import unit_of_work
from services.notifications.domain import REDACTED, Channel, Outcome
from services.notifications.sealed import aead_for, opening_sealed_fields

SECRET = b"a deployment's secret key"


def seal(event_type: str, field: str, value: str, secret: bytes = SECRET) -> str:
    """The sealing side of the contract, as the event schemas describe it."""
    nonce = os.urandom(12)
    aead: AESGCM = aead_for(secret)
    raw = nonce + aead.encrypt(nonce, value.encode(), f"{event_type}/{field}".encode())
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def code_event(clock, sealed_code: str):
    return ev("registration.email_code_issued.v1", {
        "email": "n@example.kg", "locale": "ru", "sealed": {"code": sealed_code},
        "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}, subject="draft-1")


def handle(service, event):
    with unit_of_work(service.sessions) as s:
        opening_sealed_fields(service.handle, SECRET)(s, event)


def test_a_sealed_code_is_opened_and_mailed(service, clock):
    handle(service, code_event(clock, seal("registration.email_code_issued.v1", "code", "482913")))
    [m] = messages(service)
    assert "482913" in m.subject and "482913" in m.body


def test_a_code_sealed_with_another_key_or_for_another_field_makes_no_message(service, clock):
    handle(service, code_event(clock, seal("registration.email_code_issued.v1", "code", "111111", b"other key")))
    handle(service, code_event(clock, seal("account.activation_issued.v1", "code", "222222")))
    assert messages(service) == []


def test_a_code_is_not_kept_once_sent(service, clock):
    handle(service, code_event(clock, seal("registration.email_code_issued.v1", "code", "482913")))
    email = Scripted(Channel.EMAIL)
    dispatch(service, email)
    assert "482913" in email.sent[0].body
    [m] = messages(service)
    assert m.status == "sent" and (m.subject, m.body) == (REDACTED, REDACTED)


def test_a_code_is_not_kept_once_given_up(service, clock):
    handle(service, code_event(clock, seal("registration.email_code_issued.v1", "code", "482913")))
    dispatch(service, Scripted(Channel.EMAIL, Outcome.PERMANENT))
    [m] = messages(service)
    assert m.status == "failed" and "482913" not in (m.subject + m.body)


def test_an_activation_link_is_not_kept_once_sent(service, clock):
    handle(service, ev("account.activation_issued.v1", {
        "parent_id": "p1", "email": "p1@example.kg", "locale": "kk",
        "sealed": {"activation_url": seal("account.activation_issued.v1", "activation_url",
                                          "https://kezek.kg/activate?token=abc")},
        "expires_at": (clock.now + timedelta(days=2)).isoformat()}))
    email = Scripted(Channel.EMAIL)
    dispatch(service, email)
    assert "https://kezek.kg/activate?token=abc" in email.sent[0].body
    assert "token=abc" not in messages(service)[0].body
