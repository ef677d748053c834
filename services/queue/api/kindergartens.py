"""Kindergartens and their places: read by any verified caller; created and
edited by administrators and by a district office in its own district;
places published and withdrawn by an administrator, the kindergarten's
staff, or its district's officers."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kezek.trust import DISTRICT, Access
from services.queue.api import access as can
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import (Kindergarten, KindergartenIn, KgId, PlacePool, PublishIn, Published, Text,
                                       WithdrawIn)
from services.queue.domain.refusals import NotAllowed

router = APIRouter(prefix=PREFIX)


@router.get("/kindergartens", response_model=list[Kindergarten], tags=["kindergartens"])
def list_kindergartens(queue: QueueDep, access: Access = can.READ,
                       district: Annotated[Text | None, Query(max_length=100)] = None,
                       closed: Annotated[bool, Query(description="closed ones too")] = False):
    return queue.kindergartens.list(district, closed=closed)


@router.get("/kindergartens/{kindergarten}", response_model=Kindergarten, tags=["kindergartens"])
def get_kindergarten(queue: QueueDep, kindergarten: KgId, access: Access = can.READ):
    return queue.kindergartens.get(kindergarten)


@router.put("/kindergartens/{kindergarten}", response_model=Kindergarten, tags=["kindergartens"],
            summary="Create or update a kindergarten (administrators; a district office in its district)")
def put_kindergarten(queue: QueueDep, kindergarten: KgId, body: KindergartenIn, access: Access = can.MANAGE):
    if access.grant is not None and access.grant.scope == DISTRICT:
        # A district office neither creates nor moves a kindergarten outside its district.
        if body.district != access.principal.district:
            raise NotAllowed("district_not_yours", field="district")
        known = queue.kindergartens.districts({kindergarten})
        if kindergarten in known:
            access.check(district=known[kindergarten])
    return queue.kindergartens.save({"id": kindergarten, **body.model_dump()}, actor=access.principal)


@router.get("/kindergartens/{kindergarten}/places", response_model=list[PlacePool], tags=["places"])
def kindergarten_places(queue: QueueDep, kindergarten: KgId, access: Access = can.READ):
    queue.kindergartens.get(kindergarten)
    return queue.views.places(kindergarten)


@router.post("/kindergartens/{kindergarten}/places", response_model=Published, status_code=201, tags=["places"],
             summary="Publish free places (now or on a schedule, optionally reserved for a category)")
def publish_places(queue: QueueDep, kindergarten: KgId, body: PublishIn, access: Access = can.PUBLISH):
    _may_publish(queue, access, kindergarten)
    return queue.places.publish(kindergarten, body.cohort, body.language, body.count, actor=access.principal,
                                for_category=body.for_category, publish_at=body.publish_at)


@router.post("/kindergartens/{kindergarten}/places/withdrawal", response_model=PlacePool, tags=["places"],
             summary="Withdraw free places (never held ones)")
def withdraw_places(queue: QueueDep, kindergarten: KgId, body: WithdrawIn, access: Access = can.PUBLISH):
    _may_publish(queue, access, kindergarten)
    return queue.places.withdraw(kindergarten, body.cohort, body.language, body.count, actor=access.principal,
                                 for_category=body.for_category)


@router.get("/places", response_model=list[PlacePool], tags=["places"], summary="The register of places")
def places(queue: QueueDep, access: Access = can.READ,
           kindergarten: Annotated[Text | None, Query(max_length=100)] = None):
    return queue.views.places(kindergarten)


def _may_publish(queue, access: Access, kindergarten: str) -> None:
    kg = queue.kindergartens.get(kindergarten)
    can.kindergarten_in_scope(access, kindergarten, kg["district"])
