"""A district office's pages (issue 19): the district's kindergartens
(created, edited, closed), the publication schedule, the district's figures
with their charts. An administrator sees every district and changes nothing."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from services.verification import domain as d
from services.verification.api.pages import CheckedForm, CurrentStaff, Render, Service, acted, errors_of, requires
from kezek.problems import InvalidInput
from services.verification.usecases.context import StaffView

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
P = d.Permission
VIEW = requires(P.DISTRICT_VIEW)
MANAGE = requires(P.DISTRICT_MANAGE)
SCHEDULE = requires(P.DISTRICT_SCHEDULE)
KG_FIELDS = ("id", "name", "address", "lat", "lon")
SCHEDULE_FIELDS = ("kindergarten", "cohort", "language", "count", "for_category", "publish_on", "publish_time")


@router.get("/district", dependencies=[VIEW])
async def own_district(service: Service, staff: CurrentStaff):
    if staff.district:
        return RedirectResponse(f"/districts/{staff.district}", status_code=303)
    return RedirectResponse("/districts", status_code=303)


@router.get("/districts", dependencies=[VIEW])
async def districts(render: Render, service: Service, staff: CurrentStaff):
    return render("districts.html", section="district", districts=await service.districts.districts(staff))


async def district_page(render: Render, service: Service, staff: StaffView, district: str, *, status: int = 200,
                        errors: list[dict] | None = None, form: dict | None = None, which: str = ""):
    view = await service.districts.page(staff, district)
    return render("district.html", status=status, section="district", errors=errors or [], which=which,
                  form={k: "" for k in KG_FIELDS} | {"languages": []} | (form or {}),
                  done=render.request.query_params.get("done", ""), **view)


@router.get("/districts/{district}", dependencies=[VIEW])
async def district(render: Render, service: Service, staff: CurrentStaff, district: str):
    return await district_page(render, service, staff, district)


def _kg_form(form) -> tuple[dict, list[str]]:
    return {k: str(form.get(k) or "") for k in KG_FIELDS}, [str(x) for x in form.getlist("languages")]


@router.post("/districts/{district}/kindergartens", dependencies=[MANAGE])
async def create(render: Render, service: Service, staff: CurrentStaff, district: str, form: CheckedForm):
    values, languages = _kg_form(form)
    return await acted(lambda: service.districts.create(staff, district, values, languages),
                       f"/districts/{district}?done=created",
                       lambda errors: district_page(render, service, staff, district, status=422, errors=errors,
                                                    form={**values, "languages": languages}, which="create"))


@router.get("/districts/{district}/kindergartens/{kg}/edit", dependencies=[MANAGE])
async def edit_form(render: Render, service: Service, staff: CurrentStaff, district: str, kg: str):
    found = await service.districts.kindergarten(staff, district, kg)
    form = {k: "" if found.get(k) is None else str(found[k]) for k in KG_FIELDS} | {"languages": found["languages"]}
    return render("kindergarten_edit.html", section="district", district=district, kindergarten=found, form=form,
                  taught=d.TAUGHT_LANGUAGES)


@router.post("/districts/{district}/kindergartens/{kg}/edit", dependencies=[MANAGE])
async def edit(render: Render, service: Service, staff: CurrentStaff, district: str, kg: str, form: CheckedForm):
    values, languages = _kg_form(form)
    try:
        await service.districts.edit(staff, district, kg, values, languages)
    except d.Refused as exc:
        found = await service.districts.kindergarten(staff, district, kg)
        return render("kindergarten_edit.html", status=422, section="district", district=district,
                      kindergarten=found, form={**values, "languages": languages}, taught=d.TAUGHT_LANGUAGES,
                      errors=errors_of(exc))
    return RedirectResponse(f"/districts/{district}?done=edited", status_code=303)


@router.post("/districts/{district}/kindergartens/{kg}/closure", dependencies=[MANAGE])
async def close(render: Render, service: Service, staff: CurrentStaff, district: str, kg: str, form: CheckedForm):
    return await acted(lambda: service.districts.close(staff, district, kg, str(form.get("reason") or "")),
                       f"/districts/{district}?done=closed",
                       lambda errors: district_page(render, service, staff, district, status=409,
                                                    errors=[{**e, "kindergarten": kg} for e in errors], which="close"))


# ------------------------------------------------------------ the schedule

async def schedule_page(render: Render, service: Service, staff: StaffView, district: str, *, status: int = 200,
                        errors: list[dict] | None = None, form: dict | None = None):
    view = await service.districts.schedule(staff, district)
    return render("schedule.html", status=status, section="district", errors=errors or [],
                  form={k: "" for k in SCHEDULE_FIELDS} | (form or {}),
                  done=render.request.query_params.get("done", ""), **view)


@router.get("/districts/{district}/schedule", dependencies=[VIEW])
async def schedule(render: Render, service: Service, staff: CurrentStaff, district: str):
    return await schedule_page(render, service, staff, district)


@router.post("/districts/{district}/schedule", dependencies=[SCHEDULE])
async def schedule_places(render: Render, service: Service, staff: CurrentStaff, district: str, form: CheckedForm):
    values = {k: str(form.get(k) or "") for k in SCHEDULE_FIELDS}
    return await acted(lambda: service.districts.schedule_places(staff, district, values),
                       f"/districts/{district}/schedule?done=scheduled",
                       lambda errors: schedule_page(render, service, staff, district, status=422, errors=errors,
                                                    form=values))


@router.post("/districts/{district}/schedule/{publication}/cancel", dependencies=[SCHEDULE])
async def cancel(render: Render, service: Service, staff: CurrentStaff, district: str, publication: int,
                 _form: CheckedForm):
    return await acted(lambda: service.districts.cancel(staff, district, publication),
                       f"/districts/{district}/schedule?done=cancelled",
                       lambda errors: schedule_page(render, service, staff, district, status=409, errors=errors))


# ------------------------------------------------------------ figures

@router.get("/districts/{district}/figures", dependencies=[VIEW])
async def figures(render: Render, service: Service, staff: CurrentStaff, district: str, month: str | None = None):
    if month is not None and not d.MONTH_RE.match(month):
        raise InvalidInput("month_format", field="month")
    view = await service.districts.figures(staff, district, month)
    return render("figures.html", section="district", **view)
