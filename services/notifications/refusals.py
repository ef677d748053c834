"""The notifications service's refusals: codes with parameters (English
text for API clients; see kezek/refusals.py)."""
from __future__ import annotations

from kezek import refusals

MESSAGES = refusals.catalogue("notifications", {
    # Another family's message is not found either: nothing is disclosed.
    "message_not_found": "no such message",
    "receipt_message_unknown": "no message with this id or reference",
    "receipt_unsigned": "the receipt carries no signature",
    "receipt_signature_malformed": "the receipt's signature header is malformed",
    "receipt_signature_invalid": "the receipt's signature does not match its body",
    "receipt_stale": "the receipt was signed more than {tolerance} seconds from now",
    "receipt_replayed": "this signed receipt was taken already",
    "receipts_busy": "{limit} receipts are being recorded; send this one again after Retry-After",
    "retry_not_failed": "only a failed message can be sent again; this one is {status}",
    "retry_expired": "the message expired at {expires_at}; sending it now would mislead",
    "retry_secret_gone": "a code or a one-time link is removed once its message fails; it cannot be sent again",
})
