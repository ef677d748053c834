"""The caseworkers' web UI: server-rendered pages in Russian and Kyrgyz,
behind a staff session (argon2 passwords, an HttpOnly cookie, a CSRF token
in every form). Routes are thin: they read the form, call one use case of
service.py and render its answer; refusals re-render the form with the
field named in the caseworker's language."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from kezek.db import make_engine, make_session_factory
from kezek.settings import Settings
from kezek.web import create_service_app, database_check
from services.verification import domain as d
from services.verification.i18n import Pages, pick_language
from services.verification.referrals import ReferralCommands, TemporalReferrals
from workflows.client import ReferralUnavailable
from services.verification.service import (
    Forbidden, NotFound, StaffView, Unauthenticated, VerificationPolicy, VerificationService,
)

HERE = Path(__file__).parent
COOKIE = "kezek_staff"
LANG_COOKIE = "kezek_lang"


class VerificationSettings(Settings):
    """The shared settings plus what only verification needs."""

    verification_certificate_valid_days: int = d.CERTIFICATE_VALID_DAYS
    verification_max_scan_mb: float = d.MAX_SCAN_BYTES / (1024 * 1024)
    verification_abuse_policy: dict[str, Any] = {}          # JSON: {"min_cycles": 2, "window_days": 365, ...}
    verification_voucher_categories: list[str] = ["voucher"]
    verification_cookie_secure: bool | None = None          # default: secure in production


def policy_of(settings: VerificationSettings) -> VerificationPolicy:
    return VerificationPolicy(
        country=settings.country,
        certificate_valid_days=settings.verification_certificate_valid_days,
        max_scan_bytes=int(settings.verification_max_scan_mb * 1024 * 1024),
        abuse=d.AbusePolicy.from_dict(settings.verification_abuse_policy),
        vouchers=d.VoucherPolicy(categories=tuple(settings.verification_voucher_categories)),
    )


def as_settings(settings: Settings | None) -> VerificationSettings:
    settings = settings or VerificationSettings()
    if not isinstance(settings, VerificationSettings):
        settings = VerificationSettings(**settings.model_dump())
    return settings


class CsrfFailed(Exception):
    pass


def _static_version() -> str:
    h = hashlib.sha256()
    for f in sorted((HERE / "static").iterdir()):
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def current_staff(request: Request) -> StaffView:
    token = request.cookies.get(COOKIE)
    staff = request.app.state.service.identify(token)
    request.state.staff, request.state.token = staff, token
    return staff


CurrentStaff = Annotated[StaffView, Depends(current_staff)]


def create_app(settings: Settings | None = None, *, referrals: ReferralCommands | None = None,
               clock=None, hasher=None) -> FastAPI:
    settings = as_settings(settings)
    engine = make_engine(settings.database_url_for("verification"))
    policy = policy_of(settings)
    extra = {"clock": clock} if clock else {}
    if hasher is not None:
        extra["hasher"] = hasher
    service = VerificationService(
        make_session_factory(engine),
        referrals=referrals or TemporalReferrals(settings.temporal_address, settings.temporal_namespace),
        policy=policy, secret=settings.secret_key.get_secret_value().encode(), **extra)
    pages = Pages(settings.state_dir, _static_version())
    secure_cookie = settings.env == "production" if settings.verification_cookie_secure is None \
        else settings.verification_cookie_secure

    app = create_service_app("verification", title="Kezek verification",
                             ready_checks=[("database", database_check(engine))])
    app.state.service = service
    app.state.engine = engine
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path.startswith("/static/"):
            h["Cache-Control"] = "public, max-age=604800, immutable"
        else:
            # Pages carry personal data: never cached, never framed.
            h.setdefault("Cache-Control", "no-store")
            h.setdefault("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                         "form-action 'self'; base-uri 'none'; object-src 'self'")
        return response

    # ------------------------------------------------------------ rendering

    def lang_of(request: Request, staff: CurrentStaffView | None = None) -> str:
        return pick_language(None, request.cookies.get(LANG_COOKIE), staff.locale if staff else None)

    def page(request: Request, template: str, *, status: int = 200, **ctx) -> HTMLResponse:
        staff: CurrentStaffView | None = getattr(request.state, "staff", None)
        token = getattr(request.state, "token", None)
        ctx.setdefault("errors", [])
        ctx.setdefault("section", "")
        html = pages.render(lang_of(request, staff), template, staff=staff,
                            csrf=service.csrf_token(token) if token else "",
                            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""), **ctx)
        return HTMLResponse(html, status_code=status)

    def error_page(request: Request, kind: str, status: int, **ctx) -> HTMLResponse:
        return page(request, "error.html", status=status, kind=kind, back=ctx.pop("back", "/"),
                    max_mb=f"{policy.max_scan_bytes / (1024 * 1024):g}", **ctx)

    @app.exception_handler(Unauthenticated)
    async def to_login(request: Request, _exc: Unauthenticated):
        target = request.url.path if request.method == "GET" else "/"
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, _exc: NotFound):
        return error_page(request, "not_found", 404, back="/")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _exc: Forbidden):
        return error_page(request, "forbidden", 403)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, _exc: CsrfFailed):
        return error_page(request, "csrf", 403)

    @app.exception_handler(ReferralUnavailable)
    async def unavailable(request: Request, _exc: ReferralUnavailable):
        return error_page(request, "unavailable", 503, back=request.url.path.rsplit("/", 1)[0])

    # ------------------------------------------------------------ session

    async def form_of(request: Request) -> Any:
        form = await request.form(max_files=1, max_fields=40)
        if not service.check_csrf(getattr(request.state, "token", None), form.get("csrf")):
            raise CsrfFailed()
        return form

    def errors_of(exc: d.Refused) -> list[dict]:
        return [e.as_dict() for e in exc.errors]

    @app.get("/", include_in_schema=False)
    def home(staff: CurrentStaff):
        if staff.can(d.Permission.WORKLIST):
            return RedirectResponse("/worklist", status_code=303)
        if staff.can(d.Permission.VOUCHER_VIEW):
            return RedirectResponse("/vouchers", status_code=303)
        raise Forbidden("home")

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/"):
        return page(request, "login.html", next=_safe_next(next), login="")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await request.form(max_files=0, max_fields=10)
        login_, password = str(form.get("login") or ""), str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or "/"))
        try:
            token, staff = service.login(login_, password)
        except Unauthenticated as exc:
            status = 429 if exc.code == "login_locked" else 401
            return page(request, "login.html", status=status, next=target, login=login_,
                        errors=[{"field": "login", "code": exc.code, "params": {}}])
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, max_age=int(d.SESSION_TTL.total_seconds()), httponly=True,
                            samesite="strict", secure=secure_cookie, path="/")
        if not request.cookies.get(LANG_COOKIE):
            response.set_cookie(LANG_COOKIE, staff.locale, max_age=365 * 86400, samesite="lax", path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, staff: CurrentStaff):
        await form_of(request)
        service.logout(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/language", include_in_schema=False)
    def language(to: str = "ru", next: str = "/"):
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(LANG_COOKIE, pick_language(to, None, None), max_age=365 * 86400,
                            samesite="lax", path="/")
        return response

    # ------------------------------------------------------------ worklist and cases

    @app.get("/worklist", response_class=HTMLResponse, include_in_schema=False)
    def worklist(request: Request, staff: CurrentStaff, district: str | None = None):
        view = service.worklist(staff, (district or "").strip() or None)
        return page(request, "worklist.html", section="worklist", all_districts=d.all_districts(staff.role), **view)

    def case_page(request: Request, staff: CurrentStaffView, referral_id: str, *, status: int = 200,
                  errors: list[dict] | None = None, form: dict | None = None, outcome=None,
                  recorded: bool = False) -> HTMLResponse:
        case = service.case(staff, referral_id)
        done = request.query_params.get("done")
        if outcome is None and done:
            found = next((x for x in case["decisions"] if x["nonce"] == done), None)
            # The deadline now running: the enrolment one after a confirmation,
            # the same confirmation window after a request for a fresh certificate.
            outcome = found and {**found, "deadline": case["deadline"]}
        errors = errors or []
        cert_fields = {"organisation", "number", "issued_on", "scan"}
        return page(request, "case.html", status=status, section="worklist", case=case, errors=errors,
                    errors_in_certificate=any(e["field"] in cert_fields for e in errors),
                    form={"organisation": "", "number": "", "issued_on": "", "reason": "", **(form or {})},
                    outcome=outcome, recorded=recorded or request.query_params.get("recorded") == "1",
                    nonce=uuid.uuid4().hex)

    @app.get("/cases/{referral_id}", response_class=HTMLResponse, include_in_schema=False)
    def case(request: Request, staff: CurrentStaff, referral_id: str):
        return case_page(request, staff, referral_id)

    @app.post("/cases/{referral_id}/certificate", include_in_schema=False)
    async def record_certificate(request: Request, staff: CurrentStaff, referral_id: str):
        length = int(request.headers.get("content-length") or 0)
        if length > 2 * policy.max_scan_bytes + 1024 * 1024:
            # Far over the limit: refused before the body is read.
            return error_page(request, "too_large", 413, back=f"/cases/{referral_id}")
        form = await form_of(request)
        upload = form.get("scan")
        data, name = b"", ""
        if isinstance(upload, UploadFile):
            data = await upload.read(policy.max_scan_bytes + 1)
            name = upload.filename or ""
        values = {k: str(form.get(k) or "") for k in ("organisation", "number", "issued_on")}
        try:
            service.record_certificate(staff, referral_id, scan=data, scan_name=name, **values)
        except d.Refused as exc:
            return case_page(request, staff, referral_id, status=422, errors=errors_of(exc), form=values)
        return RedirectResponse(f"/cases/{referral_id}?recorded=1#h-cert", status_code=303)

    async def act(request: Request, staff: CurrentStaffView, referral_id: str, action: d.Action):
        form = await form_of(request)
        reason = str(form.get("reason") or "")
        nonce = str(form.get("nonce") or "")[:64] or uuid.uuid4().hex
        try:
            await service.decide(staff, referral_id, action, reason=reason, nonce=nonce)
        except d.Refused as exc:
            return case_page(request, staff, referral_id, status=422, errors=errors_of(exc), form={"reason": reason})
        return RedirectResponse(f"/cases/{referral_id}?done={nonce}#outcome", status_code=303)

    @app.post("/cases/{referral_id}/confirm", include_in_schema=False)
    async def confirm(request: Request, staff: CurrentStaff, referral_id: str):
        return await act(request, staff, referral_id, d.Action.CONFIRM)

    @app.post("/cases/{referral_id}/reject", include_in_schema=False)
    async def reject(request: Request, staff: CurrentStaff, referral_id: str):
        return await act(request, staff, referral_id, d.Action.REJECT)

    @app.post("/cases/{referral_id}/request-certificate", include_in_schema=False)
    async def request_certificate(request: Request, staff: CurrentStaff, referral_id: str):
        return await act(request, staff, referral_id, d.Action.REQUEST_CERTIFICATE)

    @app.get("/cases/{referral_id}/certificates/{certificate_id}/scan", include_in_schema=False)
    def scan(staff: CurrentStaff, referral_id: str, certificate_id: str):
        data, content_type, sha = service.scan(staff, referral_id, certificate_id)
        ext = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}[content_type]
        return Response(data, media_type=content_type, headers={
            "Content-Disposition": f'inline; filename="certificate-{certificate_id[:8]}.{ext}"',
            "Cache-Control": "no-store", "ETag": f'"{sha}"'})

    # ------------------------------------------------------------ abuse

    @app.get("/abuse", response_class=HTMLResponse, include_in_schema=False)
    def abuse_list(request: Request, staff: CurrentStaff, status: str = "open"):
        status = status if status in ("open", "revoked", "dismissed", "") else "open"
        return page(request, "abuse_list.html", section="abuse", cases=service.abuse_cases(staff, status),
                    shown=status)

    def abuse_page(request: Request, staff: CurrentStaffView, case_id: str, *, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("form", {"reason": ""})
        return page(request, "abuse_case.html", status=status, section="abuse",
                    case=service.abuse_case(staff, case_id), result=request.query_params.get("result"),
                    refusal=None, **ctx)

    @app.get("/abuse/{case_id}", response_class=HTMLResponse, include_in_schema=False)
    def abuse_case(request: Request, staff: CurrentStaff, case_id: str):
        return abuse_page(request, staff, case_id)

    @app.post("/abuse/{case_id}/resolve", include_in_schema=False)
    async def resolve_abuse(request: Request, staff: CurrentStaff, case_id: str):
        form = await form_of(request)
        reason = str(form.get("reason") or "")
        try:
            if form.get("resolution") == "revoke":
                outcome = await service.revoke_privilege(staff, case_id, reason)
                if outcome["refusal"]:
                    return page(request, "abuse_case.html", section="abuse",
                                case=service.abuse_case(staff, case_id), result="revoked",
                                refusal=outcome["refusal"], form={"reason": ""})
                return RedirectResponse(f"/abuse/{case_id}?result=revoked", status_code=303)
            service.dismiss_abuse(staff, case_id, reason)
        except d.Refused as exc:
            return abuse_page(request, staff, case_id, status=422, errors=errors_of(exc), form={"reason": reason})
        return RedirectResponse(f"/abuse/{case_id}?result=dismissed", status_code=303)

    # ------------------------------------------------------------ vouchers

    @app.get("/vouchers", response_class=HTMLResponse, include_in_schema=False)
    def vouchers(request: Request, staff: CurrentStaff):
        return page(request, "vouchers.html", section="vouchers", items=service.vouchers(staff))

    def voucher_page(request: Request, staff: CurrentStaffView, application_id: str, *, status: int = 200,
                     errors: list[dict] | None = None, form: dict | None = None) -> HTMLResponse:
        v = service.voucher(staff, application_id)
        members = service.commission_members(v["district"] or "") if v["can_decide"] else []
        return page(request, "voucher.html", status=status, section="vouchers", v=v, members=members,
                    errors=errors or [], form={"documents": [], "decision": "", "benefit_type": "", "reason": "",
                                               "members": [], **(form or {})})

    @app.get("/vouchers/{application_id}", response_class=HTMLResponse, include_in_schema=False)
    def voucher(request: Request, staff: CurrentStaff, application_id: str):
        return voucher_page(request, staff, application_id)

    @app.post("/vouchers/{application_id}/decide", include_in_schema=False)
    async def decide_voucher(request: Request, staff: CurrentStaff, application_id: str):
        form = await form_of(request)
        values = {"decision": str(form.get("decision") or ""), "benefit_type": str(form.get("benefit_type") or ""),
                  "documents": [str(x) for x in form.getlist("documents")], "reason": str(form.get("reason") or ""),
                  "members": [str(x) for x in form.getlist("members")]}
        try:
            service.decide_voucher(staff, application_id, **values)
        except d.Refused as exc:
            return voucher_page(request, staff, application_id, status=422, errors=errors_of(exc), form=values)
        return RedirectResponse(f"/vouchers/{application_id}/decision", status_code=303)

    @app.get("/vouchers/{application_id}/decision", response_class=HTMLResponse, include_in_schema=False)
    def voucher_decision(request: Request, staff: CurrentStaff, application_id: str):
        v = service.voucher(staff, application_id, printing=True)
        if v["decision"] is None:
            raise NotFound(application_id)
        return page(request, "voucher_print.html", section="vouchers", v=v)

    # ------------------------------------------------------------ audit

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit(request: Request, staff: CurrentStaff):
        params = {k: request.query_params.get(k, "") for k in ("actor", "action", "subject", "date_from", "date_to")}
        try:
            query = d.parse_audit_query(params)
        except d.Refused as exc:
            if not staff.can(d.Permission.AUDIT_SEARCH):
                raise Forbidden("audit.search") from None
            return page(request, "audit.html", status=422, section="audit", q=params, entries=[],
                        errors=errors_of(exc))
        return page(request, "audit.html", section="audit", q=params, entries=service.search_audit(staff, query))

    return app

