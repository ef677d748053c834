"""Delivery receipts from the SMS provider. The provider has no service
token: the route is public, and a receipt counts only with the provider's
signature (signature.py): unsigned, forged, stale or replayed receipts are
refused (401) and change nothing.

A receipt is a transaction, and a provider posts one for each SMS as soon as
the handset has it: on a distribution day thousands a minute. At most
`KEZEK_NOTIFICATIONS_SMS_RECEIPTS_IN_HAND` are recorded at once by one
process; the next is answered 503 with Retry-After at once, before its
signature is checked, and the provider sends it again, as providers do. The
process keeps its threads and connections for the parents' inbox and for
its own health check."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, model_validator

from kezek.openapi import example
from kezek.problems import Unavailable
from kezek.trust import PUBLIC
from kezek.web import DomainError, Problem
from services.notifications import signature
from services.notifications.api.common import PREFIX, Service
from services.notifications.service import ReceiptReplayed

router = APIRouter(prefix=PREFIX, tags=["receipts"])


@dataclass(frozen=True)
class ReceiptKeys:
    """How this service checks receipts (runtime.receipt_secrets and the
    KEZEK_NOTIFICATIONS_SMS_RECEIPT_* settings)."""

    secrets: tuple[bytes, ...]
    header: str = signature.DEFAULT_HEADER
    tolerance: int = signature.DEFAULT_TOLERANCE


@dataclass
class InHand:
    """The receipts being recorded by this process, at most `limit`. Taken
    and given back on the event loop, so no lock is needed."""

    limit: int
    count: int = 0
    retry_after: int = 1

    def take(self) -> None:
        if self.count >= self.limit:
            raise Unavailable("receipts_busy", retry_after=self.retry_after, params={"limit": self.limit})
        self.count += 1

    def give_back(self) -> None:
        self.count -= 1


async def receipt_slot(request: Request):
    """A place among the receipts in hand, or 503 with Retry-After."""
    hand: InHand = request.app.state.receipts_in_hand
    hand.take()
    try:
        yield
    finally:
        hand.give_back()


class ReceiptRefused(Problem, status=401, code="receipt_signature_invalid",
                     title="The receipt is not signed by the SMS provider"):
    """A delivery receipt without the provider's valid signature."""


class Receipt(BaseModel):
    """A delivery receipt: `reference` is our message id, `id` the gateway's."""
    model_config = example(id="smsc-88412", reference="5b0e2c1a-7d7e-4c55-9a43-2f1c3b9d4e01", status="delivered",
                           error=None)
    id: str | None = Field(default=None, max_length=200)
    reference: str | None = Field(default=None, max_length=36)
    status: Literal["delivered", "failed", "undelivered", "rejected", "expired"]
    error: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _names_a_message(self) -> "Receipt":
        if not (self.id or self.reference):
            raise ValueError("id or reference is required")
        return self


async def signed_by_provider(request: Request) -> signature.Signed:
    """The receipt's signature, checked before its body is looked at."""
    keys: ReceiptKeys = request.app.state.receipt_keys
    try:
        return signature.verify(request.headers.get(keys.header), await request.body(), keys.secrets,
                                now=time.time(), tolerance=keys.tolerance)
    except signature.BadSignature as exc:
        raise ReceiptRefused(exc.code, field=keys.header, params={"tolerance": keys.tolerance}) from None


@router.post("/sms/receipts", status_code=204, dependencies=[PUBLIC, Depends(receipt_slot)],
             summary="Delivery receipts, signed by the SMS provider (header and scheme: see the README)",
             responses={401: {"description": "Unsigned, forged, stale or replayed"},
                        503: {"description": "Too many receipts in hand: send it again after Retry-After"}})
def sms_receipt(request: Request, service: Service, receipt: Receipt,
                signed: Annotated[signature.Signed, Depends(signed_by_provider)]):
    keys: ReceiptKeys = request.app.state.receipt_keys
    try:
        found = service.record_receipt(message_id=receipt.reference, provider_ref=receipt.id,
                                       delivered=receipt.status == "delivered", error=receipt.error or receipt.status,
                                       signed=signed, window=keys.tolerance)
    except ReceiptReplayed:
        raise ReceiptRefused("receipt_replayed", field=keys.header) from None
    if not found:
        raise DomainError("receipt_message_unknown", field="reference", status_code=404)
