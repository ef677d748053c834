"""What a signed-in parent sees and does here: only their own account's data
(the family of the verified principal), never another's."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kezek.contracts.family import RegistrationCopy
from kezek.contracts.registration import Profile
from kezek.trust import Access, OutOfScope, allow
from services.registration.api.deps import FAMILY, By, Svc

router = APIRouter(prefix="/api/v1/me", tags=["cabinet"])
Parent = Annotated[Access, allow(FAMILY)]


@router.get("", summary="The parent's account and applications", response_model=Profile,
            response_model_exclude_unset=True)
def me(access: Parent, svc: Svc, _by: By):
    return svc.profile(access.principal.family)


@router.get("/copy", summary="Everything registration holds about the parent's own account, for the family's copy",
            response_model=RegistrationCopy, response_model_exclude_unset=True)
def family_copy(access: Parent, svc: Svc, _by: By):
    return svc.family_copy(access.principal.family)


@router.post("/applications/{application_id}/removed", status_code=204,
             summary="The child left the queue at the parent's request: its PIN is free again")
def removed(application_id: Annotated[str, Path(max_length=100)], access: Parent, svc: Svc, by: By):
    owner = svc.owner_of(application_id)
    if owner is None:
        raise OutOfScope(field="application")
    access.check(family=owner)
    svc.mark_removed(application_id, by=by)
    return Response(status_code=204)
