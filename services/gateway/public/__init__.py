"""The public event stream (kezek.public.v1), its contract and webhooks.

`router` is the APIRouter the gateway includes (the contract, open to
anyone; the webhooks administration, for an administrator);
`services.gateway.jobs` runs the projector, the public relay and the
webhook dispatcher."""
from fastapi import APIRouter

from services.gateway.public.api import admin_router, contract_router

router = APIRouter()
router.include_router(contract_router)
router.include_router(admin_router)

__all__ = ["router"]
