"""The family's own data, in the cabinet (DOMAIN.md section 7): a readable
page of everything Kezek holds about the family (printable, so it can be
saved as a PDF), the same as a JSON file to download, and the request to
erase a closed application (asked first; granted, or refused with the
legal reason in the parent's language), and which offices looked at the
family's data. The verified parent's only."""
from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from kezek.territories import district_name
from services.gateway import cabinet as c
from services.gateway import family
from services.gateway.clients import UpstreamError
from services.gateway.portal.cabinet import PARENT_ONLY, Checked, Csrf, Parent
from services.gateway.portal.pages import Gw, Render, redirect

router = APIRouter(include_in_schema=False, dependencies=[PARENT_ONLY])


@router.get("/cabinet/data", response_class=HTMLResponse)
async def data_page(render: Render, gw: Gw, who: Parent):
    return render("family_copy.html", copy=await family.copy(gw, who))


@router.get("/cabinet/looks", response_class=HTMLResponse)
async def looks_page(render: Render, gw: Gw, who: Parent):
    found = [{**x, "office_name": district_name(x.get("office"), render.lang) if x.get("office") else "—"}
             for x in await family.looks(gw, who)]
    return render("family_looks.html", looks=found)


@router.get("/cabinet/data.json")
async def data_file(gw: Gw, who: Parent):
    body = json.dumps(await family.copy(gw, who), ensure_ascii=False, indent=2)
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": 'attachment; filename="kezek-family-data.json"', "Cache-Control": "no-store"})


@router.get("/cabinet/applications/{application_id}/erase", response_class=HTMLResponse)
async def erase_page(application_id: str, render: Render, gw: Gw, who: Parent, csrf: Csrf):
    app = await c.own_application(gw, who, application_id)
    return render("erase.html", application=app, target_id=application_id, csrf=csrf)


@router.post("/cabinet/applications/{application_id}/erase", response_class=HTMLResponse)
async def erase_post(application_id: str, render: Render, gw: Gw, who: Parent, csrf: Csrf, _form: Checked):
    app = await c.own_application(gw, who, application_id)
    try:
        await family.erase(gw, who, application_id)
    except UpstreamError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return render.refused("erase.html", exc, application=app, target_id=application_id, csrf=csrf)
    return redirect("/cabinet?done=erased")
