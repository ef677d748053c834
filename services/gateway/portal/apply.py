"""The home page and the application step by step (DOMAIN.md section 2),
open to anyone: the draft is opened by its token in a 30-day cookie, and
each form carries a token derived from it (CSRF)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from kezek.trust import PUBLIC
from services.gateway.clients import UpstreamError
from services.gateway import cabinet, i18n
from services.gateway.portal.pages import LANG_COOKIE, YEAR, Form, Gw, Lang, Redirect, Render, redirect

router = APIRouter(include_in_schema=False, dependencies=[PUBLIC])
DRAFT_COOKIE = "kezek_draft"
STEPS = ("child", "parent", "contacts", "confirm")
INSTRUCTION_LANGUAGES = ("ky", "ru", "kk", "uz", "en")


@router.get("/", response_class=HTMLResponse)
async def home(render: Render):
    return render("home.html")


@router.get("/lang/{lang}")
async def set_lang(lang: str, gw: Gw, next: str = "/"):
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    resp = redirect(target)
    if lang in i18n.LANGUAGES:
        resp.set_cookie(LANG_COOKIE, lang, max_age=YEAR, samesite="lax", secure=gw.settings.cookie_secure)
    return resp


# --- the draft ------------------------------------------------------------------

@dataclass
class Draft:
    token: str
    data: dict
    step: str
    csrf: str

    def ctx(self, step: str | None = None) -> dict:
        return {"step": step or self.step, "steps": STEPS, "done_upto": STEPS.index(self.data["next_step"]),
                "draft": self.data, "csrf": self.csrf}


async def current_draft(request: Request, gw: Gw) -> Draft | None:
    token = request.cookies.get(DRAFT_COOKIE)
    found = await gw.registration.draft(token) if token else None
    return Draft(token, found, found["next_step"], gw.csrf(token)) if found else None


@functools.cache
def draft_at(step: str):
    """The draft, if it has reached `step` (else to the step it is at)."""

    async def dependency(request: Request, gw: Gw) -> Draft:
        found = await current_draft(request, gw)
        if found is None:
            raise Redirect("/apply")
        if STEPS.index(step) > STEPS.index(found.step):
            raise Redirect(f"/apply/{found.step}")
        found.step = step
        return found

    return Depends(dependency)


@functools.cache
def posted(step: str):
    """The step's form, if it carries the draft's CSRF token (else the page
    again, nothing changed)."""

    async def dependency(form: Form, gw: Gw, draft: Draft = draft_at(step)) -> dict[str, str]:
        if not gw.check_csrf(draft.token, form.pop("csrf", "")):
            raise Redirect(f"/apply/{step}")
        return form

    return Depends(dependency)


def keep_draft(resp: Response, token: str, secure: bool) -> Response:
    # A persistent cookie: the draft survives a closed browser for 30 days.
    resp.set_cookie(DRAFT_COOKIE, token, max_age=30 * 86400, httponly=True, secure=secure, samesite="lax", path="/")
    return resp


@router.get("/apply")
async def apply(request: Request, gw: Gw, lang: Lang):
    found = await current_draft(request, gw)
    if found is None:
        started = await gw.registration.start_draft(lang)
        return keep_draft(redirect("/apply/child"), started["draft"], gw.settings.cookie_secure)
    return redirect(f"/apply/{found.step}")


# --- step 1: the child ------------------------------------------------------------

async def categories_ctx(gw) -> dict:
    """Who qualifies for each category, and which a caseworker confirms."""
    checks = await gw.category_checks()
    return {"categories": list(checks), "confirmed_by": checks}


@router.get("/apply/child", response_class=HTMLResponse)
async def child_page(render: Render, gw: Gw, draft: Annotated[Draft, draft_at("child")]):
    return render("apply_child.html", values=draft.data["child"], **draft.ctx(), **(await categories_ctx(gw)))


@router.post("/apply/child", response_class=HTMLResponse)
async def child_post(render: Render, gw: Gw, draft: Annotated[Draft, draft_at("child")],
                     values: Annotated[dict, posted("child")]):
    try:
        await gw.registration.save_child(draft.token, values)
    except UpstreamError as exc:
        return render.refused("apply_child.html", exc, values=values, **draft.ctx(), **(await categories_ctx(gw)))
    return redirect("/apply/parent")


# --- step 2: the parent and the address -----------------------------------------

def parent_values(draft: dict) -> dict:
    p = dict(draft.get("parent") or {})
    for k, v in (p.pop("address", None) or {}).items():
        p[f"address.{k}"] = v
    return p


@router.get("/apply/parent", response_class=HTMLResponse)
async def parent_page(render: Render, gw: Gw, draft: Annotated[Draft, draft_at("parent")]):
    return render("apply_parent.html", values=parent_values(draft.data), regions=await gw.address_tree(),
                  **draft.ctx())


@router.post("/apply/parent", response_class=HTMLResponse)
async def parent_post(render: Render, gw: Gw, draft: Annotated[Draft, draft_at("parent")],
                      values: Annotated[dict, posted("parent")]):
    body = {k: v for k, v in values.items() if not k.startswith("address.")}
    body["address"] = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("address.")}
    try:
        await gw.registration.save_parent(draft.token, body)
    except UpstreamError as exc:
        return render.refused("apply_parent.html", exc, values=values, regions=await gw.address_tree(),
                              **draft.ctx())
    return redirect("/apply/contacts")


# --- step 2b: the e-mail code -------------------------------------------------------

@router.get("/apply/contacts", response_class=HTMLResponse)
async def contacts_page(render: Render, draft: Annotated[Draft, draft_at("contacts")]):
    return render("apply_contacts.html", values={}, **draft.ctx())


@router.post("/apply/contacts", response_class=HTMLResponse)
async def contacts_post(render: Render, gw: Gw, lang: Lang, draft: Annotated[Draft, draft_at("contacts")],
                        values: Annotated[dict, posted("contacts")]):
    sending = values.get("action") == "send"
    try:
        if sending:
            await gw.registration.request_code(draft.token, lang)
        else:
            await gw.registration.verify_code(draft.token, values.get("code", ""))
            return redirect("/apply/confirm")
    except UpstreamError as exc:
        draft.data = await gw.registration.draft(draft.token) or draft.data
        return render.refused("apply_contacts.html", exc, values=values, **draft.ctx())
    draft.data = await gw.registration.draft(draft.token) or draft.data
    return render("apply_contacts.html", values={}, sent=True, **draft.ctx())


# --- step 3: confirmation -------------------------------------------------------------

async def confirm_ctx(gw, draft: Draft) -> dict:
    addr = draft.data.get("address") or {}
    kgs, ok = await gw.nearby(addr.get("lat"), addr.get("lon"), 30)
    checks = await gw.category_checks()
    return {"kindergartens": kgs, "kindergartens_ok": ok, "categories": list(checks), "confirmed_by": checks,
            "instruction_languages": INSTRUCTION_LANGUAGES, **draft.ctx()}


@router.get("/apply/confirm", response_class=HTMLResponse)
async def confirm_page(render: Render, gw: Gw, lang: Lang, draft: Annotated[Draft, draft_at("confirm")]):
    values = {"language": lang if lang in INSTRUCTION_LANGUAGES else "ru"}
    return render("apply_confirm.html", values=values, **(await confirm_ctx(gw, draft)))


@router.post("/apply/confirm", response_class=HTMLResponse)
async def confirm_post(render: Render, gw: Gw, draft: Annotated[Draft, draft_at("confirm")],
                       values: Annotated[dict, posted("confirm")]):
    body = {"category": values.get("category", ""), "language": values.get("language", ""),
            "preferences": [values.get(f"preference{i}", "") for i in (1, 2, 3)],
            "agreement": values.get("agreement") == "on"}
    try:
        done = await gw.registration.submit(draft.token, body)
    except UpstreamError as exc:
        return render.refused("apply_confirm.html", exc, values=values, **(await confirm_ctx(gw, draft)))
    await cabinet.submitted(gw, render.request)
    resp = redirect(f"/apply/done?new={1 if done.get('new_account') else 0}")
    resp.delete_cookie(DRAFT_COOKIE, path="/")
    return resp


@router.get("/apply/done", response_class=HTMLResponse)
async def done(render: Render, new: int = 1):
    return render("apply_done.html", new_account=bool(new))
