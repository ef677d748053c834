"""Registration use cases: load -> rules (domain.py) -> save + outbox rows, in
one transaction each. Secrets leave this module only once, to their owner:
the draft token and the session token to the caller, the e-mail code and the
activation link through the outbox to the notifications service, sealed
(sealing.py) so that no reader of the Kafka topics but that service sees them."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kezek.db import unit_of_work
from kezek.events import new_event
from services.registration import domain as d
from services.registration.address import AddressRegistry
from services.registration.models import (Account, ActivationToken, Application, Draft, LoginFailure,
                                          OidcRequest, Session as SessionRow, outbox)
from services.registration.oidc import OidcError, OidcProvider, new_pkce
from services.registration.sealing import Sealer

TIMEZONES = {"KG": ZoneInfo("Asia/Bishkek"), "KZ": ZoneInfo("Asia/Almaty")}
OIDC_REQUEST_TTL = timedelta(minutes=10)


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def refuse(field: str, code: str, **params) -> d.RegistrationRefused:
    return d.RegistrationRefused([d.FieldError(field, code, tuple((k, str(v)) for k, v in params.items()))])


class NotFound(Exception):
    pass


class Unauthorized(Exception):
    """Wrong login or password, a locked login, or an unknown session."""

    def __init__(self, code: str = "login_failed", until: datetime | None = None):
        super().__init__(code)
        self.code = code
        self.until = until


@dataclass(frozen=True)
class Submitted:
    application_id: str
    account_id: str
    new_account: bool


@dataclass(frozen=True)
class Identity:
    account_id: str
    kind: str
    expires_at: datetime


@dataclass(frozen=True)
class ImportAccount:
    """A parent's account as a previous system kept it."""
    id: str              # Kezek's id for it, derived from the old id (the queue entries' parent_id)
    email: str
    pin: str
    surname: str
    name: str
    phone: str
    patronymic: str | None = None
    locale: str = "ru"


@dataclass(frozen=True)
class ImportApplication:
    """A child's application as a previous system kept it, already in the
    queue under the same id (the queue's entry), for the parent's cabinet."""
    id: str              # the queue entry's id
    account_id: str      # the imported parent's account
    child_pin: str
    surname: str
    name: str
    birth_date: date
    category: str
    language: str
    queue_date: datetime
    patronymic: str | None = None
    preferences: tuple[str, ...] = ()


class RegistrationService:
    def __init__(self, sessions: sessionmaker[Session], registry: AddressRegistry, *,
                 code_key: bytes, country: str = "KG", public_url: str = "http://127.0.0.1:8000",
                 categories: tuple[str, ...] = d.DEFAULT_CATEGORIES,
                 oidc: OidcProvider | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 hasher: PasswordHasher | None = None):
        self.sessions = sessions
        self.registry = registry
        self.code_key = code_key
        self.sealer = Sealer(code_key)
        self.country = country
        self.public_url = public_url.rstrip("/")
        self.categories = categories
        self.oidc = oidc
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        # Verifying against this when the login is unknown keeps the answer
        # time the same, so timing does not reveal who has an account.
        self._dummy_hash = self.hasher.hash(d.new_token())

    def today(self) -> date:
        return self.clock().astimezone(TIMEZONES[self.country]).date()

    # --- drafts ------------------------------------------------------------

    def start_draft(self, locale: str = "ky") -> str:
        token = d.new_token()
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            s.add(Draft(token_hash=d.token_hash(token), country=self.country,
                        locale=locale if locale in d.LANGUAGES else "ky",
                        child={}, parent={}, address={}, created_at=now, updated_at=now))
        return token

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
            "code_sent_to": code.get("email"),
            "next_step": state.next_step(), "submitted": draft.application_id,
        }

    def get_draft(self, token: str) -> dict:
        with self.sessions() as s:
            draft = s.scalars(sa.select(Draft).where(Draft.token_hash == d.token_hash(token or ""))).one_or_none()
            if draft is None:
                raise NotFound("draft")
            return self._view(draft)

    def save_child(self, token: str, data: dict) -> dict:
        step = d.validate_child(data, self.country, self.today())
        with unit_of_work(self.sessions) as s:
            draft = self._draft(s, token)
            self._refuse_known_child(s, step.pin)
            draft.child = {"pin": step.pin, "surname": step.surname, "name": step.name,
                           "patronymic": step.patronymic, "birth_date": step.birth_date.isoformat(),
                           "sex": step.sex}
            draft.updated_at = self.clock()
            return self._view(draft)

    @staticmethod
    def _refuse_known_child(s: Session, pin: str) -> None:
        live = s.scalar(sa.select(sa.func.count()).select_from(Application)
                        .where(Application.child_pin == pin,
                               Application.status.not_in(("removed", "refused"))))
        if live:
            raise refuse("child.pin", "child_already_registered")

    def save_parent(self, token: str, data: dict) -> dict:
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
            return self._view(draft)

    def request_code(self, token: str, locale: str | None = None) -> dict:
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            draft = self._draft(s, token)
            email = draft.parent.get("email")
            if not email:
                raise refuse("parent.email", "required")
            previous = _code_from_json(draft.email_code)
            code = d.new_code()
            state = d.issue_code(previous, email, d.hash_code(code, email, self.code_key), now,
                                 field_="parent.email")
            draft.email_code = _code_to_json(state)
            draft.updated_at = now
            outbox.add(s, CODE_ISSUED, f"draft-{draft.token_hash[:16]}", self.sealer.sealed(CODE_ISSUED, {
                "email": email, "code": code, "expires_at": state.expires_at.isoformat(),
                "locale": locale or draft.locale,
            }, "code"))
            return {"email": email, "expires_at": state.expires_at.isoformat()}

    def verify_code(self, token: str, code: str) -> dict:
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
                failed = exc
            else:
                if state.email != draft.parent.get("email"):
                    raise refuse("code", "code_not_requested")
                draft.email_code = _code_to_json(state)
                draft.email_verified = state.email
                draft.updated_at = now
                view = self._view(draft)
        if failed is not None:
            raise failed
        return view

    def submit(self, token: str, data: dict) -> Submitted:
        confirm = d.validate_confirmation(data, self.categories)
        now = self.clock()
        try:
            with unit_of_work(self.sessions) as s:
                draft = self._draft(s, token)
                state = d.Draft(child=draft.child, parent=draft.parent, email_verified=draft.email_verified)
                step = state.next_step()
                if step != "confirm":
                    raise refuse("code" if step == "contacts" else step, "step_not_done")
                child, parent = draft.child, draft.parent
                self._refuse_known_child(s, child["pin"])
                account = s.scalars(sa.select(Account).where(Account.email == parent["email"])
                                    .with_for_update()).one_or_none()
                new_account = account is None
                if account is None:
                    account = Account(id=str(uuid.uuid4()), email=parent["email"], pin=parent["pin"],
                                      surname=parent["surname"], name=parent["name"],
                                      patronymic=parent.get("patronymic"), phone=parent["phone"],
                                      locale=draft.locale, created_at=now)
                    s.add(account)
                    s.flush()
                app_id = str(uuid.uuid4())
                s.add(Application(
                    id=app_id, account_id=account.id, country=draft.country, child_pin=child["pin"],
                    child_surname=child["surname"], child_name=child["name"],
                    child_patronymic=child.get("patronymic"),
                    child_birth_date=date.fromisoformat(child["birth_date"]), child_sex=child.get("sex"),
                    parent={k: v for k, v in parent.items() if k not in ("address", "phone", "email")},
                    address=draft.address, phone=parent["phone"], email=parent["email"],
                    category=confirm.category, language=confirm.language,
                    preferences=list(confirm.preferences), status="submitted", submitted_at=now))
                draft.application_id = app_id
                draft.updated_at = now
                s.flush()
                outbox.add(s, "application.submitted.v1", app_id, {
                    "application_id": app_id, "parent_id": account.id, "country": draft.country,
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
                    "application_id": app_id, "parent_id": account.id, "locale": draft.locale,
                    "email": parent["email"], "phone": parent["phone"], "child_name": child["name"],
                    "queue_date": now.isoformat(), "category": confirm.category,
                }, time=now)
                if account.password_hash is None:
                    self._issue_activation(s, account, now)
        except IntegrityError:
            # Two parents submitting the same child at the same moment: the
            # unique index decides, the loser is told why.
            raise refuse("child.pin", "child_already_registered") from None
        return Submitted(app_id, account.id, new_account)

    # --- accounts ------------------------------------------------------------

    def import_accounts(self, accounts: list[ImportAccount], *,
                        dry_run: bool = False) -> list[bool | d.RegistrationRefused]:
        """Parents' accounts moved from a previous system, in one transaction:
        created without a password and not activated; the parent asks for an
        activation link by e-mail (`resend_activation`), so nothing is sent
        to hundreds of thousands of parents at once. Per account, in order:
        True if created, False if it was imported before, or the refusal
        (the others go on). `dry_run`: check only, write nothing."""
        for attempt in range(3):
            try:
                if dry_run:
                    with self.sessions() as s:   # closed without a commit
                        return self._import_accounts(s, accounts)
                with unit_of_work(self.sessions) as s:
                    return self._import_accounts(s, accounts)
            except IntegrityError:
                # An account with one of these e-mails was created meanwhile:
                # nothing of this batch was written; checked again, it is seen.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _import_accounts(self, s: Session, accounts: list[ImportAccount]) -> list[bool | d.RegistrationRefused]:
        now = self.clock()
        today = now.astimezone(TIMEZONES.get(self.country, UTC)).date()
        out: list[bool | d.RegistrationRefused] = []
        checked: list[d.ImportedAccount | None] = []
        for a in accounts:
            try:
                checked.append(d.validate_imported_account(
                    {"surname": a.surname, "name": a.name, "patronymic": a.patronymic, "pin": a.pin,
                     "phone": a.phone, "email": a.email}, self.country, today))
            except d.RegistrationRefused as e:
                checked.append(None)
                out.append(e)
                continue
            out.append(True)
        ids = [a.id for a in accounts]
        emails = [c.email for c in checked if c is not None]
        by_id, by_email = {}, {}
        for i in range(0, len(ids), 5000):
            by_id.update(s.execute(sa.select(Account.id, Account.email).where(Account.id.in_(ids[i:i + 5000]))).all())
        for i in range(0, len(emails), 5000):
            by_email.update(s.execute(sa.select(Account.email, Account.id)
                                      .where(Account.email.in_(emails[i:i + 5000]))).all())
        rows = []
        for i, (a, c) in enumerate(zip(accounts, checked)):
            if c is None:
                continue
            if len(a.id) > 36:
                out[i] = refuse("parent.id", "id_too_long")
            elif a.id in by_id:
                out[i] = False if by_id[a.id] == c.email else refuse("parent.id", "account_id_taken")
            elif c.email in by_email:  # another account has this e-mail (in Kezek, or earlier in the batch)
                out[i] = refuse("parent.email", "email_taken")
            else:
                by_id[a.id], by_email[c.email] = c.email, a.id
                rows.append(dict(id=a.id, email=c.email, password_hash=None, pin=c.pin, surname=c.surname,
                                 name=c.name, patronymic=c.patronymic, phone=c.phone, locale=a.locale,
                                 created_at=now, activated_at=None))
        if rows:
            s.execute(sa.insert(Account.__table__), rows)
        return out

    def import_applications(self, applications: list[ImportApplication], *, dry_run: bool = False,
                            accounts_to_come: frozenset[str] = frozenset()) -> list[bool | d.RegistrationRefused]:
        """Children's applications moved from a previous system, for their
        parents' cabinets, in one transaction: the same ids as the queue's
        entries, linked to the imported parents' accounts. Nothing is sent:
        no application.submitted (the queue has the entry from the import;
        nothing may be queued twice); application.received, marked
        `imported`, gives the parent's contacts to the services that tell
        the parent of the referral's deadlines (no receipt is sent). Per application, in
        order: True if recorded, False if recorded before, or the refusal
        (the others go on). `dry_run`: check only, write nothing;
        `accounts_to_come`: accounts the same dry run would have created."""
        for attempt in range(3):
            try:
                if dry_run:
                    with self.sessions() as s:   # closed without a commit
                        return self._import_applications(s, applications, accounts_to_come, write=False)
                with unit_of_work(self.sessions) as s:
                    return self._import_applications(s, applications, frozenset(), write=True)
            except IntegrityError:
                # A parent submitted one of these children meanwhile: nothing of
                # this batch was written; checked again, that child is refused.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _import_applications(self, s: Session, applications: list[ImportApplication],
                             accounts_to_come: frozenset[str], write: bool) -> list[bool | d.RegistrationRefused]:
        today = self.today()
        out: list[bool | d.RegistrationRefused] = []
        checked: list[d.ChildStep | None] = []
        for a in applications:
            try:
                checked.append(d.validate_imported_child(
                    {"pin": a.child_pin, "surname": a.surname, "name": a.name, "patronymic": a.patronymic,
                     "birth_date": a.birth_date}, self.country, today))
                out.append(True)
            except d.RegistrationRefused as e:
                checked.append(None)
                out.append(e)

        def chunks(values: list[str]):
            values = list(dict.fromkeys(values))
            return (values[i:i + 5000] for i in range(0, len(values), 5000))

        ids = [a.id for a in applications]
        pins = [c.pin for c in checked if c is not None]
        known, accounts, live = {}, {}, {}
        for part in chunks(ids):
            known.update((r.id, (r.account_id, r.child_pin)) for r in s.execute(
                sa.select(Application.id, Application.account_id, Application.child_pin)
                .where(Application.id.in_(part))))
        for part in chunks([a.account_id for a in applications]):
            accounts.update((r.id, r) for r in s.scalars(sa.select(Account).where(Account.id.in_(part))))
        for part in chunks(pins):
            live.update(s.execute(sa.select(Application.child_pin, Application.id).where(
                Application.child_pin.in_(part), Application.status.not_in(("removed", "refused")))).all())
        rows = []
        for i, (a, c) in enumerate(zip(applications, checked)):
            if c is None:
                continue
            if len(a.id) > 36:
                out[i] = refuse("application.id", "id_too_long")
            elif a.id in known:
                out[i] = False if known[a.id] == (a.account_id, c.pin) else refuse("application.id",
                                                                                   "application_id_taken")
            elif a.account_id not in accounts and a.account_id not in accounts_to_come:
                out[i] = refuse("parent.id", "account_unknown")
            elif c.pin in live:   # in Kezek already, or earlier in the batch
                out[i] = refuse("child.pin", "child_already_registered")
            else:
                known[a.id], live[c.pin] = (a.account_id, c.pin), a.id
                acc = accounts.get(a.account_id)
                rows.append(dict(
                    id=a.id, account_id=a.account_id, country=self.country, child_pin=c.pin,
                    child_surname=c.surname, child_name=c.name, child_patronymic=c.patronymic,
                    child_birth_date=c.birth_date, child_sex=c.sex,
                    parent={"surname": acc.surname, "name": acc.name, "patronymic": acc.patronymic,
                            "pin": acc.pin} if acc else {},
                    # The old portal's export has no address: the cabinet has
                    # no map for this child until one is known.
                    address={}, phone=acc.phone if acc else "", email=acc.email if acc else "",
                    category=a.category, language=a.language, preferences=list(a.preferences),
                    status="submitted", submitted_at=a.queue_date))
        if rows and write:
            s.execute(sa.insert(Application.__table__), rows)
            s.execute(sa.insert(outbox.table), [self._imported_received(r, accounts.get(r["account_id"]))
                                                for r in rows])
        return out

    def _imported_received(self, row: dict, account: Account | None) -> dict:
        now = self.clock()
        data = {"application_id": row["id"], "parent_id": row["account_id"],
                "locale": account.locale if account else "ru", "child_name": row["child_name"],
                "queue_date": row["submitted_at"].isoformat(), "category": row["category"], "imported": True}
        if row["email"]:
            data["email"] = row["email"]
        if row["phone"]:
            data["phone"] = row["phone"]
        event = new_event("application.received.v1", row["id"], data, source=outbox.source, time=now)
        return {"event_id": event.id, "type": event.type, "subject": event.subject, "payload": event.to_json(),
                "created_at": now}

    def _issue_activation(self, s: Session, account: Account, now: datetime, locale: str | None = None) -> None:
        token = d.new_token()
        expires = now + d.ACTIVATION_TTL
        s.add(ActivationToken(token_hash=d.token_hash(token), account_id=account.id, expires_at=expires))
        outbox.add(s, ACTIVATION_ISSUED, account.id, self.sealer.sealed(ACTIVATION_ISSUED, {
            "parent_id": account.id, "email": account.email,
            "activation_url": f"{self.public_url}/activate?token={token}",
            "expires_at": expires.isoformat(), "locale": locale or account.locale,
        }, "activation_url"), time=now)

    def resend_activation(self, email: str, locale: str | None = None) -> None:
        """A new link for an account not yet activated (an imported parent's
        first one too); silent otherwise, and silent when the account had a
        link a moment ago (d.activation_link_allowed), so the answer tells
        nobody who has an account. A malformed address is refused, naming
        the field. `locale`: the language of the e-mail, if the parent asked
        in one."""
        address = d.normalize_email(email, "email")
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            # Locked: two requests at once cannot both pass the throttle.
            accounts = s.scalars(sa.select(Account).where(sa.func.lower(Account.email) == address.lower(),
                                                          Account.password_hash.is_(None))
                                 .with_for_update()).all()
            for account in accounts:
                issued = [aware(t) - d.ACTIVATION_TTL for t in s.scalars(
                    sa.select(ActivationToken.expires_at).where(
                        ActivationToken.account_id == account.id,
                        ActivationToken.expires_at > now - timedelta(hours=1) + d.ACTIVATION_TTL))]
                if d.activation_link_allowed(issued, now):
                    self._issue_activation(s, account, now,
                                           locale if locale in d.LANGUAGES else None)

    def check_activation(self, token: str) -> str:
        with self.sessions() as s:
            row = s.get(ActivationToken, d.token_hash(token or ""))
            if row is None or row.used_at is not None or aware(row.expires_at) <= self.clock():
                raise refuse("token", "activation_invalid")
            return s.get(Account, row.account_id).email

    def activate(self, token: str, password: str) -> str:
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            row = s.scalars(sa.select(ActivationToken)
                            .where(ActivationToken.token_hash == d.token_hash(token or ""))
                            .with_for_update()).one_or_none()
            if row is None or row.used_at is not None or aware(row.expires_at) <= now:
                raise refuse("token", "activation_invalid")
            account = s.get(Account, row.account_id)
            d.check_new_password(password, account.email)
            account.password_hash = self.hasher.hash(password)
            account.activated_at = account.activated_at or now
            row.used_at = now
            # Every other link of this account dies with this one.
            s.execute(sa.update(ActivationToken).where(ActivationToken.account_id == account.id,
                                                       ActivationToken.used_at.is_(None)).values(used_at=now))
            return account.id

    def login(self, login: str, password: str, kind: str = "cookie") -> tuple[str, Identity]:
        login = (login or "").strip()
        if not login:
            raise refuse("login", "required")
        if not password:
            raise refuse("password", "required")
        now = self.clock()
        key = login.lower()
        with unit_of_work(self.sessions) as s:
            failures = s.scalars(sa.select(LoginFailure.at).where(
                LoginFailure.login == key, LoginFailure.at > now - d.LOGIN_WINDOW - d.LOGIN_LOCKOUT)).all()
            until = d.login_locked_until([aware(t) for t in failures], now)
            if until is not None:
                raise Unauthorized("login_locked", until)
            account = s.scalars(sa.select(Account).where(sa.func.lower(Account.email) == key)).one_or_none()
            ok = False
            try:
                ok = self.hasher.verify(account.password_hash if account and account.password_hash
                                        else self._dummy_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
            if ok and account is not None and account.password_hash is not None:
                s.execute(sa.delete(LoginFailure).where(LoginFailure.login == key))
                if self.hasher.check_needs_rehash(account.password_hash):
                    account.password_hash = self.hasher.hash(password)
                return self._open_session(s, account.id, kind, "password", now)
            s.add(LoginFailure(login=key, at=now))
        raise Unauthorized("login_failed")

    def _open_session(self, s: Session, account_id: str, kind: str, via: str,
                      now: datetime) -> tuple[str, Identity]:
        token = d.new_token()
        expires = now + d.SESSION_TTL
        s.add(SessionRow(token_hash=d.token_hash(token), account_id=account_id,
                         kind="bearer" if kind == "bearer" else "cookie", via=via,
                         created_at=now, expires_at=expires))
        return token, Identity(account_id, kind, expires)

    def identify(self, token: str) -> Identity:
        with self.sessions() as s:
            row = s.get(SessionRow, d.token_hash(token or ""))
            if row is None or row.revoked_at is not None or aware(row.expires_at) <= self.clock():
                raise Unauthorized("session_invalid")
            return Identity(row.account_id, row.kind, aware(row.expires_at))

    def logout(self, token: str) -> None:
        with unit_of_work(self.sessions) as s:
            row = s.get(SessionRow, d.token_hash(token or ""))
            if row is not None and row.revoked_at is None:
                row.revoked_at = self.clock()

    def profile(self, account_id: str) -> dict:
        """The parent's own data and children. Only ever by the account id of
        the session: there is no way to ask for another family's."""
        with self.sessions() as s:
            account = s.get(Account, account_id)
            if account is None:
                raise NotFound("account")
            apps = s.scalars(sa.select(Application).where(Application.account_id == account_id)
                             .order_by(Application.submitted_at)).all()
            return {
                "account": {"id": account.id, "email": account.email, "surname": account.surname,
                            "name": account.name, "patronymic": account.patronymic,
                            "phone": account.phone, "locale": account.locale,
                            "tunduk_linked": account.tunduk_sub is not None},
                "applications": [{
                    "id": a.id, "child": {"pin": a.child_pin, "surname": a.child_surname,
                                          "name": a.child_name, "patronymic": a.child_patronymic,
                                          "birth_date": a.child_birth_date.isoformat(), "sex": a.child_sex},
                    "category": a.category, "language": a.language, "preferences": a.preferences,
                    "address": a.address, "status": a.status,
                    "submitted_at": aware(a.submitted_at).isoformat(),
                } for a in apps],
            }

    def owns_application(self, account_id: str, application_id: str) -> bool:
        with self.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(Application).where(
                Application.id == application_id, Application.account_id == account_id)) == 1

    def mark_removed(self, application_id: str) -> None:
        """The child left the queue: the PIN may be registered again, with a
        new queue date (DOMAIN.md section 3)."""
        with unit_of_work(self.sessions) as s:
            self._set_status(s, application_id, "removed")

    @staticmethod
    def _set_status(s: Session, application_id: str, status: str) -> None:
        app = s.get(Application, application_id)
        if app is not None and app.status not in ("removed", "refused"):
            app.status = status

    def handle_queue_event(self, s: Session, event) -> None:
        """The queue's word on an application, in the consumer's transaction:
        removed (by the parent or an administrator) or refused (the child
        was already in the queue, e.g. registered in the old system)."""
        if event.type == "application.removed.v1":
            self._set_status(s, event.data["application_id"], "removed")
        elif event.type == "application.refused.v1":
            self._set_status(s, event.data["application_id"], "refused")

    # --- secrets in sent events ------------------------------------------------

    def scrub_sent_secrets(self) -> int:
        """The e-mail code and the activation link travel to the notifications
        service in events, sealed; once the relay has sent them, the outbox
        keeps them no longer, not even sealed (the database holds secrets
        only as hashes, and a leaked secret key must not open old rows)."""
        table = outbox.table
        with unit_of_work(self.sessions) as s:
            rows = s.execute(sa.select(table.c.seq, table.c.payload).where(
                table.c.type.in_(SECRET_EVENTS), table.c.sent_at.is_not(None),
                ~table.c.payload.contains(REDACTED))).all()
            for seq, payload in rows:
                s.execute(table.update().where(table.c.seq == seq).values(payload=redact(payload)))
        return len(rows)

    # --- single sign-on ------------------------------------------------------

    def oidc_start(self, redirect_uri: str) -> str:
        if self.oidc is None:
            raise refuse("provider", "sso_unavailable")
        state, nonce = d.new_token(), d.new_token()
        verifier, challenge = new_pkce()
        with unit_of_work(self.sessions) as s:
            s.add(OidcRequest(state=state, nonce=nonce, code_verifier=verifier, redirect_uri=redirect_uri,
                              created_at=self.clock()))
        return self.oidc.authorize_url(state=state, nonce=nonce, code_challenge=challenge,
                                       redirect_uri=redirect_uri)

    def oidc_finish(self, state: str, code: str, kind: str = "cookie") -> tuple[str, Identity]:
        if self.oidc is None:
            raise refuse("provider", "sso_unavailable")
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            req = s.scalars(sa.select(OidcRequest).where(OidcRequest.state == (state or ""))
                            .with_for_update()).one_or_none()
            if req is None or req.used_at is not None or now - aware(req.created_at) > OIDC_REQUEST_TTL:
                raise refuse("state", "sso_failed")
            req.used_at = now
            verifier, nonce, redirect_uri = req.code_verifier, req.nonce, req.redirect_uri
        try:
            who = self.oidc.exchange(code=code, code_verifier=verifier, redirect_uri=redirect_uri, nonce=nonce)
        except (OidcError, KeyError) as exc:
            raise refuse("provider", "sso_failed") from exc
        with unit_of_work(self.sessions) as s:
            account = s.scalars(sa.select(Account).where(Account.tunduk_sub == who.sub)).one_or_none()
            if account is None and who.pin:
                # The first sign-in links the account whose parent PIN the
                # identity provider vouches for.
                account = s.scalars(sa.select(Account).where(Account.pin == who.pin)
                                    .order_by(Account.created_at)).first()
                if account is not None:
                    account.tunduk_sub = who.sub
                    account.activated_at = account.activated_at or now
            if account is None:
                raise refuse("pin", "sso_no_application")
            return self._open_session(s, account.id, kind, "tunduk", now)


CODE_ISSUED = "registration.email_code_issued.v1"
ACTIVATION_ISSUED = "account.activation_issued.v1"
SECRET_EVENTS = (CODE_ISSUED, ACTIVATION_ISSUED)
REDACTED = "[redacted]"


def redact(payload: str) -> str:
    event = json.loads(payload)
    data = event.get("data", {})
    if "sealed" in data:
        data["sealed"] = {field: REDACTED for field in data["sealed"]}
    if "code" in data:
        data["code"] = REDACTED
    if "activation_url" in data:
        data["activation_url"] = data["activation_url"].split("?", 1)[0] + "?token=" + REDACTED
    return json.dumps(event, ensure_ascii=False)


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
