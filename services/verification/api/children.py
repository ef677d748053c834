"""Finding a child by PIN (with why), who looked at a child's data
(supervisors and administrators). Which offices looked at a family's data
is family.py's (the gateway asks it for the parent)."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from kezek import looks
from services.verification import domain as d
from services.verification.api.pages import CheckedForm, CurrentStaff, Render, Service, errors_of, requires

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
SEARCH = requires(d.Permission.CHILD_SEARCH)
LOOKS = requires(d.Permission.LOOKS_VIEW)
FIELDS = ("pin", "purpose", "note")


def _page(render: Render, *, status: int = 200, form: dict | None = None, errors: list | None = None,
          result: dict | None = None):
    return render("children.html", status=status, section="children", purposes=looks.PURPOSES,
                  form={k: "" for k in FIELDS} | (form or {}), errors=errors or [], result=result)


@router.get("/children", dependencies=[SEARCH])
def search_form(render: Render, staff: CurrentStaff):
    return _page(render)


@router.post("/children", dependencies=[SEARCH])
def search(render: Render, service: Service, staff: CurrentStaff, form: CheckedForm):
    values = {k: str(form.get(k) or "") for k in FIELDS}
    try:
        result = service.children.search(staff, values["pin"], values["purpose"], values["note"])
    except d.Refused as exc:
        return _page(render, status=422, form=values, errors=errors_of(exc))
    return _page(render, form=values, result=result)


@router.get("/children/{application_id}/looks", dependencies=[LOOKS])
async def child_looks(render: Render, service: Service, staff: CurrentStaff, application_id: str):
    return render("child_looks.html", section="children", v=await service.children.looks(staff, application_id))
