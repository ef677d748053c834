"""Abuse flags and their resolution: revoke a privilege found false, or dismiss."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from services.verification import domain as d
from services.verification.api.pages import CheckedForm, CurrentStaff, Render, Service, errors_of, requires

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
P = d.Permission
VIEW = requires(P.ABUSE_VIEW)
RESOLVE = requires(P.ABUSE_RESOLVE)
STATUSES = ("open", "revoked", "dismissed", "")


@router.get("/abuse", dependencies=[VIEW])
def abuse_list(render: Render, service: Service, staff: CurrentStaff, status: str = "open"):
    status = status if status in STATUSES else "open"
    return render("abuse_list.html", section="abuse", cases=service.abuse.cases(staff, status), shown=status)


def abuse_page(render: Render, service: Service, staff, case_id: str, *, status: int = 200,
               result: str | None = None, outcome: dict | None = None, **ctx) -> HTMLResponse:
    ctx.setdefault("form", {"reason": ""})
    return render("abuse_case.html", status=status, section="abuse", case=service.abuse.case(staff, case_id),
                  result=result or render.request.query_params.get("result"), outcome=outcome, **ctx)


@router.get("/abuse/{case_id}", dependencies=[VIEW])
def abuse_case(render: Render, service: Service, staff: CurrentStaff, case_id: str):
    return abuse_page(render, service, staff, case_id)


@router.post("/abuse/{case_id}/resolve", dependencies=[RESOLVE])
async def resolve_abuse(render: Render, service: Service, staff: CurrentStaff, case_id: str, form: CheckedForm):
    reason = str(form.get("reason") or "")
    try:
        if form.get("resolution") == "revoke":
            outcome = await service.abuse.revoke(staff, case_id, reason)
            if outcome["refusal"]:
                return abuse_page(render, service, staff, case_id, result="revoked", outcome=outcome)
            return RedirectResponse(f"/abuse/{case_id}?result=revoked", status_code=303)
        service.abuse.dismiss(staff, case_id, reason)
    except d.Refused as exc:
        return abuse_page(render, service, staff, case_id, status=422, errors=errors_of(exc), form={"reason": reason})
    return RedirectResponse(f"/abuse/{case_id}?result=dismissed", status_code=303)
