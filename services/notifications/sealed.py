"""Opening the fields that registration seals for this service: the e-mail
code and the one-time activation link cross Kafka encrypted. The format is
part of the events' contract (see the schemas of
registration.email_code_issued.v1 and account.activation_issued.v1): key by
HKDF-SHA256 of KEZEK_SECRET_KEY (no salt, info INFO, 32 bytes); AES-256-GCM;
associated data `<event type>/<field>`; base64url without padding of
nonce (12 bytes) || ciphertext || tag, in `data["sealed"][<field>]`."""
from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from kezek.events import Event
from kezek.logging import get_logger

log = get_logger(__name__)
INFO = b"kezek sealed event fields v1"
NONCE_BYTES = 12


def aead_for(secret: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret))


def opened(event: Event, aead: AESGCM) -> Event:
    """The event with its sealed fields in clear; raises if any cannot be
    opened with this key (another deployment's, a rotated one, altered)."""
    sealed = event.data.get("sealed")
    if not sealed:
        return event
    data = {k: v for k, v in event.data.items() if k != "sealed"}
    for field, token in sealed.items():
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data[field] = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{event.type}/{field}".encode()).decode()
    return event.model_copy(update={"data": data})


def opening_sealed_fields(handle: Callable[[Session, Event], None], secret: bytes) -> Callable[[Session, Event], None]:
    """`handle` gets events with sealed fields opened. An event this key
    cannot open is dropped and logged: the parent can ask for a new code or
    link, and one bad message must not stall the topic."""
    aead = aead_for(secret)

    def handle_opened(session: Session, event: Event) -> None:
        try:
            event = opened(event, aead)
        except Exception as exc:
            log.error("notifications.unsealable", event_type=event.type, event_id=event.id, error=repr(exc))
            return None
        return handle(session, event)

    return handle_opened
