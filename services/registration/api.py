"""The registration service's HTTP API (/api/v1). Only the gateway calls it;
calls made for a parent carry that parent's session token, and every answer
is limited to the account of that token."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr

from kezek.db import make_engine, make_session_factory
from kezek.settings import Settings
from kezek.web import create_service_app, database_check
from services.registration import domain as d
from services.registration.address import AddressRegistry, ReferenceAddressRegistry
from services.registration.oidc import OidcProvider
from services.registration.service import NotFound, RegistrationService, Unauthorized

THROTTLE_CODES = {"code_resend_too_soon", "code_too_many_sends", "code_too_many_attempts"}
CONFLICT_CODES = {"child_already_registered", "draft_already_submitted"}


class RegistrationSettings(Settings):
    """The shared settings plus what only registration needs."""
    public_url: str = ""                 # the portal's address, for activation links
    tunduk_issuer: str = ""              # empty: single sign-on is off
    tunduk_client_id: str = "kezek"
    tunduk_client_secret: SecretStr = SecretStr("")
    tunduk_pin_claim: str = "pin"


# English texts of the codes, for API clients; the portal shows its own
# translations (services/gateway catalogs).
MESSAGES = {
    "required": "is required", "pin_format": "must have {length} digits",
    "pin_sex_digit": "must start with 1 (female) or 2 (male)",
    "pin_impossible_date": "does not contain a real birth date",
    "pin_future_date": "contains a birth date in the future",
    "iin_check_digit": "check digit does not match", "child_too_old": "the child is {years} or older",
    "child_already_registered": "this child is already registered in the queue",
    "birth_date_contradicts_pin": "does not match the PIN", "date_format": "must be a date (YYYY-MM-DD)",
    "date_in_future": "cannot be in the future", "name_format": "must contain letters only",
    "choice": "is not one of the allowed values", "document_number_id_card": "must look like ID1234567",
    "document_number_passport": "must look like AN1234567",
    "document_number_other": "must be 5-20 letters or digits", "parent_too_young": "is too young",
    "parent_pin_is_child_pin": "is the child's PIN", "house_format": "is not a house number",
    "flat_format": "is not a flat number", "phone_format": "must be a +996 or +7 mobile number",
    "email_format": "is not an e-mail address",
    "address_unknown_region": "is not in the address registry",
    "address_unknown_district": "is not a district of the chosen region",
    "address_unknown_settlement": "is not a settlement of the chosen district",
    "address_unknown_street": "is not in the address registry; check the street's official name at a "
                              "public service centre",
    "code_resend_too_soon": "wait {seconds} s before asking for a new code",
    "code_too_many_sends": "too many codes asked for; try again in an hour",
    "code_not_requested": "ask for a code first", "code_format": "must be {length} digits",
    "code_expired": "has expired; ask for a new one", "code_wrong": "is wrong; {left} attempts left",
    "code_too_many_attempts": "too many wrong attempts; ask for a new code",
    "too_many_preferences": "at most {max}", "duplicate_preference": "lists a kindergarten twice",
    "agreement_required": "the user agreement must be accepted", "step_not_done": "finish this step first",
    "draft_already_submitted": "this application was already submitted",
    "activation_invalid": "the link is invalid, used or expired",
    "password_too_short": "must have at least {min} characters", "password_too_weak": "is too easy to guess",
    "sso_unavailable": "single sign-on is not configured", "sso_failed": "single sign-on failed",
    "sso_no_application": "no application was submitted with your PIN; apply first",
}


def describe(e: d.FieldError) -> dict:
    params = dict(e.params)
    try:
        text = MESSAGES.get(e.code, e.code).format(**params)
    except (KeyError, IndexError):
        text = MESSAGES.get(e.code, e.code)
    return {"field": e.field, "code": e.code, "params": params, "message": f"{e.field}: {text}"}


class DraftIn(BaseModel):
    locale: str = "ky"


class CodeIn(BaseModel):
    code: str = ""
    locale: str | None = None


class ActivateIn(BaseModel):
    token: str = ""
    password: str = ""


class LoginIn(BaseModel):
    login: str = ""
    password: str = ""
    kind: str = Field("cookie", pattern="^(cookie|bearer)$")


class OidcStartIn(BaseModel):
    redirect_uri: str


class OidcFinishIn(BaseModel):
    state: str = ""
    code: str = ""
    kind: str = Field("cookie", pattern="^(cookie|bearer)$")


class EmailIn(BaseModel):
    email: str = ""
    locale: str | None = None


def create_app(settings: RegistrationSettings | Settings | None = None, *,
               registry: AddressRegistry | None = None, oidc: OidcProvider | None = None,
               clock=None, hasher=None) -> FastAPI:
    settings = settings or RegistrationSettings()
    if not isinstance(settings, RegistrationSettings):
        settings = RegistrationSettings(**settings.model_dump())
    engine = make_engine(settings.database_url_for("registration"))
    if oidc is None and settings.tunduk_issuer:
        oidc = OidcProvider(settings.tunduk_issuer, settings.tunduk_client_id,
                            settings.tunduk_client_secret.get_secret_value(),
                            pin_claim=settings.tunduk_pin_claim)
    extra = {"clock": clock} if clock else {}
    if hasher is not None:
        extra["hasher"] = hasher
    service = RegistrationService(
        make_session_factory(engine), registry or ReferenceAddressRegistry(),
        code_key=settings.secret_key.get_secret_value().encode(), country=settings.country,
        public_url=settings.public_url or settings.url_of("gateway"), oidc=oidc, **extra)
    app = create_service_app("registration", title="Kezek registration",
                             ready_checks=[("database", database_check(engine))])
    app.state.service = service
    app.state.engine = engine

    @app.exception_handler(d.RegistrationRefused)
    async def refused(_r: Request, exc: d.RegistrationRefused):
        errors = [describe(e) for e in exc.errors]
        codes = {e.code for e in exc.errors}
        status = 429 if codes & THROTTLE_CODES else 409 if codes & CONFLICT_CODES else 422
        return JSONResponse({"detail": "; ".join(e["message"] for e in errors), "errors": errors},
                            status_code=status)

    @app.exception_handler(NotFound)
    async def not_found(_r: Request, exc: NotFound):
        return JSONResponse({"detail": f"{exc} not found", "errors": [
            {"field": str(exc), "code": "not_found", "params": {}, "message": f"{exc}: not found"}]},
            status_code=404)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_r: Request, exc: Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
        status = 401
        params: dict[str, Any] = {}
        if exc.until is not None:
            status = 429
            retry = max(1, int((exc.until - datetime.now(UTC)).total_seconds()))
            headers["Retry-After"] = str(retry)
            params["until"] = exc.until.isoformat()
        field = "session" if exc.code == "session_invalid" else "login"
        return JSONResponse({"detail": exc.code, "errors": [
            {"field": field, "code": exc.code, "params": params, "message": f"{field}: {exc.code}"}]},
            status_code=status, headers=headers)

    def svc() -> RegistrationService:
        return app.state.service

    Svc = Annotated[RegistrationService, Depends(svc)]

    def identity(svc: Svc, authorization: Annotated[str, Header()] = ""):
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("session_invalid")
        return svc.identify(token)

    # --- address registry ------------------------------------------------
    @app.get("/api/v1/address/regions", tags=["address"])
    def regions(svc: Svc):
        return [p.as_dict() for p in svc.registry.regions()]

    @app.get("/api/v1/address/tree", tags=["address"],
             summary="Regions, districts, settlements and known streets, for forms without scripts")
    def tree(svc: Svc):
        reg = svc.registry
        return [{**r.as_dict(), "districts": [{**d_.as_dict(), "settlements": [
            {**s.as_dict(), "streets": [st.as_dict() for st in reg.streets(s.code)]}
            for s in reg.settlements(d_.code)]} for d_ in reg.districts(r.code)]} for r in reg.regions()]

    @app.get("/api/v1/address/regions/{region}/districts", tags=["address"])
    def districts(region: str, svc: Svc):
        return [p.as_dict() for p in svc.registry.districts(region)]

    @app.get("/api/v1/address/districts/{district}/settlements", tags=["address"])
    def settlements(district: str, svc: Svc):
        return [p.as_dict() for p in svc.registry.settlements(district)]

    @app.get("/api/v1/address/settlements/{settlement}/streets", tags=["address"])
    def streets(settlement: str, svc: Svc, q: Annotated[str, Query(max_length=100)] = ""):
        return [p.as_dict() for p in svc.registry.streets(settlement, q)]

    # --- the application -------------------------------------------------
    @app.post("/api/v1/drafts", status_code=201, tags=["application"])
    def start(body: DraftIn, svc: Svc):
        token = svc.start_draft(body.locale)
        return {"draft": token, **svc.get_draft(token)}

    @app.get("/api/v1/drafts/{token}", tags=["application"])
    def get_draft(token: str, svc: Svc):
        return svc.get_draft(token)

    @app.put("/api/v1/drafts/{token}/child", tags=["application"])
    def put_child(token: str, body: dict[str, Any], svc: Svc):
        return svc.save_child(token, body)

    @app.put("/api/v1/drafts/{token}/parent", tags=["application"])
    def put_parent(token: str, body: dict[str, Any], svc: Svc):
        return svc.save_parent(token, body)

    @app.post("/api/v1/drafts/{token}/email-code", status_code=202, tags=["application"])
    def request_code(token: str, svc: Svc, body: CodeIn | None = None):
        return svc.request_code(token, body.locale if body else None)

    @app.post("/api/v1/drafts/{token}/email-code/verify", tags=["application"])
    def verify_code(token: str, body: CodeIn, svc: Svc):
        return svc.verify_code(token, body.code)

    @app.post("/api/v1/drafts/{token}/submit", status_code=201, tags=["application"])
    def submit(token: str, body: dict[str, Any], svc: Svc):
        done = svc.submit(token, body)
        return {"application_id": done.application_id, "new_account": done.new_account}

    # --- accounts and sessions --------------------------------------------
    @app.get("/api/v1/activation/{token}", tags=["accounts"])
    def check_activation(token: str, svc: Svc):
        return {"email": svc.check_activation(token)}

    @app.post("/api/v1/activation", tags=["accounts"])
    def activate(body: ActivateIn, svc: Svc):
        return {"account_id": svc.activate(body.token, body.password)}

    @app.post("/api/v1/activation/resend", status_code=202, tags=["accounts"])
    def resend(body: EmailIn, svc: Svc):
        svc.resend_activation(body.email, body.locale)
        return {"status": "accepted"}

    @app.post("/api/v1/sessions", status_code=201, tags=["accounts"])
    def login(body: LoginIn, svc: Svc):
        token, who = svc.login(body.login, body.password, body.kind)
        return {"token": token, "account_id": who.account_id, "expires_at": who.expires_at.isoformat()}

    @app.get("/api/v1/sessions/current", tags=["accounts"])
    def current(who=Depends(identity)):
        return {"account_id": who.account_id, "kind": who.kind, "expires_at": who.expires_at.isoformat()}

    @app.delete("/api/v1/sessions/current", status_code=204, tags=["accounts"])
    def logout(svc: Svc, authorization: Annotated[str, Header()] = ""):
        svc.logout(authorization.partition(" ")[2])

    @app.get("/api/v1/me", tags=["accounts"])
    def me(svc: Svc, who=Depends(identity)):
        return svc.profile(who.account_id)

    @app.post("/api/v1/me/applications/{application_id}/removed", status_code=204, tags=["accounts"])
    def removed(application_id: str, svc: Svc, who=Depends(identity)):
        if not svc.owns_application(who.account_id, application_id):
            raise NotFound("application")
        svc.mark_removed(application_id)

    @app.post("/api/v1/sso/tunduk/start", tags=["accounts"])
    def sso_start(body: OidcStartIn, svc: Svc):
        return {"authorize_url": svc.oidc_start(body.redirect_uri)}

    @app.post("/api/v1/sso/tunduk/finish", status_code=201, tags=["accounts"])
    def sso_finish(body: OidcFinishIn, svc: Svc):
        token, who = svc.oidc_finish(body.state, body.code, body.kind)
        return {"token": token, "account_id": who.account_id, "expires_at": who.expires_at.isoformat()}

    return app
