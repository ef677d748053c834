"""The audit log's search page."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.verification import domain as d
from services.verification.api.pages import CurrentStaff, Render, Service, errors_of
from services.verification.usecases.context import Forbidden

router = APIRouter(include_in_schema=False)
FILTERS = ("actor", "action", "subject", "date_from", "date_to")


@router.get("/audit", response_class=HTMLResponse)
def audit(render: Render, service: Service, staff: CurrentStaff):
    params = {k: render.request.query_params.get(k, "") for k in FILTERS}
    try:
        query = d.parse_audit_query(params)
    except d.Refused as exc:
        if not staff.can(d.Permission.AUDIT_SEARCH):
            raise Forbidden("audit.search") from None
        return render("audit.html", status=422, section="audit", q=params, entries=[], errors=errors_of(exc))
    return render("audit.html", section="audit", q=params, entries=service.audit.search(staff, query))
