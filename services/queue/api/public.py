"""The anonymised public queue: anyone, without sign-in (DOMAIN.md section 3)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kezek.trust import PUBLIC
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import KgId, PublicQueue

router = APIRouter(prefix=PREFIX, tags=["public"])


@router.get("/public/queues/{kindergarten}/{cohort}/{language}", response_model=PublicQueue, dependencies=[PUBLIC],
            summary="The anonymised queue of a kindergarten, cohort and language")
def public_queue(queue: QueueDep, kindergarten: KgId, cohort: Annotated[int, Path(ge=1990, le=2200)],
                 language: Annotated[str, Path(pattern=r"^[a-z]{2,5}$")],
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    return queue.views.public_queue(kindergarten, cohort, language, limit=limit, offset=offset)
