"""Builds the notifications service from the settings, at start-up."""
from __future__ import annotations

from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from kezek.calendar import timezone
from kezek.db import make_session_factory, service_engine
from kezek.settings import KezekSettings, Settings
from services.notifications.channels import Console, HttpSms, InAppInbox, SmtpEmail, Transport
from services.notifications.domain import DEFAULT_RETRY, URGENT_RETRY, Channel, RetryPolicy
from services.notifications.jobs import Dispatcher
from services.notifications.sealed import opening_sealed_fields
from services.notifications.service import NotificationService
from services.notifications.signature import DEFAULT_HEADER, DEFAULT_TOLERANCE, development_secret


class NotificationSettings(KezekSettings):
    """`KEZEK_NOTIFICATIONS_*`: what only this service needs."""
    model_config = SettingsConfigDict(env_prefix="KEZEK_NOTIFICATIONS_", env_file=".env", extra="ignore")

    email_from: str = "Kezek <noreply@kezek.kg>"
    sms_sender: str = "Kezek"
    sms_token: SecretStr = SecretStr("")   # the SMS provider's bearer token
    # auto: SMTP outside development, the console in it; SMS over HTTP when
    # KEZEK_SMS_GATEWAY_URL is set, the console otherwise.
    email_transport: Literal["auto", "smtp", "console"] = "auto"
    sms_transport: Literal["auto", "http", "console"] = "auto"
    # Where the parent's cabinet is (links in messages); default: KEZEK_PUBLIC_URL/cabinet.
    cabinet_url: str = ""
    # Where the SMS gateway posts receipts; default: this service's API.
    receipt_url: str = ""
    # Receipts are signed by the provider (signature.py): the shared secret
    # (required in production; elsewhere derived from KEZEK_SECRET_KEY), the
    # previous one during a rotation, the header it comes in, and how far
    # its timestamp may lie from now.
    sms_receipt_secret: SecretStr = SecretStr("")
    sms_receipt_previous_secret: SecretStr = SecretStr("")
    sms_receipt_signature_header: str = Field(DEFAULT_HEADER, pattern=r"^[A-Za-z0-9-]{1,64}$")
    sms_receipt_tolerance_seconds: int = Field(DEFAULT_TOLERANCE, ge=30, le=3600)
    # Receipts recorded at once by one API process; beyond, a receipt is
    # answered 503 with Retry-After and the provider sends it again. A
    # distribution day brings thousands a minute, a transaction each: the
    # bound keeps threads and connections for the inbox and /health.
    sms_receipts_in_hand: int = Field(8, ge=1, le=64)
    idle_sleep: float = 0.25
    # Messages a dispatcher claims for a round (an e-mail round is sent one
    # after another within one lease); the in-app inbox claims 100 whatever
    # this says, its sends being the rows already there.
    batch: int = 10
    # Sends in flight at once on a channel whose transport allows it (SMS
    # over HTTP); the batch claimed is at least this many. The dispatcher's
    # pace is its claims and records (a transaction each, for every half of
    # this that ended), not the sends: at 16 a full-size distribution day's
    # sending threads stood idle while its loop waited on the database.
    concurrency: int = 64
    lease_seconds: float = 120
    # Overrides, mostly for tests and odd deployments: the parents' time zone
    # (default: the country's), the database, the retry schedule in seconds.
    timezone: str = ""
    database_url: str = ""
    retry_delays: list[float] = []


def timezone_of(settings: Settings, extra: NotificationSettings | None = None) -> ZoneInfo:
    return ZoneInfo(extra.timezone) if extra and extra.timezone else timezone(settings.country)


def receipt_secrets(settings: Settings, extra: NotificationSettings | None = None) -> list[bytes]:
    """The secrets a receipt's signature may be made with, newest first."""
    extra = extra or NotificationSettings()
    own = extra.sms_receipt_secret.get_secret_value()
    previous = extra.sms_receipt_previous_secret.get_secret_value()
    if not own:
        if settings.env == "production":
            raise ValueError("KEZEK_NOTIFICATIONS_SMS_RECEIPT_SECRET (or _FILE) must be set in production: "
                             "the SMS provider signs its delivery receipts with it")
        return [development_secret(settings.secret_key.get_secret_value())]
    return [own.encode()] + ([previous.encode()] if previous else [])


_engines: dict[str, object] = {}


def build_service(settings: Settings, extra: NotificationSettings | None = None) -> NotificationService:
    extra = extra or NotificationSettings()
    url = extra.database_url or settings.database_url_for("notifications")
    # One engine per database per process: the API, the consumer and the
    # dispatchers share its pool.
    engine = _engines.get(url) or _engines.setdefault(url, service_engine(settings, "notifications", url=url))
    retry = RetryPolicy(tuple(timedelta(seconds=s) for s in extra.retry_delays)) if extra.retry_delays else None
    service = NotificationService(make_session_factory(engine), tz=timezone_of(settings, extra),
                                  cabinet_url=extra.cabinet_url or f"{settings.portal_url()}/cabinet",
                                  retry=retry or DEFAULT_RETRY, urgent_retry=retry or URGENT_RETRY)
    service.handle = opening_sealed_fields(service.handle, settings.secret_key.get_secret_value().encode())
    return service


def build_transports(settings: Settings, extra: NotificationSettings | None = None) -> list[Transport]:
    extra = extra or NotificationSettings()
    email_smtp = extra.email_transport == "smtp" or (extra.email_transport == "auto" and settings.env != "development")
    sms_http = extra.sms_transport == "http" or (extra.sms_transport == "auto" and bool(settings.sms_gateway_url))
    if sms_http and not settings.sms_gateway_url:
        raise ValueError("KEZEK_SMS_GATEWAY_URL must be set for the HTTP SMS transport")
    if settings.env == "production" and not (email_smtp and sms_http):
        # The console channel writes codes and links into the log.
        raise ValueError("production sends e-mail over SMTP and SMS over HTTP: set KEZEK_SMS_GATEWAY_URL "
                         "and leave KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT/SMS_TRANSPORT at auto")
    receipts = extra.receipt_url or f"{settings.url_of('notifications')}/api/v1/notifications/sms/receipts"
    return [
        SmtpEmail(settings.smtp_host, settings.smtp_port, extra.email_from) if email_smtp else Console(Channel.EMAIL),
        HttpSms(settings.sms_gateway_url, sender=extra.sms_sender, token=extra.sms_token.get_secret_value() or None,
                callback_url=receipts) if sms_http else Console(Channel.SMS),
        InAppInbox(),
    ]


def build_dispatchers(settings: Settings, extra: NotificationSettings | None = None) -> list[Dispatcher]:
    extra = extra or NotificationSettings()
    service = build_service(settings, extra)
    # Overlapping sends record their outcomes at once: PostgreSQL's business
    # (SQLite, one writer, takes them one at a time).
    postgres = service.sessions.kw["bind"].dialect.name == "postgresql"
    return [Dispatcher(service, t, idle_sleep=extra.idle_sleep, batch=extra.batch,
                       lease=timedelta(seconds=extra.lease_seconds), concurrency=extra.concurrency if postgres else 1)
            for t in build_transports(settings, extra)]
