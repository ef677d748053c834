"""The voucher commission's pages: the list, one application, the decision
and its printable record."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.verification import domain as d
from services.verification.api.pages import CheckedForm, CurrentStaff, Render, Service, acted, requires
from services.verification.usecases.context import NotFound, StaffView

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
P = d.Permission
VIEW = requires(P.VOUCHER_VIEW)
DECIDE = requires(P.VOUCHER_DECIDE)


@router.get("/vouchers", dependencies=[VIEW])
def vouchers(render: Render, service: Service, staff: CurrentStaff):
    return render("vouchers.html", section="vouchers", items=service.vouchers.applications(staff))


def voucher_page(render: Render, service: Service, staff: StaffView, application_id: str, *, status: int = 200,
                 errors: list[dict] | None = None, form: dict | None = None) -> HTMLResponse:
    v = service.vouchers.view(staff, application_id)
    members = service.staff.commission_members(v["district"] or "") if v["can_decide"] else []
    return render("voucher.html", status=status, section="vouchers", v=v, members=members,
                  errors=errors or [], form={"documents": [], "decision": "", "benefit_type": "", "reason": "",
                                             "members": [], **(form or {})})


@router.get("/vouchers/{application_id}", dependencies=[VIEW])
def voucher(render: Render, service: Service, staff: CurrentStaff, application_id: str):
    return voucher_page(render, service, staff, application_id)


@router.post("/vouchers/{application_id}/decide", dependencies=[DECIDE])
async def decide_voucher(render: Render, service: Service, staff: CurrentStaff, application_id: str,
                         form: CheckedForm):
    values = {"decision": str(form.get("decision") or ""), "benefit_type": str(form.get("benefit_type") or ""),
              "documents": [str(x) for x in form.getlist("documents")], "reason": str(form.get("reason") or ""),
              "members": [str(x) for x in form.getlist("members")]}
    return await acted(lambda: service.vouchers.decide(staff, application_id, **values),
                       f"/vouchers/{application_id}/decision",
                       lambda errors: voucher_page(render, service, staff, application_id, status=422, errors=errors,
                                                   form=values))


@router.get("/vouchers/{application_id}/decision",
            dependencies=[VIEW])
def voucher_decision(render: Render, service: Service, staff: CurrentStaff, application_id: str):
    v = service.vouchers.view(staff, application_id, printing=True)
    if v["decision"] is None:
        raise NotFound(application_id)
    return render("voucher_print.html", section="vouchers", v=v)
