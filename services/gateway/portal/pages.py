"""What every page of the portal shares, as dependencies: the gateway's
context (`Gw`), the reader's language (`Lang`), the renderer of templates in
that language (`Render`), the posted form (`Form`), and the redirect a
dependency may answer with (`Redirect`). Forms post back to their page; a
refusal re-renders it with a 4xx, an error summary and the message at each
field it names."""
from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from kezek.formatting import Formats, parse_moment
from kezek.i18n import CompiledTemplates
from kezek import lengths
from kezek.trust import PARENT
from services.gateway import i18n
from services.gateway.clients import UpstreamError
from services.gateway.context import Gateway, KeptPages
from services.gateway.messages import ERRORS, describe
from workflows import rules

TEMPLATES = Path(__file__).parent.parent / "templates"
LANG_COOKIE = "kezek_lang"
YEAR = 365 * 86400


class Redirect(Exception):
    """Answered with a 303 to `url` (a step not reached yet, a stale form)."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# The dependencies of every request are `async def`: FastAPI runs a plain
# `def` dependency in its thread pool, a hand-over to a thread and back for
# what is a lookup (tests/unit/test_gateway_dependencies.py).

async def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


Gw = Annotated[Gateway, Depends(get_gateway)]


async def language(request: Request) -> str:
    gw: Gateway = request.app.state.gateway
    return i18n.pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                              request.headers.get("accept-language"), gw.settings.country)


Lang = Annotated[str, Depends(language)]


async def read_form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: (v if isinstance(v, str) else "") for k, v in data.multi_items()}


Form = Annotated[dict[str, str], Depends(read_form)]


# ------------------------------------------------------------- rendering

_environments: dict[tuple[str, str], jinja2.Environment] = {}
_COMPILED = CompiledTemplates()   # for every state folder's environments


def environment(gw: Gateway, lang: str) -> jinja2.Environment:
    key = (str(gw.mo_dir), lang)
    env = _environments.get(key)
    if env is None:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                 extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True,
                                 bytecode_cache=_COMPILED)
        env.install_gettext_translations(i18n.translations(str(gw.mo_dir), lang), newstyle=True)
        env.globals["limits"] = lengths.MAX_LENGTH     # each input's maxlength: what the services check
        env.globals["country"] = gw.settings.country    # KG: PIN, +996; KZ: IIN, +7
        fmt = formats(gw, lang)
        env.filters.update(fmt.filters())
        env.filters["deadline"] = lambda value: format_deadline(value, fmt)
        _environments[key] = env
    return env


class Page:
    """Renders a template in the reader's language, for one request."""

    def __init__(self, request: Request, gw: Gw, lang: Lang):
        self.request, self.gw, self.lang = request, gw, lang

    def __call__(self, name: str, status: int = 200, errors: list[dict] | None = None, **ctx) -> HTMLResponse:
        return self.respond(self.html(name, errors, **ctx), status)

    def html(self, name: str, errors: list[dict] | None = None, **ctx) -> str:
        by_field: dict[str, str] = {}
        for e in errors or []:
            by_field.setdefault(e["field"], e["message"])
        return environment(self.gw, self.lang).get_template(name).render(
            lang=self.lang, languages=i18n.LANGUAGE_NAMES, path=self.request.url.path, errors=errors or [],
            field_errors=by_field, logged_in=self.logged_in(), request_id=None, **ctx)

    def logged_in(self) -> bool:
        principal = getattr(self.request.state, "principal", None)
        return principal is not None and principal.role == PARENT

    def kept(self, pages: KeptPages, slot: tuple, name: str, /, **ctx) -> HTMLResponse:
        """`self(name, **ctx)`, the HTML taken from `pages` when this
        template was last rendered in `slot` for a reader of the same
        language, path and sign-in with a context equal to `ctx` (the same
        input makes the same page): a page read by many, made of a service's
        answer that seldom changes, is rendered once per change."""
        key = (name, self.lang, self.request.url.path, self.logged_in(), slot)
        found = pages.get(key)
        if found is not None and found[0] == ctx:
            return self.respond(found[1])
        html = self.html(name, **ctx)
        pages.put(key, (ctx, html))
        return self.respond(html)

    def respond(self, html: str, status: int = 200) -> HTMLResponse:
        resp = HTMLResponse(html, status_code=status)
        if self.request.query_params.get("lang") in i18n.LANGUAGES:
            resp.set_cookie(LANG_COOKIE, self.lang, max_age=YEAR, samesite="lax", secure=self.gw.settings.cookie_secure)
        return resp

    def described(self, *errors: dict) -> list[dict]:
        return [describe(e, self.gw.gettext(self.lang), self.gw.settings.country) for e in errors]

    def refused(self, name: str, exc: UpstreamError, **ctx) -> HTMLResponse:
        """The page again, with what the service refused at each field."""
        return self(name, status_of(exc), errors_of(exc, self.gw.gettext(self.lang), self.gw.settings.country),
                    **ctx)


def status_of(exc: UpstreamError) -> int:
    return 503 if exc.status >= 500 else exc.status


def errors_of(exc: UpstreamError, gettext, country: str = "KG") -> list[dict]:
    """A service's refusal in the reader's words; an outage is 'unavailable'
    unless it names a reason the reader is told (a referral not started yet)."""
    if exc.status >= 500:
        return [describe(e, gettext, country) for e in exc.errors if e.get("code") in ERRORS] or [
            describe({"field": "request", "code": "unavailable"}, gettext)]
    return [describe(e, gettext, country) for e in exc.errors] or [
        describe({"field": "request", "code": exc.code or "refused", "message": exc.detail}, gettext)]


async def page(request: Request, gw: Gw, lang: Lang) -> Page:
    return Page(request, gw, lang)


Render = Annotated[Page, Depends(page)]


# ------------------------------------------------------- dates on the pages

def formats(gw: Gateway, lang: str) -> Formats:
    """Dates and numbers in the reader's language and the country's time zone."""
    return Formats(lang, gw.tz)


def format_deadline(value: Any, fmt: Formats) -> str:
    """A window ends at 24:00 of its last day, which the services write as
    00:00 of the next: the parent is shown the last day itself."""
    moment = parse_moment(value, fmt.tz)
    if isinstance(moment, datetime) and moment.time() == time(0):
        return fmt.date(rules.last_day(moment))
    return fmt.day(value)
