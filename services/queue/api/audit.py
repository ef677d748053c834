"""The audit trail, the allocation runs and their replay: administrators,
operators and supervisors."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kezek.trust import Access
from services.queue.api import access as can
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import AuditRecord, EntryId, Id, Replay, Run, Text
from services.queue.domain.refusals import NotFound

router = APIRouter(prefix=PREFIX, tags=["audit"])


@router.get("/audit", response_model=list[AuditRecord],
            summary="The audit trail: every state change and staff look, with the verified actor")
def audit(queue: QueueDep, access: Access = can.AUDIT,
          subject: Annotated[Text | None, Query(max_length=200)] = None,
          after_id: Annotated[Id, Query()] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    return queue.audit.trail(subject, limit=limit, after_id=after_id)


@router.get("/queue-entries/{application_id}/audit", response_model=list[AuditRecord])
def entry_audit(queue: QueueDep, application_id: EntryId, access: Access = can.AUDIT,
                limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    queue.views.application(application_id)
    return queue.audit.trail(f"application:{application_id}", limit=limit)


@router.get("/allocation-runs", response_model=list[Run], summary="Allocation runs, newest first")
def runs(queue: QueueDep, access: Access = can.AUDIT, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    return queue.audit.runs(limit)


@router.get("/allocation-runs/{run_id}/replay", response_model=Replay,
            summary="Recompute a run from its recorded inputs and compare")
def replay(queue: QueueDep, run_id: Annotated[int, Path(ge=1, le=2**62)], access: Access = can.AUDIT):
    reports = queue.audit.replay([run_id])
    if not reports:
        raise NotFound("run_unknown", field="run_id", run_id=run_id)
    return reports[0]
