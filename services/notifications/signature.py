"""The signature of an SMS delivery receipt (stdlib only).

The SMS provider has no service token: it proves a receipt is its own with
an HMAC-SHA256 of the body under a secret shared with us, over the time it
signed, in one header (its name is a setting):

    X-Kezek-Signature: t=1767225600,v1=5f0c...e9    (hex, 64 digits)
    v1 = HMAC-SHA256(secret, f"{t}." + raw body bytes)

A receipt is taken only when a `v1` matches (compared in constant time; a
header may carry several during a rotation of the secret), when `t` lies
within `tolerance` seconds of now (an old receipt replayed later is stale),
and when its signature was not taken before (the service remembers each
one for the window: `ReceiptSignature`).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

SCHEME = "v1"
DEFAULT_HEADER = "X-Kezek-Signature"
DEFAULT_TOLERANCE = 300
_MAX_HEADER = 1000


class BadSignature(ValueError):
    """Why a receipt's signature does not hold; `code` is a refusal code."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Signed:
    """A signature that holds: when it was made and its digest (the key
    that makes a replay recognisable)."""

    at: int
    digest: str


def mac(secret: bytes, at: int, body: bytes) -> str:
    return hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, at: int) -> str:
    """The header value the provider sends with `body`."""
    return f"t={at},{SCHEME}={mac(secret, at, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    at: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            at = int(value)
        elif name == SCHEME and len(value) == 64:
            digests.append(value.lower())
    if at is None or not digests:
        raise BadSignature("receipt_signature_malformed")
    return at, digests


def verify(header: str | None, body: bytes, secrets: Iterable[bytes], *, now: float,
           tolerance: int = DEFAULT_TOLERANCE) -> Signed:
    """The signature if it holds for `body` under one of `secrets`; raises
    BadSignature (unsigned, malformed, forged, stale) otherwise."""
    if not header:
        raise BadSignature("receipt_unsigned")
    if len(header) > _MAX_HEADER:
        raise BadSignature("receipt_signature_malformed")
    at, given = _parse(header)
    for secret in secrets:
        want = mac(secret, at, body)
        # Every candidate is compared, in constant time: no early exit tells
        # a forger how far a guess got.
        matched = [g for g in given if hmac.compare_digest(g, want)]
        if matched:
            if abs(now - at) > tolerance:
                raise BadSignature("receipt_stale")
            return Signed(at, want)
    raise BadSignature("receipt_signature_invalid")


def development_secret(secret_key: str) -> bytes:
    """The shared secret outside production when none is set: derived from
    the secret key, so the service and the development SMS gateway agree
    without a file. Production sets its own (runtime.receipt_secrets)."""
    return hmac.new(secret_key.encode(), b"kezek-sms-receipts", hashlib.sha256).hexdigest().encode()
