"""The audit log's search page."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.verification import domain as d
from services.verification.api.pages import CurrentStaff, Render, Service, errors_of, requires

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
SEARCH = requires(d.Permission.AUDIT_SEARCH)
FILTERS = ("actor", "action", "subject", "date_from", "date_to")


@router.get("/audit", dependencies=[SEARCH])
def audit(render: Render, service: Service, staff: CurrentStaff):
    params = {k: render.request.query_params.get(k, "") for k in FILTERS}
    try:
        query = d.parse_audit_query(params)
    except d.Refused as exc:
        return render("audit.html", status=422, section="audit", q=params, entries=[], errors=errors_of(exc))
    return render("audit.html", section="audit", q=params, entries=service.audit.search(staff, query))
