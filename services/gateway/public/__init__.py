"""The public event stream (kezek.public.v1), its contract and webhooks.

`router` is the APIRouter the gateway includes; `services.gateway.jobs`
runs the projector, the public relay and the webhook dispatcher."""

from services.gateway.public.api import router

__all__ = ["router"]
