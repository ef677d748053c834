"""The application step by step (DOMAIN.md section 2): a draft saved after
every step, the e-mail code, and the submission that writes the application,
the account and their events in one transaction.

A draft is opened by its token (a 30-day cookie of the portal) until it is
submitted; then its personal data is wiped and the token opens nothing: only
the signed-in parent sees the application."""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kezek.db import unit_of_work
from kezek.sealing import ring_of
from services.registration import domain as d
from services.registration import limits as lim
from services.registration.models import CLOSED, Account, Application, CodeSend, Draft, outbox
from services.registration.usecases.context import ITSELF, Caller, Context, NotFound, aware, refuse

CODE_ISSUED = "registration.email_code_issued.v1"


@dataclass(frozen=True)
class Submitted:
    application_id: str
    account_id: str
    new_account: bool


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def draft_subject(token: str) -> str:
    return f"draft:{d.token_hash(token or '')[:16]}"


class Drafts(Context):
    def start_draft(self, locale: str = "ky", *, by: Caller = ITSELF) -> str:
        return self.new_draft(locale, by=by)["draft"]

    def new_draft(self, locale: str = "ky", *, by: Caller = ITSELF) -> dict:
        """A new draft: its token (`draft`) and its data, as `get_draft`
        would read them back, from the one transaction that wrote it."""
        token = d.new_token()
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            draft = Draft(token_hash=d.token_hash(token), country=self.country,
                          locale=locale if locale in d.LANGUAGES else "ky",
                          child={}, parent={}, address={}, created_at=now, updated_at=now)
            s.add(draft)
            self.audit(s, by, "draft.started", draft_subject(token))
            return {"draft": token, **self._view(draft)}

    def _draft(self, s: Session, token: str, *, for_update: bool = True) -> Draft:
        q = sa.select(Draft).where(Draft.token_hash == d.token_hash(token or ""))
        if for_update:
            q = q.with_for_update()
        draft = s.scalars(q).one_or_none()
        if draft is None:
            raise NotFound("draft")
        if draft.application_id:
            raise refuse("draft", "draft_already_submitted")
        return draft

    @staticmethod
    def _view(draft: Draft) -> dict:
        state = d.Draft(child=draft.child, parent=draft.parent, email_verified=draft.email_verified)
        code = draft.email_code or {}
        return {
            "country": draft.country, "locale": draft.locale, "child": draft.child,
            "parent": draft.parent, "address": draft.address,
            "email_verified": bool(draft.email_verified) and draft.email_verified == draft.parent.get("email"),
            "code_sent_to": code.get("email"), "next_step": state.next_step(),
        }

    def get_draft(self, token: str) -> dict:
        """The draft's data; a submitted draft is refused (its data is the
        signed-in parent's now, and is wiped from the draft)."""
        with self.sessions() as s:
            return self._view(self._draft(s, token, for_update=False))

    def save_child(self, token: str, data: dict, *, by: Caller = ITSELF) -> dict:
        step = d.validate_child(data, self.country, self.today())
        with unit_of_work(self.sessions) as s:
            draft = self._draft(s, token)
            self._refuse_known_child(s, step.pin)
            draft.child = {"pin": step.pin, "surname": step.surname, "name": step.name,
                           "patronymic": step.patronymic, "birth_date": step.birth_date.isoformat(),
                           "sex": step.sex}
            draft.updated_at = self.clock()
            self.audit(s, by, "draft.child_saved", draft_subject(token))
            return self._view(draft)

    @staticmethod
    def _refuse_known_child(s: Session, pin: str) -> None:
        live = s.scalar(sa.select(sa.func.count()).select_from(Application)
                        .where(Application.child_pin_hash.in_(ring_of(s).lookups("pin", pin)),
                               Application.status.not_in(CLOSED)))
        if live:
            raise refuse("child.pin", "child_already_registered")

    def save_parent(self, token: str, data: dict, *, by: Caller = ITSELF) -> dict:
        with unit_of_work(self.sessions) as s:
            draft = self._draft(s, token)
            if not draft.child:
                raise refuse("child", "step_not_done")
            step = d.validate_parent(data, self.country, self.today(), child_pin=draft.child.get("pin"))
            resolved = self.registry.resolve(step.address)
            draft.parent = {
                "role": step.role, "surname": step.surname, "name": step.name, "patronymic": step.patronymic,
                "pin": step.pin, "document_type": step.document_type, "document_number": step.document_number,
                "document_issued_on": step.document_issued_on.isoformat(), "phone": step.phone,
                "email": step.email,
                "address": {"region": resolved.region.code, "district": resolved.district.code,
                            "settlement": resolved.settlement.code, "street": resolved.street.code,
                            "house": step.address.house, "flat": step.address.flat},
            }
            draft.address = resolved.as_dict()
            draft.updated_at = self.clock()
            self.audit(s, by, "draft.parent_saved", draft_subject(token))
            return self._view(draft)

    def request_code(self, token: str, locale: str | None = None, *, by: Caller = ITSELF) -> dict:
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            draft = self._draft(s, token)
            email = draft.parent.get("email")
            if not email:
                raise refuse("parent.email", "required")
            self._check_code_limits(s, email, by.client, now)
            previous = _code_from_json(draft.email_code)
            code = d.new_code()
            state = d.issue_code(previous, email, d.hash_code(code, email, self.code_key), now,
                                 field_="parent.email")
            draft.email_code = _code_to_json(state)
            draft.updated_at = now
            s.add(CodeSend(address_hash=_hash(email.lower()), client_hash=_hash(by.client), at=now))
            outbox.add(s, CODE_ISSUED, f"draft-{draft.token_hash[:16]}", self.sealer.sealed(CODE_ISSUED, {
                "email": email, "code": code, "expires_at": state.expires_at.isoformat(),
                "locale": locale or draft.locale,
            }, "code"))
            self.audit(s, by, "draft.code_sent", draft_subject(token))
            return {"email": email, "expires_at": state.expires_at.isoformat()}

    def _check_code_limits(self, s: Session, email: str, client: str, now: datetime) -> None:
        hour_ago = now - timedelta(hours=1)
        if s.get_bind().dialect.name == "postgresql":
            # Two drafts sending to one address at once are counted one after
            # the other (SQLite writers are serial already).
            s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                      {"k": "code:" + _hash(email.lower())})
        to_address = [aware(t) for t in s.scalars(sa.select(CodeSend.at).where(
            CodeSend.address_hash == _hash(email.lower()), CodeSend.at > hour_ago))]
        from_client = [aware(t) for t in s.scalars(sa.select(CodeSend.at).where(
            CodeSend.client_hash == _hash(client), CodeSend.at > hour_ago))]
        refusal = lim.code_send_refusal(to_address, from_client, now, self.limits)
        if refusal is not None:
            raise d.RegistrationRefused([refusal])

    def verify_code(self, token: str, code: str, *, by: Caller = ITSELF) -> dict:
        now = self.clock()
        failed: d.CodeAttemptFailed | None = None
        with unit_of_work(self.sessions) as s:
            draft = self._draft(s, token)
            state = _code_from_json(draft.email_code)
            email = state.email if state else ""
            try:
                state = d.check_code(state, d.hash_code((code or "").strip(), email, self.code_key), code, now)
            except d.CodeAttemptFailed as exc:
                # The wrong attempt must count even though we refuse: save, then raise.
                draft.email_code = _code_to_json(exc.state)
                self.audit(s, by, "draft.code_verified", draft_subject(token), outcome="refused")
                failed = exc
            else:
                if state.email != draft.parent.get("email"):
                    raise refuse("code", "code_not_requested")
                draft.email_code = _code_to_json(state)
                draft.email_verified = state.email
                draft.updated_at = now
                self.audit(s, by, "draft.code_verified", draft_subject(token))
                view = self._view(draft)
        if failed is not None:
            raise failed
        return view

    def submit(self, token: str, data: dict, *, by: Caller = ITSELF) -> Submitted:
        confirm = d.validate_confirmation(data, self.categories)
        if self.kindergartens is not None:
            unknown = self.kindergartens.unknown(list(confirm.preferences))
            if unknown:
                raise refuse("preferences", "kindergarten_unknown", kindergarten=unknown[0])
        now = self.clock()
        try:
            with unit_of_work(self.sessions) as s:
                draft = self._draft(s, token)
                step = d.Draft(child=draft.child, parent=draft.parent,
                               email_verified=draft.email_verified).next_step()
                if step != "confirm":
                    raise refuse("code" if step == "contacts" else step, "step_not_done")
                self._refuse_known_child(s, draft.child["pin"])
                account, new_account = self._account_for(s, draft, now)
                app_id = str(uuid.uuid4())
                s.add(_application(app_id, account.id, draft, confirm, now))
                self._submitted_events(s, app_id, account.id, draft, confirm, now)
                if account.password_hash is None:
                    self._issue_activation(s, account, now, by=by)
                self.audit(s, by, "application.submitted", f"application:{app_id}", account=account.id,
                           draft=draft_subject(token), new_account=new_account)
                # The application holds the data now: the draft keeps none,
                # so its token opens nothing any more.
                draft.application_id = app_id
                draft.child, draft.parent, draft.address = {}, {}, {}
                draft.email_code, draft.email_verified = None, None
                draft.updated_at = now
        except IntegrityError:
            # Two parents submitting the same child at the same moment: the
            # unique index decides, the loser is told why.
            raise refuse("child.pin", "child_already_registered") from None
        return Submitted(app_id, account.id, new_account)

    def _account_for(self, s: Session, draft: Draft, now: datetime) -> tuple[Account, bool]:
        parent = draft.parent
        same_email = Account.email_hash.in_(ring_of(s).lookups("email", parent["email"]))
        account = s.scalars(sa.select(Account).where(same_email).with_for_update()).one_or_none()
        if account is not None:
            return account, False
        account = Account(id=str(uuid.uuid4()), email=parent["email"], pin=parent["pin"],
                          surname=parent["surname"], name=parent["name"], patronymic=parent.get("patronymic"),
                          phone=parent["phone"], locale=draft.locale, created_at=now)
        s.add(account)
        s.flush()
        return account, True

    @staticmethod
    def _submitted_events(s: Session, app_id: str, account_id: str, draft: Draft, confirm: d.ConfirmStep,
                          now: datetime) -> None:
        child, parent = draft.child, draft.parent
        s.flush()
        outbox.add(s, "application.submitted.v1", app_id, {
            "application_id": app_id, "parent_id": account_id, "country": draft.country,
            "child_pin": child["pin"], "child_birth_date": child["birth_date"],
            "child_sex": child.get("sex"), "child_surname": child["surname"],
            "child_name": child["name"], "child_patronymic": child.get("patronymic"),
            "category": confirm.category, "queue_date": now.isoformat(),
            "language": confirm.language, "preferences": list(confirm.preferences),
            "region": draft.address.get("region", ""), "district": draft.address.get("district", ""),
            "lat": draft.address.get("lat"), "lon": draft.address.get("lon"),
            "locale": draft.locale,
        }, time=now)
        outbox.add(s, "application.received.v1", app_id, {
            "application_id": app_id, "parent_id": account_id, "locale": draft.locale,
            "email": parent["email"], "phone": parent["phone"], "child_name": child["name"],
            "queue_date": now.isoformat(), "category": confirm.category,
        }, time=now)


def _application(app_id: str, account_id: str, draft: Draft, confirm: d.ConfirmStep, now: datetime) -> Application:
    child, parent = draft.child, draft.parent
    return Application(
        id=app_id, account_id=account_id, country=draft.country, child_pin=child["pin"],
        child_surname=child["surname"], child_name=child["name"], child_patronymic=child.get("patronymic"),
        child_birth_date=date.fromisoformat(child["birth_date"]), child_sex=child.get("sex"),
        parent={k: v for k, v in parent.items() if k not in ("address", "phone", "email")},
        address=draft.address, phone=parent["phone"], email=parent["email"],
        category=confirm.category, language=confirm.language,
        preferences=list(confirm.preferences), status="submitted", submitted_at=now)


def _code_to_json(state: d.EmailCode | None) -> dict | None:
    if state is None:
        return None
    return {"email": state.email, "code_hash": state.code_hash, "issued_at": state.issued_at.isoformat(),
            "attempts": state.attempts, "sends": [t.isoformat() for t in state.sends],
            "verified_at": state.verified_at.isoformat() if state.verified_at else None}


def _code_from_json(raw: dict | None) -> d.EmailCode | None:
    if not raw:
        return None
    return d.EmailCode(email=raw["email"], code_hash=raw["code_hash"],
                       issued_at=datetime.fromisoformat(raw["issued_at"]), attempts=raw["attempts"],
                       sends=tuple(datetime.fromisoformat(t) for t in raw["sends"]),
                       verified_at=datetime.fromisoformat(raw["verified_at"]) if raw["verified_at"] else None)
