"""The gateway's background loops (`kezek consume` runs them): the public
stream's projector and relay, and the webhook dispatcher (ingest from
kezek.public.v1, signed deliveries with retries)."""
from __future__ import annotations

from kezek.settings import Settings


def build_jobs(settings: Settings) -> list:
    from kezek.retention import daily_loop
    from services.gateway.public.runtime import PublicRuntime
    from services.gateway.retention import build_retention

    rt = PublicRuntime(settings)
    return [rt.projector_loop, rt.public_relay_loop, rt.webhook_ingest_loop, rt.webhook_delivery_loop,
            daily_loop(build_retention(settings))]
