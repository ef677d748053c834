"""The internal routes of the staff pages' service, asked by the gateway for
the parent it signed in (a service token with `parent:<account>`): the
family's own copy of what verification holds (usecases/family.py) and which
offices looked at its data (usecases/children.py); another family's is
simply nothing of theirs."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from kezek import trust
from kezek.contracts.family import FamilyLook, VerificationCopy
from services.verification.api.pages import Service

router = APIRouter(prefix="/api/v1", tags=["family"])
ParentId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]


@router.get("/families/{parent_id}/copy", summary="What verification holds about the parent's applications",
            response_model=VerificationCopy, response_model_exclude_unset=True)
def family_copy(service: Service, parent_id: ParentId, access: trust.Access = trust.allow(trust.parent())):
    access.check(family=parent_id)
    return service.family.copy(parent_id)


@router.get("/families/{parent_id}/looks", summary="Which offices looked at the family's data",
            response_model=list[FamilyLook])
def family_looks(service: Service, parent_id: ParentId, access: trust.Access = trust.allow(trust.parent())):
    """When, the role and the office of each staff look at the family's
    applications, referrals, abuse cases and voucher applications; never who."""
    access.check(family=parent_id)
    return service.children.family_looks(parent_id)
