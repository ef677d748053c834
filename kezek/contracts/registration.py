"""The registration API's bodies and answers, as pydantic models: what
registration reads and answers (services/registration/api/), and what the
gateway's JSON API, which passes the same steps on for parents, documents
(services/gateway/jsonapi.py). One definition, so the parents' contract
cannot drift from the service behind it.

Bodies ignore unknown properties and take text where text belongs (a
number or a list there is a 422 naming the field, never a 500); the rules
of each value are registration's (a refusal names the field and a code).
Answers allow properties added later; a route that passes them on sets
`response_model_exclude_unset=True`, so an answer keeps the shape it had
(an empty step stays `{}`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from kezek.openapi import Answer, Moment, example

# Wide enough that the rules' own limits (kezek/lengths.py) refuse a long
# value with `too_long`, naming the field and the limit.
Text = Annotated[str, Field(max_length=100_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# A body's keys are the fields of one step: an error at `pin` of the child
# step is the field `child.pin` (the names the portal and the codes use).
STEP_FIELDS = {"/child": "child.", "/parent": "parent."}


def step_fields(route_path: str, errors: list[dict]) -> list[dict]:
    """Field errors of a body (kezek.problems.field_errors) named as the steps name them."""
    prefix = next((p for end, p in STEP_FIELDS.items() if route_path.endswith(end)), "")
    for e in errors:
        if prefix and not e["field"].startswith(("address", "(body)")):
            e["message"] = prefix + e["message"]
            e["field"] = prefix + e["field"]
    return errors


# ------------------------------------------------------------------ the address registry

class Place(Answer):
    """A region, district, settlement or street of the address registry."""
    model_config = example(code="41711000000000", names={"ky": "Бишкек шаары", "ru": "город Бишкек"},
                           lat=42.8746, lon=74.5698)
    code: str
    names: dict[str, str] = Field(description="the official name in each language")
    name: str | None = None
    lat: float | None = None
    lon: float | None = None


class SettlementTree(Place):
    streets: list[Place] = Field(default_factory=list)


class DistrictTree(Place):
    settlements: list[SettlementTree] = Field(default_factory=list)


class RegionTree(Place):
    """A region with its districts, settlements and known streets."""
    model_config = example(code="41711000000000", names={"ky": "Бишкек шаары", "ru": "город Бишкек"},
                           districts=[{"code": "41711210000000", "names": {"ru": "Ленинский район"},
                                       "settlements": [{"code": "41711000000001", "names": {"ru": "Бишкек"},
                                                        "streets": [{"code": "kiev", "names": {"ru": "Киевская"}}]}]}])
    districts: list[DistrictTree] = Field(default_factory=list)


# ------------------------------------------------------------------ the application, step by step

class DraftIn(_In):
    model_config = example(locale="ky")
    locale: str = Field("ky", max_length=5, description="the language of the e-mails about this application")


class ChildIn(_In):
    """Step 1: the child (the PIN decides the birth date and sex)."""
    model_config = example(pin="21506202400011", surname="Асанов", name="Айбек", patronymic="Русланович")
    pin: Text = ""
    surname: Text = ""
    name: Text = ""
    patronymic: Text | None = None
    birth_date: Text | None = Field(None, description="YYYY-MM-DD, when the PIN cannot say it")


class AddressIn(_In):
    model_config = example(region="41711000000000", district="41711210000000", settlement="41711000000001",
                           street="Киевская", house="1", flat="12")
    region: Text = ""
    district: Text = ""
    settlement: Text = ""
    street: Text = ""
    house: Text = ""
    flat: Text | None = None


class ParentIn(_In):
    """Step 2: the parent, the address and the contacts."""
    model_config = example(role="mother", surname="Асанова", name="Айгүл", pin="11203199000123",
                           document_type="id_card", document_number="ID1234567", document_issued_on="2020-05-01",
                           phone="+996 555 123 456", email="aigul@example.kg",
                           address={"region": "41711000000000", "district": "41711210000000",
                                    "settlement": "41711000000001", "street": "Киевская", "house": "1"})
    role: Text = Field("", description="mother | father | guardian")
    surname: Text = ""
    name: Text = ""
    patronymic: Text | None = None
    pin: Text = ""
    document_type: Text = Field("", description="id_card | passport | other")
    document_number: Text = ""
    document_issued_on: Text = Field("", description="YYYY-MM-DD")
    phone: Text = Field("", description="a Kyrgyz (+996) or Kazakh (+7) mobile number, in any usual form")
    email: Text = ""
    address: AddressIn = AddressIn()


class CodeIn(_In):
    model_config = example(code="482913", locale="ky")
    code: Text = Field("", description="the six digits sent to the e-mail")
    locale: str | None = Field(None, max_length=5)


class ConfirmIn(_In):
    """Step 3: the category, the language of the group, the kindergartens best first."""
    model_config = example(category="general", language="ky", preferences=["bsk-12", "bsk-7"], agreement=True)
    category: Text = ""
    language: Text = ""
    preferences: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=10)
    agreement: bool | Text | None = Field(None, description="the parent agrees to the processing of the data")


def _as_answered(step: type[BaseModel], name: str, **more: Any) -> type[Answer]:
    """A step's body as a draft answers it: the same fields in the same
    order, each text or null; `more` gives a field another type in its
    place, or adds one after them."""
    fields: dict[str, Any] = {field: (str | None, None) for field in step.model_fields}
    fields.update({field: (kind | None, None) for field, kind in more.items()})
    return create_model(name, __base__=Answer, __module__=__name__, **fields)


DraftChild = _as_answered(ChildIn, "DraftChild", sex=str)   # the sex the PIN tells
DraftAddress = _as_answered(AddressIn, "DraftAddress")
DraftParent = _as_answered(ParentIn, "DraftParent", address=DraftAddress)


class ResolvedAddress(DraftAddress):
    lat: float | None = None
    lon: float | None = None
    names: dict[str, str] | None = Field(None, description="the address as one line in each language")


_DRAFT = {"country": "KG", "locale": "ky",
          "child": {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек", "patronymic": "Русланович",
                    "birth_date": "2024-06-15", "sex": "male"},
          "parent": {}, "address": {}, "email_verified": False, "code_sent_to": None, "next_step": "parent"}


class Draft(Answer):
    """An application not yet submitted: the steps done so far ({} for one not done) and the next."""
    model_config = example(_DRAFT)
    country: str | None = None
    locale: str | None = None
    child: DraftChild | None = None
    parent: DraftParent | None = None
    address: ResolvedAddress | None = None
    email_verified: bool | None = None
    code_sent_to: str | None = None
    next_step: str | None = Field(None, description="child | parent | contacts | confirm")


class NewDraft(Draft):
    model_config = example(_DRAFT, draft="dft_Xk2...9Qa", next_step="child", child={})
    draft: str = Field(description="the draft's token: it opens the draft, keep it secret")


class CodeSent(Answer):
    model_config = example(email="aigul@example.kg", expires_at="2027-03-01T09:10:00+06:00")
    email: str
    expires_at: Moment


class SubmittedApplication(Answer):
    model_config = example(application_id="app-1f3a", new_account=True)
    application_id: str
    new_account: bool = Field(description="an account was made: its activation link went to the e-mail")


# ------------------------------------------------------------------ accounts and sign-in

class TokenIn(_In):
    model_config = example(token="act_Q2x...7Lm")
    token: str = Field("", max_length=200)


class ActivateIn(_In):
    model_config = example(token="act_Q2x...7Lm", password="a long passphrase of my own")
    token: str = Field("", max_length=200)
    password: str = Field("", max_length=1000)


class EmailIn(_In):
    model_config = example(email="aigul@example.kg", locale="ky")
    email: str = Field("", max_length=300)
    locale: str | None = Field(None, max_length=5)


class LoginIn(_In):
    model_config = example(login="aigul@example.kg", password="a long passphrase of my own")
    login: str = Field("", max_length=300, description="the e-mail address or the parent's PIN")
    password: str = Field("", max_length=1000)


class SessionLoginIn(LoginIn):
    model_config = example(login="aigul@example.kg", password="a long passphrase of my own", kind="cookie")
    kind: str = Field("cookie", pattern="^(cookie|bearer)$")


class OidcStartIn(_In):
    model_config = example(redirect_uri="https://balalyk.example.kg/login/tunduk/callback")
    redirect_uri: str = Field(max_length=1000)


class OidcFinishIn(_In):
    model_config = example(state="st_7hQ...", code="SplxlOBeZQQYbYS6WxSbIA", kind="cookie")
    state: str = Field("", max_length=200)
    code: str = Field("", max_length=2000)
    kind: str = Field("cookie", pattern="^(cookie|bearer)$")


class ActivationFor(Answer):
    model_config = example(email="aigul@example.kg")
    email: str


class Activated(Answer):
    model_config = example(account_id="acc-9c1e")
    account_id: str


class Accepted(Answer):
    model_config = example(status="accepted")
    status: Literal["accepted"]


class Session(Answer):
    """A session: its token is the parent's bearer (or the portal's cookie)."""
    model_config = example(token="ses_5Jm...0Pz", account_id="acc-9c1e", expires_at="2027-03-01T21:00:00+06:00")
    token: str
    account_id: str
    expires_at: Moment


class SessionFound(Answer):
    model_config = example(account_id="acc-9c1e", kind="bearer", expires_at="2027-03-01T21:00:00+06:00")
    account_id: str
    kind: str
    expires_at: Moment


class AuthorizeAt(Answer):
    model_config = example(authorize_url="https://esi.tunduk.kg/authorize?response_type=code&client_id=kezek...")
    authorize_url: str


# ------------------------------------------------------------------ the parent's own

class Account(Answer):
    id: str
    email: str | None = None
    surname: str | None = None
    name: str | None = None
    patronymic: str | None = None
    phone: str | None = None
    locale: str | None = None
    tunduk_linked: bool | None = None


class ApplicationRecord(Answer):
    id: str
    child: DraftChild
    category: str | None = None
    language: str | None = None
    preferences: list[str] = Field(default_factory=list)
    address: ResolvedAddress | None = None
    status: str | None = None
    submitted_at: Moment | None = None


class Profile(Answer):
    """The parent's account and the applications made from it."""
    model_config = example(
        account={"id": "acc-9c1e", "email": "aigul@example.kg", "surname": "Асанова", "name": "Айгүл",
                 "patronymic": None, "phone": "+996555123456", "locale": "ky", "tunduk_linked": False},
        applications=[{"id": "app-1f3a", "child": _DRAFT["child"], "category": "general", "language": "ky",
                       "preferences": ["bsk-12", "bsk-7"], "status": "submitted",
                       "submitted_at": "2026-11-20T10:15:00+06:00"}])
    account: Account
    applications: list[ApplicationRecord]
