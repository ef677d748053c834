"""A kindergarten's pages (issue 19): its groups and places, the referrals to
it and its children, and the acts on them. Server-rendered, working without
scripts; each act is a form that comes back to the page, refusals in the
reader's language beside what they concern."""
from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from services.verification import domain as d
from services.verification.api.pages import CheckedForm, CurrentStaff, Render, Service, acted, errors_of, requires
from services.verification.usecases.context import StaffView
from services.verification.usecases.kindergartens import ActOutcome

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
P = d.Permission
VIEW = requires(P.KG_VIEW)
PLACES = requires(P.KG_PLACES)
ENROL = requires(P.KG_ENROL)
PLACE_FIELDS = ("cohort", "language", "count", "for_category", "publish_on", "publish_time")


@router.get("/kindergarten", dependencies=[VIEW])
def own_kindergarten(staff: CurrentStaff):
    """Kindergarten staff go to their kindergarten; a district officer to the district."""
    if staff.kindergarten:
        return RedirectResponse(f"/kindergartens/{staff.kindergarten}", status_code=303)
    return RedirectResponse("/district", status_code=303)


async def page(render: Render, service: Service, staff: StaffView, kg: str, *, status: int = 200,
               errors: list[dict] | None = None, form: dict | None = None, which: str = "",
               outcome: ActOutcome | None = None) -> HTMLResponse:
    view = await service.kindergartens.page(staff, kg)
    query = render.request.query_params
    return render("kindergarten.html", status=status, section="kindergarten", errors=errors or [], which=which,
                  form={k: "" for k in PLACE_FIELDS} | (form or {}), outcome=outcome, done=query.get("done", ""),
                  nonce=uuid.uuid4().hex, **view)


@router.get("/kindergartens/{kg}", dependencies=[VIEW])
async def kindergarten(render: Render, service: Service, staff: CurrentStaff, kg: str):
    return await page(render, service, staff, kg)


def _fields(form) -> dict:
    return {k: str(form.get(k) or "") for k in PLACE_FIELDS}


@router.post("/kindergartens/{kg}/places", dependencies=[PLACES])
async def publish(render: Render, service: Service, staff: CurrentStaff, kg: str, form: CheckedForm):
    values = _fields(form)
    later = str(form.get("when") or "now") == "later"
    try:
        await service.kindergartens.publish(staff, kg, values, scheduled=later)
    except d.Refused as exc:
        return await page(render, service, staff, kg, status=422, errors=errors_of(exc), form=values,
                          which="publish")
    return RedirectResponse(f"/kindergartens/{kg}?done={'scheduled' if later else 'published'}#places",
                            status_code=303)


@router.post("/kindergartens/{kg}/places/withdrawal", dependencies=[PLACES])
async def withdraw(render: Render, service: Service, staff: CurrentStaff, kg: str, form: CheckedForm):
    values = _fields(form)
    return await acted(lambda: service.kindergartens.withdraw(staff, kg, values),
                       f"/kindergartens/{kg}?done=withdrawn#places",
                       lambda errors: page(render, service, staff, kg, status=422, errors=errors, form=values,
                                           which="withdraw"))


@router.post("/kindergartens/{kg}/publications/{publication}/cancel", dependencies=[PLACES])
async def cancel_publication(render: Render, service: Service, staff: CurrentStaff, kg: str, publication: int,
                             _form: CheckedForm):
    return await acted(lambda: service.kindergartens.cancel_publication(staff, kg, publication),
                       f"/kindergartens/{kg}?done=cancelled#places",
                       lambda errors: page(render, service, staff, kg, status=409, errors=errors, which="schedule"))


async def _referral_act(render: Render, service: Service, staff: StaffView, kg: str, outcome: ActOutcome):
    if not outcome.done:
        return await page(render, service, staff, kg, status=409, outcome=outcome)
    return RedirectResponse(f"/kindergartens/{kg}?done={outcome.act}#referrals", status_code=303)


@router.post("/kindergartens/{kg}/referrals/{referral_id}/enrolment", dependencies=[ENROL])
async def enrol(render: Render, service: Service, staff: CurrentStaff, kg: str, referral_id: str,
                form: CheckedForm):
    outcome = await service.kindergartens.enrol(staff, kg, referral_id, nonce=str(form.get("nonce") or "")[:64])
    return await _referral_act(render, service, staff, kg, outcome)


@router.post("/kindergartens/{kg}/referrals/{referral_id}/declined", dependencies=[ENROL])
async def declined(render: Render, service: Service, staff: CurrentStaff, kg: str, referral_id: str,
                   form: CheckedForm):
    try:
        outcome = await service.kindergartens.declined(staff, kg, referral_id, str(form.get("reason") or ""),
                                                       nonce=str(form.get("nonce") or "")[:64])
    except d.Refused as exc:
        return await page(render, service, staff, kg, status=422, errors=errors_of(exc), which="declined")
    return await _referral_act(render, service, staff, kg, outcome)


@router.post("/kindergartens/{kg}/children/{application_id}/leaving", dependencies=[ENROL])
async def leave(render: Render, service: Service, staff: CurrentStaff, kg: str, application_id: str,
                form: CheckedForm):
    return await acted(lambda: service.kindergartens.leave(staff, kg, application_id, str(form.get("reason") or "")),
                       f"/kindergartens/{kg}?done=left#children",
                       lambda errors: page(render, service, staff, kg, status=409, errors=errors, which="leave"))

