"""The application step by step (the gateway as itself; the draft token in
the path is the capability). A submitted draft opens nothing any more."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from kezek.trust import allow
from services.registration.api.deps import GATEWAY, By, Svc

router = APIRouter(prefix="/api/v1/drafts", tags=["application"], dependencies=[allow(GATEWAY)])
Token = Annotated[str, Path(max_length=200, description="the draft's token")]
# Wide enough that the rules' own limits (kezek/lengths.py) refuse a long
# value with `too_long`, naming the field and the limit.
Text = Annotated[str, Field(max_length=100_000)]


class _In(BaseModel):
    # Values are text: a number or a list where text belongs is a 422
    # naming the field, never a 500.
    model_config = ConfigDict(extra="ignore")


class DraftIn(_In):
    locale: str = Field("ky", max_length=5)


class ChildIn(_In):
    pin: Text = ""
    surname: Text = ""
    name: Text = ""
    patronymic: Text | None = None
    birth_date: Text | None = None


class AddressIn(_In):
    region: Text = ""
    district: Text = ""
    settlement: Text = ""
    street: Text = ""
    house: Text = ""
    flat: Text | None = None


class ParentIn(_In):
    role: Text = ""
    surname: Text = ""
    name: Text = ""
    patronymic: Text | None = None
    pin: Text = ""
    document_type: Text = ""
    document_number: Text = ""
    document_issued_on: Text = ""
    phone: Text = ""
    email: Text = ""
    address: AddressIn = AddressIn()


class CodeIn(_In):
    code: Text = ""
    locale: str | None = Field(None, max_length=5)


class ConfirmIn(_In):
    category: Text = ""
    language: Text = ""
    preferences: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=10)
    agreement: bool | Text | None = None


@router.post("", status_code=201)
def start(body: DraftIn, svc: Svc, by: By):
    token = svc.start_draft(body.locale, by=by)
    return {"draft": token, **svc.get_draft(token)}


@router.get("/{token}", summary="The draft's data (refused once it is submitted)")
def get_draft(token: Token, svc: Svc, _by: By):
    return svc.get_draft(token)


@router.put("/{token}/child", summary="Step 1: the child")
def put_child(token: Token, body: ChildIn, svc: Svc, by: By):
    return svc.save_child(token, body.model_dump(), by=by)


@router.put("/{token}/parent", summary="Step 2: the parent, the address, the contacts")
def put_parent(token: Token, body: ParentIn, svc: Svc, by: By):
    return svc.save_parent(token, body.model_dump(), by=by)


@router.post("/{token}/email-code", status_code=202, summary="Send a code to the e-mail")
def request_code(token: Token, svc: Svc, by: By, body: CodeIn | None = None):
    return svc.request_code(token, body.locale if body else None, by=by)


@router.post("/{token}/email-code/verify")
def verify_code(token: Token, body: CodeIn, svc: Svc, by: By):
    return svc.verify_code(token, body.code, by=by)


@router.post("/{token}/submit", status_code=201, summary="Step 3: submit (kindergartens checked with the queue)")
def submit(token: Token, body: ConfirmIn, svc: Svc, by: By):
    done = svc.submit(token, body.model_dump(), by=by)
    return {"application_id": done.application_id, "new_account": done.new_account}
