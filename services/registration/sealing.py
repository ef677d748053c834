"""Secrets sealed for their one reader. The e-mail code and the activation
link must reach the notifications service through Kafka, where operators,
the public projector and any future subscriber can read the internal
topics; so they travel encrypted, and only a holder of the deployment's
secret key can open them.

The format is part of the events' contract (see the schemas of
registration.email_code_issued.v1 and account.activation_issued.v1):

- key: HKDF-SHA256 of `KEZEK_SECRET_KEY`, no salt, info `INFO`, 32 bytes;
- AES-256-GCM with a random 12-byte nonce; associated data
  `<event type>/<field>`, so a sealed value cannot be moved to another
  field or event type;
- the value: base64url without padding of nonce || ciphertext || tag, in
  `data["sealed"][<field>]`; the clear field is left out.
"""
from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO = b"kezek sealed event fields v1"
NONCE_BYTES = 12


class Unsealable(ValueError):
    """Not sealed with this key (another deployment's, a rotated one) or altered."""


def derive_key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    def __init__(self, secret: bytes):
        self._aead = AESGCM(derive_key(secret))

    def seal(self, event_type: str, field: str, value: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        return _b64(nonce + self._aead.encrypt(nonce, value.encode(), f"{event_type}/{field}".encode()))

    def open(self, event_type: str, field: str, token: str) -> str:
        try:
            raw = _unb64(token)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{event_type}/{field}".encode()).decode()
        except Exception as exc:  # InvalidTag, bad base64, short input
            raise Unsealable(f"{event_type}: {field} cannot be opened with this key") from exc

    def sealed(self, event_type: str, data: dict, *fields: str) -> dict:
        """`data` with `fields` moved, encrypted, under "sealed"."""
        out = {k: v for k, v in data.items() if k not in fields}
        out["sealed"] = {f: self.seal(event_type, f, data[f]) for f in fields}
        return out

    def opened(self, event_type: str, data: dict) -> dict:
        """`data` with its sealed fields back in clear (the reader's side)."""
        sealed = data.get("sealed") or {}
        out = {k: v for k, v in data.items() if k != "sealed"}
        out.update({f: self.open(event_type, f, token) for f, token in sealed.items()})
        return out
