"""Settings of the public stream and the webhooks: the shared settings plus
what only they need (each `KEZEK_<NAME>` in the environment)."""
from __future__ import annotations

from kezek.settings import Settings

PUBLIC_TOPIC_SUFFIX = "public.v1"


class PublicSettings(Settings):
    """The shared settings plus the public stream's and the webhooks'."""

    webhook_max_attempts: int = 12          # then the delivery is dead and blocks its subject
    webhook_backoff_seconds: float = 2.0    # first retry; doubles each time
    webhook_backoff_max_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 8
    # Where subscribers fetch a public event's JSON Schema: the envelope's
    # dataschema is <this>/<type>.json. Empty: <public URL>/api/v1/public/schemas
    event_schema_url: str = ""

    @property
    def event_schema_base(self) -> str:
        return (self.event_schema_url or f"{self.portal_url()}/api/v1/public/schemas").rstrip("/")

    @property
    def public_topic(self) -> str:
        return self.topic(PUBLIC_TOPIC_SUFFIX)


def public_settings(settings: Settings | None) -> PublicSettings:
    if isinstance(settings, PublicSettings):
        return settings
    if settings is None:
        return PublicSettings()
    known = set(PublicSettings.model_fields)
    return PublicSettings(**{k: v for k, v in settings.model_dump().items() if k in known})
