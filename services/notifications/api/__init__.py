"""HTTP API of the notifications service, internal: the gateway calls it as
the parent it signed in (the cabinet's inbox), operators through the staff
pages or the command line (messages, dead letters, audit, retries), and the
SMS provider posts signed delivery receipts. Every route declares who may
use it (kezek/trust.py); one router per audience:

- inbox.py      parent (own family)
- operator.py   staff: operator, admin
- receipts.py   public, signed by the SMS provider
"""
from __future__ import annotations

from fastapi import FastAPI

from kezek.settings import Settings
from kezek.trust import ServiceKeys, service_token_authenticator
from kezek.web import create_service_app, database_check
from services.notifications.api import inbox, operator, receipts
from services.notifications.api.receipts import InHand, ReceiptKeys
from services.notifications.service import NotificationService

ROUTERS = (inbox.router, operator.router, receipts.router)


def create_app(settings: Settings, service: NotificationService | None = None, extra=None) -> FastAPI:
    from services.notifications.runtime import NotificationSettings, build_service, receipt_secrets

    extra = extra or NotificationSettings()
    service = service or build_service(settings, extra)
    engine = service.sessions.kw["bind"]
    app = create_service_app("notifications", ready_checks=[("database", database_check(engine))],
                             max_body_bytes=settings.max_body_bytes,
                             authenticate=service_token_authenticator(ServiceKeys.from_settings(settings),
                                                                      "notifications"))
    app.state.notifications = service
    app.state.receipt_keys = ReceiptKeys(tuple(receipt_secrets(settings, extra)),
                                         extra.sms_receipt_signature_header, extra.sms_receipt_tolerance_seconds)
    app.state.receipts_in_hand = InHand(extra.sms_receipts_in_hand)
    for router in ROUTERS:
        app.include_router(router)
    return app
