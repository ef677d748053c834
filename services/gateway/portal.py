"""The parents' portal: server-rendered pages in the parent's language.
Forms post back to the same page; a refusal re-renders the page with a 4xx
status, an error summary and the message next to each field it names."""
from __future__ import annotations

import secrets
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.gateway import i18n
from services.gateway.charts import position_chart
from services.gateway.clients import UpstreamError
from services.gateway.geo import project, ring_radii
from services.gateway.messages import describe
from workflows import rules

TEMPLATES = Path(__file__).parent / "templates"
SESSION_COOKIE = "kezek_session"
DRAFT_COOKIE = "kezek_draft"
LANG_COOKIE = "kezek_lang"
OIDC_COOKIE = "kezek_oidc"
INSTRUCTION_LANGUAGES = ("ky", "ru", "kk", "uz", "en")
STEPS = ("child", "parent", "contacts", "confirm")


def _environment(gw, lang: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    t = i18n.translations(str(gw.mo_dir), lang)
    env.install_gettext_translations(t, newstyle=True)
    env.filters["km"] = lambda m: f"{m / 1000:.1f}".replace(".", "," if lang != "en" else ".")
    env.filters["day"] = lambda value: _format_day(value, gw.tz)
    env.filters["deadline"] = lambda value: _format_deadline(value, gw.tz)
    env.filters["date"] = lambda value: _format_date(value, gw.tz)
    return env


def _moment(value: Any, tz: tzinfo) -> datetime | date | None:
    """A moment in the parents' local time (the services speak UTC), or a bare date."""
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            return None
    return dt.astimezone(tz) if dt.tzinfo else dt


def _format_day(value: Any, tz: tzinfo) -> str:
    if not value:
        return ""
    moment = _moment(value, tz)
    if not isinstance(moment, datetime):
        return moment.strftime("%d.%m.%Y") if moment else str(value)
    return moment.strftime("%d.%m.%Y %H:%M") if (moment.hour, moment.minute) != (0, 0) \
        else moment.strftime("%d.%m.%Y")


def _format_date(value: Any, tz: tzinfo) -> str:
    moment = _moment(value, tz) if value else None
    return moment.strftime("%d.%m.%Y") if moment else ""


def _format_deadline(value: Any, tz: tzinfo) -> str:
    """A window ends at 24:00 of its last day, which the services write as
    00:00 of the next: the parent is shown the last day itself."""
    moment = _moment(value, tz) if value else None
    if isinstance(moment, datetime) and (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return rules.last_day(moment).strftime("%d.%m.%Y")
    return _format_day(value, tz)


def portal_router(gw) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    envs: dict[str, jinja2.Environment] = {}
    secure = gw.settings.cookie_secure

    def lang_of(request: Request) -> str:
        return i18n.pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                                  request.headers.get("accept-language"), gw.settings.country)

    def render(request: Request, name: str, status: int = 200, errors: list[dict] | None = None,
               **ctx) -> HTMLResponse:
        lang = lang_of(request)
        env = envs.get(lang) or envs.setdefault(lang, _environment(gw, lang))
        by_field: dict[str, str] = {}
        for e in errors or []:
            by_field.setdefault(e["field"], e["message"])
        html = env.get_template(name).render(
            lang=lang, languages=i18n.LANGUAGE_NAMES, path=request.url.path, errors=errors or [],
            field_errors=by_field, logged_in=bool(request.cookies.get(SESSION_COOKIE)),
            request_id=None, **ctx)
        resp = HTMLResponse(html, status_code=status)
        if request.query_params.get("lang") in i18n.LANGUAGES:
            resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", secure=secure)
        return resp

    def described(request: Request, exc: UpstreamError) -> list[dict]:
        gettext = i18n.translations(str(gw.mo_dir), lang_of(request)).gettext
        if exc.status >= 500:
            return [describe({"field": "request", "code": "unavailable"}, gettext)]
        return [describe(e, gettext) for e in exc.errors] or [
            describe({"field": "request", "code": "refused", "message": exc.detail}, gettext)]

    def error_status(exc: UpstreamError) -> int:
        return 503 if exc.status >= 500 else exc.status

    def redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    async def form(request: Request) -> dict[str, Any]:
        data = await request.form()
        return {k: (v if isinstance(v, str) else "") for k, v in data.multi_items()}

    # --- home and language ---------------------------------------------------

    @r.get("/", response_class=HTMLResponse)
    async def home(request: Request):
        return render(request, "home.html")

    @r.get("/lang/{lang}")
    async def set_lang(lang: str, request: Request, next: str = "/"):
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        resp = redirect(target)
        if lang in i18n.LANGUAGES:
            resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", secure=secure)
        return resp

    # --- the application, step by step ---------------------------------------

    async def current_draft(request: Request) -> tuple[str, dict] | None:
        token = request.cookies.get(DRAFT_COOKIE)
        if not token:
            return None
        found = await gw.registration.draft(token)
        if found is None or found.get("submitted"):
            return None
        return token, found

    def keep_draft(resp: Response, token: str) -> Response:
        # A persistent cookie: the draft survives a closed browser for 30 days.
        resp.set_cookie(DRAFT_COOKIE, token, max_age=30 * 86400, httponly=True, secure=secure,
                        samesite="lax", path="/")
        return resp

    @r.get("/apply")
    async def apply(request: Request):
        found = await current_draft(request)
        if found is None:
            started = await gw.registration.start_draft(lang_of(request))
            return keep_draft(redirect("/apply/child"), started["draft"])
        return redirect(f"/apply/{found[1]['next_step']}")

    async def step_page(request: Request, step: str):
        found = await current_draft(request)
        if found is None:
            return None, redirect("/apply")
        token, draft = found
        if STEPS.index(step) > STEPS.index(draft["next_step"]):
            return None, redirect(f"/apply/{draft['next_step']}")
        return (token, draft), None

    def step_ctx(draft: dict, step: str, token: str) -> dict:
        return {"step": step, "steps": STEPS, "done_upto": STEPS.index(draft["next_step"]), "draft": draft,
                "csrf": gw.csrf(token)}

    def csrf_ok(values: dict, token: str) -> bool:
        return gw.check_csrf(token, values.pop("csrf", ""))

    @r.get("/apply/child", response_class=HTMLResponse)
    async def child_page(request: Request):
        ok, resp = await step_page(request, "child")
        if resp:
            return resp
        token, draft = ok
        return render(request, "apply_child.html", values=draft["child"], **step_ctx(draft, "child", token))

    @r.post("/apply/child", response_class=HTMLResponse)
    async def child_post(request: Request):
        ok, resp = await step_page(request, "child")
        if resp:
            return resp
        token, draft = ok
        values = await form(request)
        if not csrf_ok(values, token):
            return redirect("/apply/child")
        try:
            await gw.registration.save_child(token, values)
        except UpstreamError as exc:
            return render(request, "apply_child.html", error_status(exc), described(request, exc),
                          values=values, **step_ctx(draft, "child", token))
        return redirect("/apply/parent")

    tree_cache: dict[str, Any] = {}

    async def address_choices() -> dict:
        # The registry's tree changes rarely; keep it for ten minutes.
        now = datetime.now().timestamp()
        if tree_cache.get("until", 0) < now:
            tree_cache["regions"] = await gw.registration.address_tree()
            tree_cache["until"] = now + 600
        return {"regions": tree_cache["regions"]}

    def parent_values(draft: dict) -> dict:
        p = dict(draft.get("parent") or {})
        for k, v in (p.pop("address", None) or {}).items():
            p[f"address.{k}"] = v
        return p

    @r.get("/apply/parent", response_class=HTMLResponse)
    async def parent_page(request: Request):
        ok, resp = await step_page(request, "parent")
        if resp:
            return resp
        token, draft = ok
        return render(request, "apply_parent.html", values=parent_values(draft),
                      **(await address_choices()), **step_ctx(draft, "parent", token))

    @r.post("/apply/parent", response_class=HTMLResponse)
    async def parent_post(request: Request):
        ok, resp = await step_page(request, "parent")
        if resp:
            return resp
        token, draft = ok
        values = await form(request)
        if not csrf_ok(values, token):
            return redirect("/apply/parent")
        body = {k: v for k, v in values.items() if not k.startswith("address.")}
        body["address"] = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("address.")}
        try:
            await gw.registration.save_parent(token, body)
        except UpstreamError as exc:
            return render(request, "apply_parent.html", error_status(exc), described(request, exc),
                          values=values, **(await address_choices()), **step_ctx(draft, "parent", token))
        return redirect("/apply/contacts")

    @r.get("/apply/contacts", response_class=HTMLResponse)
    async def contacts_page(request: Request):
        ok, resp = await step_page(request, "contacts")
        if resp:
            return resp
        token, draft = ok
        return render(request, "apply_contacts.html", values={}, **step_ctx(draft, "contacts", token))

    @r.post("/apply/contacts", response_class=HTMLResponse)
    async def contacts_post(request: Request):
        ok, resp = await step_page(request, "contacts")
        if resp:
            return resp
        token, draft = ok
        values = await form(request)
        if not csrf_ok(values, token):
            return redirect("/apply/contacts")
        sent = False
        try:
            if values.get("action") == "send":
                await gw.registration.request_code(token, lang_of(request))
                sent = True
            else:
                await gw.registration.verify_code(token, values.get("code", ""))
                return redirect("/apply/confirm")
        except UpstreamError as exc:
            draft = await gw.registration.draft(token) or draft
            return render(request, "apply_contacts.html", error_status(exc), described(request, exc),
                          values=values, **step_ctx(draft, "contacts", token))
        draft = await gw.registration.draft(token) or draft
        return render(request, "apply_contacts.html", values={}, sent=sent, **step_ctx(draft, "contacts", token))

    async def confirm_ctx(draft: dict, token: str) -> dict:
        addr = draft.get("address") or {}
        kgs, ok = await gw.nearby(addr.get("lat"), addr.get("lon"), 30)
        return {"kindergartens": kgs, "kindergartens_ok": ok, "categories": await gw.categories(),
                "instruction_languages": INSTRUCTION_LANGUAGES, **step_ctx(draft, "confirm", token)}

    @r.get("/apply/confirm", response_class=HTMLResponse)
    async def confirm_page(request: Request):
        ok, resp = await step_page(request, "confirm")
        if resp:
            return resp
        token, draft = ok
        return render(request, "apply_confirm.html", values={"language": lang_of(request) if lang_of(request) in
                                                             INSTRUCTION_LANGUAGES else "ru"},
                      **(await confirm_ctx(draft, token)))

    @r.post("/apply/confirm", response_class=HTMLResponse)
    async def confirm_post(request: Request):
        ok, resp = await step_page(request, "confirm")
        if resp:
            return resp
        token, draft = ok
        values = await form(request)
        if not csrf_ok(values, token):
            return redirect("/apply/confirm")
        body = {"category": values.get("category", ""), "language": values.get("language", ""),
                "preferences": [values.get(f"preference{i}", "") for i in (1, 2, 3)],
                "agreement": values.get("agreement") == "on"}
        try:
            done = await gw.registration.submit(token, body)
        except UpstreamError as exc:
            return render(request, "apply_confirm.html", error_status(exc), described(request, exc),
                          values=values, **(await confirm_ctx(draft, token)))
        resp = redirect(f"/apply/done?new={1 if done.get('new_account') else 0}")
        resp.delete_cookie(DRAFT_COOKIE, path="/")
        return resp

    @r.get("/apply/done", response_class=HTMLResponse)
    async def done(request: Request, new: int = 1):
        return render(request, "apply_done.html", new_account=bool(new))

    # --- account ---------------------------------------------------------------

    @r.get("/activate", response_class=HTMLResponse)
    async def activate_page(request: Request, token: str = ""):
        try:
            found = await gw.registration.check_activation(token)
        except UpstreamError as exc:
            return render(request, "activate.html", error_status(exc), described(request, exc),
                          token=token, email=None)
        return render(request, "activate.html", token=token, email=found["email"])

    @r.post("/activate", response_class=HTMLResponse)
    async def activate_post(request: Request):
        values = await form(request)
        token = values.get("token", "")
        gettext = i18n.translations(str(gw.mo_dir), lang_of(request)).gettext
        if values.get("password", "") != values.get("password2", ""):
            errors = [describe({"field": "password2", "code": "password_mismatch"}, gettext)]
            return render(request, "activate.html", 422, errors, token=token, email=values.get("email"))
        try:
            await gw.registration.activate(token, values.get("password", ""))
        except UpstreamError as exc:
            return render(request, "activate.html", error_status(exc), described(request, exc),
                          token=token, email=values.get("email"))
        return redirect("/login?activated=1")

    # An account without a password (a parent moved from the old portal, or
    # whose link expired) gets a link by e-mail. The page says the same
    # whether or not the address has such an account.
    @r.get("/activate/request", response_class=HTMLResponse)
    async def activation_request_page(request: Request):
        return render(request, "activate_request.html", values={}, sent=False)

    @r.post("/activate/request", response_class=HTMLResponse)
    async def activation_request_post(request: Request):
        from services.gateway.api import client_key

        values = await form(request)
        email = values.get("email", "")
        if gw.activation_limiter.take(client_key(request)) > 0:
            errors = [describe({"field": "request", "code": "rate_limited"},
                               i18n.translations(str(gw.mo_dir), lang_of(request)).gettext)]
            return render(request, "activate_request.html", 429, errors, values={"email": email}, sent=False)
        try:
            await gw.registration.resend_activation(email, lang_of(request))
        except UpstreamError as exc:
            return render(request, "activate_request.html", error_status(exc), described(request, exc),
                          values={"email": email}, sent=False)
        return render(request, "activate_request.html", values={"email": email}, sent=True)

    def start_session(token: str) -> RedirectResponse:
        resp = redirect("/cabinet")
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, secure=secure, samesite="lax", path="/",
                        max_age=12 * 3600)
        return resp

    @r.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, activated: int = 0):
        return render(request, "login.html", values={}, activated=bool(activated))

    @r.post("/login", response_class=HTMLResponse)
    async def login_post(request: Request):
        values = await form(request)
        try:
            found = await gw.registration.login(values.get("login", ""), values.get("password", ""), "cookie")
        except UpstreamError as exc:
            return render(request, "login.html", error_status(exc), described(request, exc),
                          values={"login": values.get("login", "")}, activated=False)
        return start_session(found["token"])

    def callback_url(request: Request) -> str:
        base = gw.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
        return f"{base}/login/tunduk/callback"

    @r.get("/login/tunduk")
    async def tunduk(request: Request):
        try:
            found = await gw.registration.sso_start(callback_url(request))
        except UpstreamError as exc:
            return render(request, "login.html", error_status(exc), described(request, exc), values={},
                          activated=False)
        # Bind the sign-in to this browser: the callback must come back here.
        state = found["authorize_url"].split("state=", 1)[1].split("&", 1)[0]
        resp = RedirectResponse(found["authorize_url"], status_code=303)
        resp.set_cookie(OIDC_COOKIE, gw.csrf("oidc" + state), httponly=True, secure=secure, samesite="lax",
                        max_age=600, path="/login/tunduk")
        return resp

    @r.get("/login/tunduk/callback", response_class=HTMLResponse)
    async def tunduk_callback(request: Request, state: str = "", code: str = ""):
        gettext = i18n.translations(str(gw.mo_dir), lang_of(request)).gettext
        if not secrets.compare_digest(request.cookies.get(OIDC_COOKIE, ""), gw.csrf("oidc" + state)):
            return render(request, "login.html", 400, [describe({"field": "state", "code": "sso_failed"}, gettext)],
                          values={}, activated=False)
        try:
            found = await gw.registration.sso_finish(state, code, "cookie")
        except UpstreamError as exc:
            return render(request, "login.html", error_status(exc), described(request, exc), values={},
                          activated=False)
        resp = start_session(found["token"])
        resp.delete_cookie(OIDC_COOKIE, path="/login/tunduk")
        return resp

    @r.post("/logout")
    async def logout(request: Request):
        token = request.cookies.get(SESSION_COOKIE, "")
        values = await form(request)
        if token and gw.check_csrf(token, values.get("csrf", "")):
            try:
                await gw.registration.logout(token)
            except UpstreamError:
                pass
        resp = redirect("/")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # --- the cabinet -------------------------------------------------------------

    async def session(request: Request) -> str | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        try:
            await gw.registration.identify(token)
        except UpstreamError as exc:
            if exc.status in (401, 403):
                return None
            raise
        return token

    def to_login() -> RedirectResponse:
        resp = redirect("/login")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @r.get("/cabinet", response_class=HTMLResponse)
    async def cabinet(request: Request, done: str = ""):
        token = await session(request)
        if token is None:
            return to_login()
        me = await gw.children(token)
        for app in me["applications"]:
            q = app.get("queue") or {}
            app["chart"] = position_chart(q.get("history") or [])
        inbox, inbox_ok = await gw.inbox(me["account"]["id"])
        home = next((a["address"] for a in me["applications"] if a.get("address", {}).get("lat")), None)
        kgs, kgs_ok = await gw.nearby(home["lat"], home["lon"], 10) if home else ([], True)
        map_ = None
        if home and kgs:
            centre, points, scale = project((home["lat"], home["lon"]), kgs)
            map_ = {"home": centre, "points": points, "rings": ring_radii(scale), "size": 320}
        return render(request, "cabinet.html", me=me, inbox=inbox, inbox_ok=inbox_ok, kindergartens=kgs,
                      kindergartens_ok=kgs_ok, map=map_, csrf=gw.csrf(token), done=done, home=home)

    async def confirm_page_for(request: Request, token: str, kind: str, target_id: str, errors=None,
                               status: int = 200):
        if kind == "remove":
            app = await gw.owned_application(token, target_id)
            if app is None:
                return None
            subject = {"application": app}
        else:
            found = await gw.owned_referral(token, target_id)
            if found is None or "cancel" not in found[1].get("actions", []):
                return None
            subject = {"application": found[0], "referral": found[1]}
        return render(request, "confirm_action.html", status, errors, kind=kind, target_id=target_id,
                      csrf=gw.csrf(token), **subject)

    def not_yours(request: Request) -> HTMLResponse:
        gettext = i18n.translations(str(gw.mo_dir), lang_of(request)).gettext
        return render(request, "error.html", 404, [describe({"field": "application", "code": "not_found"}, gettext)])

    @r.get("/cabinet/referrals/{referral_id}/cancel", response_class=HTMLResponse)
    async def cancel_page(referral_id: str, request: Request):
        token = await session(request)
        if token is None:
            return to_login()
        return await confirm_page_for(request, token, "cancel", referral_id) or not_yours(request)

    @r.post("/cabinet/referrals/{referral_id}/cancel", response_class=HTMLResponse)
    async def cancel_post(referral_id: str, request: Request):
        token = await session(request)
        if token is None:
            return to_login()
        values = await form(request)
        found = await gw.owned_referral(token, referral_id)
        if found is None or "cancel" not in found[1].get("actions", []) or not gw.check_csrf(token, values.get("csrf", "")):
            return not_yours(request)
        try:
            await gw.referrals.cancel(referral_id, await gw.actor(token))
        except UpstreamError as exc:
            return await confirm_page_for(request, token, "cancel", referral_id, described(request, exc),
                                          error_status(exc)) or not_yours(request)
        return redirect("/cabinet?done=cancelled#directions")

    @r.post("/cabinet/referrals/{referral_id}/extend", response_class=HTMLResponse)
    async def extend_post(referral_id: str, request: Request):
        token = await session(request)
        if token is None:
            return to_login()
        values = await form(request)
        found = await gw.owned_referral(token, referral_id)
        if found is None or "extend" not in found[1].get("actions", []) or not gw.check_csrf(token, values.get("csrf", "")):
            return not_yours(request)
        try:
            await gw.referrals.extend(referral_id, await gw.actor(token))
        except UpstreamError as exc:
            return render(request, "error.html", error_status(exc), described(request, exc))
        return redirect("/cabinet?done=extended#directions")

    @r.post("/cabinet/notifications/{message_id}/read", response_class=HTMLResponse)
    async def notification_read(message_id: str, request: Request):
        token = await session(request)
        if token is None:
            return to_login()
        values = await form(request)
        if not gw.check_csrf(token, values.get("csrf", "")):
            return redirect("/cabinet#h-notes")
        me = await gw.registration.me(token)
        try:
            await gw.notifications.mark_read(me["account"]["id"], message_id)
        except UpstreamError as exc:
            return render(request, "error.html", error_status(exc), described(request, exc))
        return redirect("/cabinet#h-notes")

    @r.get("/cabinet/applications/{application_id}/remove", response_class=HTMLResponse)
    async def remove_page(application_id: str, request: Request):
        token = await session(request)
        if token is None:
            return to_login()
        return await confirm_page_for(request, token, "remove", application_id) or not_yours(request)

    @r.post("/cabinet/applications/{application_id}/remove", response_class=HTMLResponse)
    async def remove_post(application_id: str, request: Request):
        token = await session(request)
        if token is None:
            return to_login()
        values = await form(request)
        if await gw.owned_application(token, application_id) is None or not gw.check_csrf(token, values.get("csrf", "")):
            return not_yours(request)
        try:
            await gw.queue.remove(application_id, await gw.actor(token))
            await gw.registration.mark_removed(token, application_id)
        except UpstreamError as exc:
            return await confirm_page_for(request, token, "remove", application_id, described(request, exc),
                                          error_status(exc)) or not_yours(request)
        return redirect("/cabinet?done=removed")

    return r


def quoted(s: str) -> str:
    return quote(s, safe="")
