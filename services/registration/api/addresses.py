"""The address registry, for the forms of step 2 (the gateway as itself)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kezek.contracts.registration import Place, RegionTree
from kezek.trust import allow
from services.registration.api.deps import GATEWAY, By, Svc

router = APIRouter(prefix="/api/v1/address", tags=["address"], dependencies=[allow(GATEWAY)])
Code = Annotated[str, Path(max_length=50)]


@router.get("/regions", response_model=list[Place], response_model_exclude_unset=True)
def regions(svc: Svc, _by: By):
    return [p.as_dict() for p in svc.registry.regions()]


@router.get("/tree", summary="Regions, districts, settlements and known streets, for forms without scripts",
            response_model=list[RegionTree], response_model_exclude_unset=True)
def tree(svc: Svc, _by: By):
    reg = svc.registry
    return [{**r.as_dict(), "districts": [{**d_.as_dict(), "settlements": [
        {**s.as_dict(), "streets": [st.as_dict() for st in reg.streets(s.code)]}
        for s in reg.settlements(d_.code)]} for d_ in reg.districts(r.code)]} for r in reg.regions()]


@router.get("/regions/{region}/districts", response_model=list[Place], response_model_exclude_unset=True)
def districts(region: Code, svc: Svc, _by: By):
    return [p.as_dict() for p in svc.registry.districts(region)]


@router.get("/districts/{district}/settlements", response_model=list[Place], response_model_exclude_unset=True)
def settlements(district: Code, svc: Svc, _by: By):
    return [p.as_dict() for p in svc.registry.settlements(district)]


@router.get("/settlements/{settlement}/streets", response_model=list[Place], response_model_exclude_unset=True)
def streets(settlement: Code, svc: Svc, _by: By, q: Annotated[str, Query(max_length=100)] = ""):
    return [p.as_dict() for p in svc.registry.streets(settlement, q)]
