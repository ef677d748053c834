"""A kindergarten's referrals and children, for its staff and its district
office (each look at a child's data is audited), and the child leaving."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kezek import looks
from kezek.trust import Access
from services.queue.api import access as can
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import EntryId, KgId, LeaveIn, QueueEntry, StaffReferral
from services.queue.usecases import Queue

router = APIRouter(prefix=PREFIX, tags=["kindergarten staff"])
ReferralId = Annotated[int, Path(ge=1, le=2**62)]


def _in_scope(queue: Queue, access: Access, kindergarten: str) -> None:
    kg = queue.kindergartens.get(kindergarten)
    can.kindergarten_in_scope(access, kindergarten, kg["district"])


@router.get("/kindergartens/{kindergarten}/referrals", response_model=list[StaffReferral],
            summary="Referrals to the kindergarten: live ones by the nearest deadline, or those ended lately")
def referrals(queue: QueueDep, kindergarten: KgId, access: Access = can.PLACEMENTS,
              status: Annotated[str, Query(pattern="^(live|ended)$")] = "live"):
    _in_scope(queue, access, kindergarten)
    found = queue.placements.referrals(kindergarten, live=status == "live")
    # A look at each child listed (the kindergarten's own work), so that every
    # child's and family's list of looks holds it (DOMAIN.md section 7).
    queue.audit.looks(access.principal, "kindergarten.referrals_viewed",
                      [f"application:{r['application_id']}" for r in found], why=looks.work("kindergarten"))
    return found


@router.get("/kindergartens/{kindergarten}/referrals/{referral_id}", response_model=StaffReferral)
def referral(queue: QueueDep, kindergarten: KgId, referral_id: ReferralId, access: Access = can.PLACEMENTS):
    _in_scope(queue, access, kindergarten)
    found = queue.placements.referral(kindergarten, referral_id)
    queue.audit.look(access.principal, "referral.viewed", f"application:{found['application_id']}",
                     why=looks.work("kindergarten"))
    return found


@router.get("/kindergartens/{kindergarten}/children", response_model=list[StaffReferral],
            summary="Children enrolled in the kindergarten, then those who left it lately")
def children(queue: QueueDep, kindergarten: KgId, access: Access = can.PLACEMENTS):
    _in_scope(queue, access, kindergarten)
    found = queue.placements.children(kindergarten)
    queue.audit.looks(access.principal, "kindergarten.children_viewed",
                      [f"application:{r['application_id']}" for r in found], why=looks.work("kindergarten"))
    return found


@router.post("/kindergartens/{kindergarten}/children/{application_id}/leaving", response_model=QueueEntry,
             summary="An enrolled child left: the place is free at once and the allocation runs")
def leave(queue: QueueDep, kindergarten: KgId, application_id: EntryId, body: LeaveIn,
          access: Access = can.PLACEMENTS):
    _in_scope(queue, access, kindergarten)
    return queue.leaving.leave(application_id, actor=access.principal, kindergarten=kindergarten,
                               reason=body.reason)
