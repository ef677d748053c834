"""The application step by step (the gateway as itself; the draft token in
the path is the capability). A submitted draft opens nothing any more."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from kezek.contracts.registration import (
    ChildIn, CodeIn, CodeSent, ConfirmIn, Draft, DraftIn, NewDraft, ParentIn, SubmittedApplication,
)
from kezek.trust import allow
from services.registration.api.deps import GATEWAY, By, Svc

router = APIRouter(prefix="/api/v1/drafts", tags=["application"], dependencies=[allow(GATEWAY)])
Token = Annotated[str, Path(max_length=200, description="the draft's token")]


@router.post("", status_code=201, response_model=NewDraft, response_model_exclude_unset=True)
def start(body: DraftIn, svc: Svc, by: By):
    return svc.new_draft(body.locale, by=by)


@router.get("/{token}", summary="The draft's data (refused once it is submitted)", response_model=Draft,
            response_model_exclude_unset=True)
def get_draft(token: Token, svc: Svc, _by: By):
    return svc.get_draft(token)


@router.put("/{token}/child", summary="Step 1: the child", response_model=Draft, response_model_exclude_unset=True)
def put_child(token: Token, body: ChildIn, svc: Svc, by: By):
    return svc.save_child(token, body.model_dump(), by=by)


@router.put("/{token}/parent", summary="Step 2: the parent, the address, the contacts", response_model=Draft,
            response_model_exclude_unset=True)
def put_parent(token: Token, body: ParentIn, svc: Svc, by: By):
    return svc.save_parent(token, body.model_dump(), by=by)


@router.post("/{token}/email-code", status_code=202, summary="Send a code to the e-mail", response_model=CodeSent)
def request_code(token: Token, svc: Svc, by: By, body: CodeIn | None = None):
    return svc.request_code(token, body.locale if body else None, by=by)


@router.post("/{token}/email-code/verify", response_model=Draft, response_model_exclude_unset=True)
def verify_code(token: Token, body: CodeIn, svc: Svc, by: By):
    return svc.verify_code(token, body.code, by=by)


@router.post("/{token}/submit", status_code=201, summary="Step 3: submit (kindergartens checked with the queue)",
             response_model=SubmittedApplication)
def submit(token: Token, body: ConfirmIn, svc: Svc, by: By):
    done = svc.submit(token, body.model_dump(), by=by)
    return {"application_id": done.application_id, "new_account": done.new_account}
