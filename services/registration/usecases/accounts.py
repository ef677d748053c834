"""Parents' accounts: the activation link, sign-in (password with throttling,
or the national identity provider), sessions, and what the cabinet shows of
the account. A session's secret stays here: the gateway looks it up once per
request and acts for the account it names."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kezek.db import unit_of_work
from kezek.sealing import ring_of
from kezek.trust import Principal, parent_principal
from services.registration import domain as d
from services.registration import limits as lim
from services.registration.models import (
    CLOSED,
    Account, ActivationToken, Application, CodeSend, OidcRequest, Session as SessionRow, SignInClient, SignInFailure,
    outbox,
)
from services.registration.oidc import OidcError, new_verifier
from services.registration.usecases.context import ITSELF, Caller, Context, Unauthorized, aware, family_of, refuse

ACTIVATION_ISSUED = "account.activation_issued.v1"
SIGN_IN_FAILED = "account.sign_in_failed.v1"
OIDC_REQUEST_TTL = timedelta(minutes=10)
USUAL_CLIENTS_KEPT = 10


@dataclass(frozen=True)
class Identity:
    account_id: str
    kind: str
    expires_at: datetime


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def verified_parent(account_id: str) -> Principal:
    """A parent this service verified itself (a password, a provider's word)."""
    p = parent_principal(account_id)
    return Principal(actor=p.actor, role=p.role, via="registration", family=p.family)


class Accounts(Context):
    # --- activation ---------------------------------------------------------

    def _issue_activation(self, s: Session, account: Account, now: datetime, locale: str | None = None,
                          *, by: Caller = ITSELF) -> None:
        token = d.new_token()
        expires = now + d.ACTIVATION_TTL
        s.add(ActivationToken(token_hash=d.token_hash(token), account_id=account.id, expires_at=expires))
        outbox.add(s, ACTIVATION_ISSUED, account.id, self.sealer.sealed(ACTIVATION_ISSUED, {
            "parent_id": account.id, "email": account.email,
            "activation_url": f"{self.public_url}/activate?token={token}",
            "expires_at": expires.isoformat(), "locale": locale or account.locale,
        }, "activation_url"), time=now)
        self.audit(s, by, "account.activation_issued", f"account:{account.id}")

    def resend_activation(self, email: str, locale: str | None = None, *, by: Caller = ITSELF) -> None:
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
            accounts = s.scalars(sa.select(Account).where(
                Account.email_hash.in_(ring_of(s).lookups("email", address)),
                Account.password_hash.is_(None)).with_for_update()).all()
            for account in accounts:
                issued = [aware(t) - d.ACTIVATION_TTL for t in s.scalars(
                    sa.select(ActivationToken.expires_at).where(
                        ActivationToken.account_id == account.id,
                        ActivationToken.expires_at > now - timedelta(hours=1) + d.ACTIVATION_TTL))]
                if d.activation_link_allowed(issued, now):
                    self._issue_activation(s, account, now, locale if locale in d.LANGUAGES else None, by=by)

    def check_activation(self, token: str) -> str:
        with self.sessions() as s:
            row = s.get(ActivationToken, d.token_hash(token or ""))
            if row is None or row.used_at is not None or aware(row.expires_at) <= self.clock():
                raise refuse("token", "activation_invalid")
            return s.get(Account, row.account_id).email

    def activate(self, token: str, password: str, *, by: Caller = ITSELF) -> str:
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
            self.audit(s, by, "account.activated", f"account:{account.id}")
            return account.id

    # --- sign-in --------------------------------------------------------------

    def login(self, login: str, password: str, kind: str = "cookie", *, by: Caller = ITSELF) -> tuple[str, Identity]:
        """Signs in with a password. Wrong passwords slow further attempts
        (services/registration/limits.py); nothing ever locks the account."""
        login = (login or "").strip()
        if not login:
            raise refuse("login", "required")
        if not password:
            raise refuse("password", "required")
        now = self.clock()
        key, client = login.lower()[:254], by.client or "-"
        failure: Unauthorized
        with unit_of_work(self.sessions) as s:
            rows = self._failure_rows(s, key, client)
            now = self.clock()   # read under the rows' lock: an earlier moment would see a later failure ahead of it
            counts = lim.SignInCounts(*(lim.Failures(r.count, aware(r.last_at)) for r in rows))
            account = s.scalars(sa.select(Account).where(Account.email_hash.in_(ring_of(s).lookups("email", key)))
                                ).one_or_none()
            usual = account is not None and s.get(SignInClient, (account.id, _sha(client))) is not None
            wait = lim.sign_in_wait(counts, now, usual_client=usual)
            if wait > timedelta(0):
                self.audit(s, by, "session.opened", f"login:{_sha(key)[:16]}", outcome="refused",
                           reason="throttled")
                failure = Unauthorized("login_throttled", retry_after=math.ceil(wait.total_seconds()))
            elif self._password_matches(account, password):
                rows[0].count = 0
                rows[2].count = 0
                self._remember_client(s, account.id, client, now)
                if self.hasher.check_needs_rehash(account.password_hash):
                    account.password_hash = self.hasher.hash(password)
                token, who = self._open_session(s, account.id, kind, "password", now)
                self.audit(s, by, "session.opened", f"account:{account.id}", who=verified_parent(account.id))
                return token, who
            else:
                for row in rows:
                    f = lim.Failures(row.count, aware(row.last_at)).one_more(now)
                    row.count, row.last_at = f.count, f.last_at
                if account is not None and lim.notice_due(lim.Failures(rows[2].count, now),
                                                         aware(rows[2].noticed_at), now):
                    rows[2].noticed_at = now
                    self._tell_owner(s, account, rows[2].count, now)
                self.audit(s, by, "session.opened", f"login:{_sha(key)[:16]}", outcome="refused")
                failure = Unauthorized("login_failed")
        raise failure

    def _failure_rows(self, s: Session, login: str, client: str) -> list[SignInFailure]:
        """(login and client, client, login), locked: parallel guesses are
        counted one after the other."""
        keys = [_sha("login+client", login, client), _sha("client", client), _sha("login", login)]
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        s.execute(insert(SignInFailure.__table__).values([{"key": k, "count": 0} for k in keys])
                  .on_conflict_do_nothing())
        found = {r.key: r for r in s.scalars(sa.select(SignInFailure).where(SignInFailure.key.in_(keys))
                                             .order_by(SignInFailure.key).with_for_update())}
        return [found[k] for k in keys]

    def _password_matches(self, account: Account | None, password: str) -> bool:
        try:
            ok = self.hasher.verify(account.password_hash if account and account.password_hash
                                    else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and account is not None and account.password_hash is not None

    def _remember_client(self, s: Session, account_id: str, client: str, now: datetime) -> None:
        row = s.get(SignInClient, (account_id, _sha(client)))
        if row is None:
            s.add(SignInClient(account_id=account_id, client_hash=_sha(client), last_at=now))
            s.flush()
            stale = s.scalars(sa.select(SignInClient).where(SignInClient.account_id == account_id)
                              .order_by(SignInClient.last_at.desc()).offset(USUAL_CLIENTS_KEPT)).all()
            for old in stale:
                s.delete(old)
        else:
            row.last_at = now

    def _tell_owner(self, s: Session, account: Account, failures: int, now: datetime) -> None:
        outbox.add(s, SIGN_IN_FAILED, account.id, {
            "parent_id": account.id, "email": account.email, "locale": account.locale,
            "failures": failures, "at": now.isoformat()}, time=now)

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

    def logout(self, token: str, *, by: Caller = ITSELF) -> None:
        """Ends the session `token` opens, if it is the caller's own (a
        parent's call) or whoever's (the service itself)."""
        family = by.principal.family
        with unit_of_work(self.sessions) as s:
            row = s.get(SessionRow, d.token_hash(token or ""))
            if row is None or row.revoked_at is not None or family not in (None, row.account_id):
                return
            row.revoked_at = self.clock()
            self.audit(s, by, "session.closed", f"account:{row.account_id}")

    # --- the cabinet --------------------------------------------------------

    def profile(self, account_id: str) -> dict:
        """The parent's own data and children. Only ever by the account id of
        the verified parent: there is no way to ask for another family's."""
        with self.sessions() as s:
            account, apps = family_of(s, account_id)
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

    def owner_of(self, application_id: str) -> str | None:
        with self.sessions() as s:
            return s.scalar(sa.select(Application.account_id).where(Application.id == application_id))

    def owns_application(self, account_id: str, application_id: str) -> bool:
        return self.owner_of(application_id) == account_id

    def mark_removed(self, application_id: str, *, by: Caller = ITSELF) -> None:
        """The child left the queue: the PIN may be registered again, with a
        new queue date (DOMAIN.md section 3)."""
        with unit_of_work(self.sessions) as s:
            if self._set_status(s, application_id, "removed"):
                self.audit(s, by, "application.removed", f"application:{application_id}")

    @staticmethod
    def _set_status(s: Session, application_id: str, status: str) -> bool:
        app = s.get(Application, application_id)
        if app is not None and app.status not in CLOSED:
            app.status = status
            return True
        return False

    def handle_queue_event(self, s: Session, event) -> None:
        """The queue's word on an application, in the consumer's transaction:
        removed (by the parent or an administrator), refused (the child
        was already in the queue, e.g. registered in the old system), or the
        enrolled child left its kindergarten: the PIN is free again."""
        status = {"application.removed.v1": "removed", "application.refused.v1": "refused",
                  "application.left.v1": "left"}.get(event.type)
        app_id = event.data.get("application_id")
        if status and self._set_status(s, app_id, status):
            self.audit(s, ITSELF, f"application.{status}", f"application:{app_id}", event=event.id)

    # --- what is kept only for a while ------------------------------------------

    def forget_old_counts(self) -> int:
        """Wrong passwords and code sends older than a day count no more."""
        day_ago = self.clock() - lim.FAILURES_FORGOTTEN_AFTER
        with unit_of_work(self.sessions) as s:
            gone = s.execute(sa.delete(SignInFailure).where(
                sa.or_(SignInFailure.last_at.is_(None), SignInFailure.last_at < day_ago),
                sa.or_(SignInFailure.noticed_at.is_(None), SignInFailure.noticed_at < day_ago))).rowcount
            gone += s.execute(sa.delete(CodeSend).where(CodeSend.at < day_ago)).rowcount
        return gone

    # --- secrets in sent events -----------------------------------------------

    def scrub_sent_secrets(self) -> int:
        """The e-mail code and the activation link travel to the notifications
        service in events, sealed; once the relay has sent them, the outbox
        keeps them no longer, not even sealed (the database holds secrets
        only as hashes, and a leaked key must not open old rows): the sent
        rows of those events are deleted."""
        table = outbox.table
        with unit_of_work(self.sessions) as s:
            return s.execute(sa.delete(table).where(table.c.type.in_(SECRET_EVENTS),
                                                    table.c.sent_at.is_not(None))).rowcount

    # --- single sign-on ---------------------------------------------------------

    def oidc_start(self, redirect_uri: str) -> str:
        if self.oidc is None:
            raise refuse("provider", "sso_unavailable")
        state, nonce, verifier = d.new_token(), d.new_token(), new_verifier()
        with unit_of_work(self.sessions) as s:
            s.add(OidcRequest(state=state, nonce=nonce, code_verifier=verifier, redirect_uri=redirect_uri,
                              created_at=self.clock()))
        try:
            return self.oidc.authorize_url(state=state, nonce=nonce, code_verifier=verifier,
                                           redirect_uri=redirect_uri)
        except OidcError as exc:
            raise refuse("provider", "sso_unavailable") from exc

    def oidc_finish(self, state: str, code: str, kind: str = "cookie", *,
                    by: Caller = ITSELF) -> tuple[str, Identity]:
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
                same_pin = Account.pin_hash.in_(ring_of(s).lookups("pin", who.pin))
                account = s.scalars(sa.select(Account).where(same_pin).order_by(Account.created_at)).first()
                if account is not None:
                    account.tunduk_sub = who.sub
                    account.activated_at = account.activated_at or now
                    self.audit(s, by, "account.tunduk_linked", f"account:{account.id}",
                               who=verified_parent(account.id))
            if account is None:
                raise refuse("pin", "sso_no_application")
            token, identity = self._open_session(s, account.id, kind, "tunduk", now)
            self.audit(s, by, "session.opened", f"account:{account.id}", who=verified_parent(account.id),
                       via="tunduk")
            return token, identity


SECRET_EVENTS = ("registration.email_code_issued.v1", ACTIVATION_ISSUED)


