"""District offices: their districts, closing a kindergarten, and the
publication schedule (publications are created with the places routes)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kezek.trust import Access
from services.queue.api import access as can
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import CloseIn, District, KgId, Kindergarten, Scheduled, Text

router = APIRouter(prefix=PREFIX)
PublicationId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/districts", response_model=list[District], tags=["kindergartens"],
            summary="The districts of the register of kindergartens, with how many are open")
def districts(queue: QueueDep, access: Access = can.READ):
    return queue.figures.districts()


@router.post("/kindergartens/{kindergarten}/closure", response_model=Kindergarten, tags=["kindergartens"],
             summary="Close an empty kindergarten (no held or taken places): its free places are withdrawn, "
                     "its scheduled publications called off, and it leaves the children's preferences")
def close(queue: QueueDep, kindergarten: KgId, body: CloseIn, access: Access = can.MANAGE):
    kg = queue.kindergartens.get(kindergarten)
    can.kindergarten_in_scope(access, kindergarten, kg["district"])
    return queue.kindergartens.close(kindergarten, actor=access.principal, reason=body.reason)


@router.get("/places/scheduled", response_model=list[Scheduled], tags=["places"],
            summary="Publications waiting for their moment, in the schedule's order (by moment, then the older "
                    "birth year and the higher-ranked category first)")
def scheduled(queue: QueueDep, access: Access = can.READ,
              district: Annotated[Text | None, Query(max_length=100)] = None,
              kindergarten: Annotated[Text | None, Query(max_length=100)] = None):
    return queue.views.scheduled_publications(district, kindergarten)


@router.get("/publications/{publication}", response_model=Scheduled, tags=["places"])
def publication(queue: QueueDep, publication: PublicationId, access: Access = can.READ):
    return queue.places.publication(publication)


@router.post("/publications/{publication}/cancellation", response_model=Scheduled, tags=["places"],
             summary="Call off a publication still waiting for its moment")
def cancel(queue: QueueDep, publication: PublicationId, access: Access = can.PUBLISH):
    found = queue.places.publication(publication)
    kg = queue.kindergartens.get(found["kindergarten"])
    can.kindergarten_in_scope(access, found["kindergarten"], kg["district"])
    return queue.places.cancel(publication, actor=access.principal)
