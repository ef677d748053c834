"""The family's own: everything the queue holds about one of its
applications (for the copy a parent downloads from the cabinet), and its
request to erase a closed application (usecases/family.py). Only the
parent of the family, through the gateway; another family's is "not
found"."""
from __future__ import annotations

from fastapi import APIRouter

from kezek.trust import Access, OutOfScope, allow, parent
from services.queue.api.deps import PREFIX, QueueDep
from kezek.contracts.family import Erasure, QueueCopy
from services.queue.api.models import EntryId
from services.queue.usecases import Queue

router = APIRouter(prefix=PREFIX, tags=["family"])
FAMILY_ONLY = allow(parent())


def _own(queue: Queue, access: Access, application_id: str) -> None:
    owner = queue.family.owner(application_id)
    if owner is None:
        raise OutOfScope(field="application_id")
    access.check(family=owner)


@router.get("/queue-entries/{application_id}/family-copy",
            summary="Everything the queue holds about the family's application: entry, referrals, positions, "
                    "allocations, its history of acts, retention",
            response_model=QueueCopy, response_model_exclude_unset=True)
def family_copy(queue: QueueDep, application_id: EntryId, access: Access = FAMILY_ONLY):
    _own(queue, access, application_id)
    return queue.family.copy(application_id)


@router.post("/queue-entries/{application_id}/erasure", response_model=Erasure,
             summary="The family asks to erase a closed application: granted (every service anonymises its data "
                     "now) or refused with the legal reason (409)")
def erasure(queue: QueueDep, application_id: EntryId, access: Access = FAMILY_ONLY):
    _own(queue, access, application_id)
    return queue.family.erase(application_id, actor=access.principal)
