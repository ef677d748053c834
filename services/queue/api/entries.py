"""Queue entries: created by the registration service (or an administrator
at the console); read by the parent of the family through the gateway, or by
staff in their scope (each staff look at a child's data is audited); removed
and re-ordered by the parent; a privilege found false revoked by a
supervisor of the district."""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path

from kezek import looks
from kezek.trust import Access
from services.queue.api import access as can
from services.queue.api.deps import PREFIX, QueueDep
from kezek.contracts.family import FamilyLook
from services.queue.api.models import (AllocationRecord, EntryId, FindIn, JoinIn, Position,
                                       PreferencesIn, QueueEntry, RemoveIn, RevokeIn)
from services.queue.domain.commands import JoinQueue
from services.queue.domain.refusals import Invalid
from services.queue.usecases import Queue

router = APIRouter(prefix=PREFIX, tags=["queue"])


@router.post("/queue-entries", response_model=QueueEntry, status_code=201,
             summary="Join the queue (one entry per child PIN, whoever registers it)")
def join(queue: QueueDep, body: JoinIn, access: Access = can.JOIN):
    app_id = queue.entries.join(JoinQueue(
        pin=body.pin, surname=body.surname, name=body.name, patronymic=body.patronymic, birth_date=body.birth_date,
        category=body.category, language=body.language, preferences=tuple(body.preferences),
        parent_id=body.parent_id, locale=body.locale, application_id=body.application_id,
        queue_date=body.queue_date), actor=access.principal)
    return queue.views.application(app_id)


@router.post("/queue-entries/search", response_model=QueueEntry,
             summary="Find the entry of a child PIN (staff, saying why; the look is recorded)")
def find_entry(queue: QueueDep, body: FindIn, access: Access = can.FIND_BY_PIN):
    problems = looks.purpose_problems(body.purpose, body.note)
    if problems:
        raise Invalid(problems[0].code, field=problems[0].field, **problems[0].params)
    return _looked_at(queue, access, queue.views.application_by_pin(body.pin),
                      why=looks.search_reason(body.purpose, body.note))


@router.get("/families/{parent_id}/looks", response_model=list[FamilyLook], tags=["audit"],
            summary="Which offices looked at the family's entries (the parent, through the gateway)")
def family_looks(queue: QueueDep, parent_id: Annotated[str, Path(min_length=1, max_length=100)],
                 access: Access = can.FAMILY_LOOKS):
    access.check(family=parent_id)
    return queue.audit.family_looks(parent_id)


@router.get("/queue-entries/{application_id}", response_model=QueueEntry)
def get_entry(queue: QueueDep, application_id: EntryId, access: Access = can.ENTRY):
    return _looked_at(queue, access, queue.views.application(application_id))


@router.post("/queue-entries/{application_id}/removal", response_model=QueueEntry,
             summary="Remove from the queue at once (joining again starts a new queue date)")
def remove(queue: QueueDep, application_id: EntryId, body: RemoveIn, access: Access = can.FAMILY_ACTS):
    return _acted(queue, access, application_id,
                  lambda: queue.entries.remove(application_id, actor=access.principal, reason=body.reason))


@router.put("/queue-entries/{application_id}/preferences", response_model=QueueEntry)
def set_preferences(queue: QueueDep, application_id: EntryId, body: PreferencesIn, access: Access = can.FAMILY_ACTS):
    return _acted(queue, access, application_id,
                  lambda: queue.entries.set_preferences(application_id, body.preferences, actor=access.principal))


@router.post("/queue-entries/{application_id}/privilege-revocation", response_model=QueueEntry,
             summary="A privilege found false: back to the general queue with the queue date (supervisors)")
def revoke(queue: QueueDep, application_id: EntryId, body: RevokeIn, access: Access = can.REVOKE):
    return _acted(queue, access, application_id,
                  lambda: queue.entries.revoke_privilege(application_id, actor=access.principal, reason=body.reason))


@router.get("/queue-entries/{application_id}/positions", response_model=list[Position],
            summary="The position for each preference, and why")
def positions(queue: QueueDep, application_id: EntryId, access: Access = can.ENTRY):
    _looked_at(queue, access, queue.views.application(application_id))
    return [Position(kindergarten=p.kindergarten, cohort=p.cohort, position=p.position, ahead=p.ahead,
                     ahead_by_category=p.ahead_by_category, ahead_same_category_earlier=p.ahead_same_category_earlier,
                     ahead_same_moment=p.ahead_same_moment, category=p.category, queue_date=p.queue_date,
                     explanation=p.text()) for p in queue.views.positions(application_id)]


@router.get("/queue-entries/{application_id}/allocations", response_model=list[AllocationRecord], tags=["audit"],
            summary="Each referral the child got, with the inputs that decided it")
def allocations(queue: QueueDep, application_id: EntryId, access: Access = can.ENTRY):
    _looked_at(queue, access, queue.views.application(application_id))
    return queue.audit.allocation_records(application_id)


def _acted(queue: Queue, access: Access, application_id: str, act: Callable[[], None]) -> dict:
    """The act on an entry in the caller's scope, then the entry as it stands."""
    _in_scope(queue, access, queue.views.application(application_id))
    act()
    return queue.views.application(application_id)


def _in_scope(queue: Queue, access: Access, entry: dict) -> dict:
    kgs = set(entry["preferences"]) | ({entry["referral"]["kindergarten"]} if entry.get("referral") else set())
    can.entry_in_scope(access, entry, queue.kindergartens.districts(kgs))
    return entry


def _looked_at(queue: Queue, access: Access, entry: dict, why: str | None = None) -> dict:
    """The entry, if the caller may see it; a member of staff's look is
    recorded in the audit trail with why (DOMAIN.md section 7): a search's
    purpose, or the entry lying in the office's own scope."""
    _in_scope(queue, access, entry)
    if access.principal.role in can.STAFF_LOOKS:
        queue.audit.look(access.principal, "application.viewed", f"application:{entry['id']}",
                         why=why or looks.work("entry"))
    return entry
