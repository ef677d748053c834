"""The anonymised public queue and the published figures: anyone, without
sign-in (DOMAIN.md sections 3 and 7); no personal data."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kezek.trust import PUBLIC
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import NO_CONTROL, Figures, KgId, Overview, PublicQueue

router = APIRouter(prefix=PREFIX, tags=["public"])


@router.get("/public/queues/{kindergarten}/{cohort}/{language}", response_model=PublicQueue, dependencies=[PUBLIC],
            summary="The anonymised queue of a kindergarten, cohort and language")
def public_queue(queue: QueueDep, kindergarten: KgId, cohort: Annotated[int, Path(ge=1990, le=2200)],
                 language: Annotated[str, Path(pattern=r"^[a-z]{2,5}$")],
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    return queue.views.public_queue(kindergarten, cohort, language, limit=limit, offset=offset)


Month = Annotated[str | None, Query(pattern=r"^(19[7-9]|2[01]\d)\d-(0[1-9]|1[0-2])$",
                                    description="YYYY-MM (1970-01 to 2199-12); this month if omitted")]


@router.get("/public/figures", response_model=Overview, dependencies=[PUBLIC],
            summary="The figures of the country and of each district for a month")
def figures(queue: QueueDep, month: Month = None):
    return queue.figures.overview(month)


@router.get("/public/figures/{district}", response_model=Figures, dependencies=[PUBLIC],
            summary="The figures of one district for a month")
def district_figures(queue: QueueDep, district: Annotated[str, Path(min_length=1, max_length=100, pattern=NO_CONTROL)],
                     month: Month = None):
    return queue.figures.of(district, month)
