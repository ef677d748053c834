"""Activation, sign-in and sessions. The secrets (activation tokens,
passwords, session tokens) travel in bodies, never in a URL. The gateway
looks a session up (`POST /sessions/lookup`) and acts for the account it
names; ending a session is the parent's own act."""
from __future__ import annotations

from fastapi import APIRouter, Response

from kezek.contracts.registration import (
    Accepted, Activated, ActivateIn, ActivationFor, AuthorizeAt, EmailIn, OidcFinishIn, OidcStartIn, Session,
    SessionFound, TokenIn,
)
from kezek.contracts.registration import SessionLoginIn as LoginIn
from kezek.trust import allow
from services.registration.api.deps import FAMILY, GATEWAY, By, Svc

router = APIRouter(prefix="/api/v1", tags=["accounts"])
as_gateway = [allow(GATEWAY)]


def _session(token: str, who) -> dict:
    return {"token": token, "account_id": who.account_id, "expires_at": who.expires_at.isoformat()}


@router.post("/activation/check", dependencies=as_gateway, summary="The address an activation link is for",
             response_model=ActivationFor)
def check_activation(body: TokenIn, svc: Svc, _by: By):
    return {"email": svc.check_activation(body.token)}


@router.post("/activation", dependencies=as_gateway, summary="Set the password with a link's token",
             response_model=Activated)
def activate(body: ActivateIn, svc: Svc, by: By):
    return {"account_id": svc.activate(body.token, body.password, by=by)}


@router.post("/activation/resend", status_code=202, dependencies=as_gateway,
             summary="A new link for an account without a password (the same answer for any address)",
             response_model=Accepted)
def resend(body: EmailIn, svc: Svc, by: By):
    svc.resend_activation(body.email, body.locale, by=by)
    return {"status": "accepted"}


@router.post("/sessions", status_code=201, dependencies=as_gateway,
             summary="Sign in with a password (wrong ones are slowed, never locked)", response_model=Session)
def login(body: LoginIn, svc: Svc, by: By):
    return _session(*svc.login(body.login, body.password, body.kind, by=by))


@router.post("/sessions/lookup", dependencies=as_gateway,
             summary="The account a session token opens (401 session_invalid: none)", response_model=SessionFound)
def lookup(body: TokenIn, svc: Svc, _by: By):
    who = svc.identify(body.token)
    return {"account_id": who.account_id, "kind": who.kind, "expires_at": who.expires_at.isoformat()}


@router.post("/sessions/end", status_code=204, dependencies=[allow(FAMILY)],
             summary="Sign out: the parent's own session ends")
def logout(body: TokenIn, svc: Svc, by: By):
    svc.logout(body.token, by=by)
    return Response(status_code=204)


@router.post("/sso/tunduk/start", dependencies=as_gateway, response_model=AuthorizeAt)
def sso_start(body: OidcStartIn, svc: Svc, _by: By):
    return {"authorize_url": svc.oidc_start(body.redirect_uri)}


@router.post("/sso/tunduk/finish", status_code=201, dependencies=as_gateway, response_model=Session)
def sso_finish(body: OidcFinishIn, svc: Svc, by: By):
    return _session(*svc.oidc_finish(body.state, body.code, body.kind, by=by))
