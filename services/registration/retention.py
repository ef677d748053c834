"""Registration's data of closed applications, anonymised when the
retention policy says (kezek/retention.py): the application keeps its row
(category, language, preferences, the address's region and district, the
birth year, status, moments) and loses the child's PIN, names and sex, the
parent's names, PIN and identity document, the street address and the
contacts; the draft it came from goes. The parent's account is anonymised
with its last application: its e-mail, PIN, names, phone, national sign-in
link and password go, and its sessions, activation links and known
clients with them (nobody can sign in to it again)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.retention import ANONYMISED, Closed, ServiceRetention, anonymous_pin, coarse_birth_date
from services.registration.models import (Account, ActivationToken, Application, Draft, Session as SignIn,
                                          SignInClient, retention_clock, trail)

# What an anonymised address keeps: where, to the district, for the figures.
ADDRESS_KEPT = ("country", "region", "region_code", "district", "district_code")
PARENT_KEPT = ("role",)


class RegistrationAnonymiser:
    fields = ("applications.child_pin", "applications.child_surname", "applications.child_name",
              "applications.child_patronymic", "applications.child_birth_date (year kept)",
              "applications.child_sex", "applications.parent (role kept)", "applications.address (to the district)",
              "applications.phone", "applications.email", "drafts (deleted)",
              "accounts (with the parent's last application): email, pin, names, phone, tunduk_sub, password",
              "sessions, activation_tokens, sign_in_clients (deleted with the account)", "audit_trail.details")

    def anonymise(self, s: Session, closed: list[Closed], at: datetime) -> tuple[dict[str, int], list[str]]:
        ids = [c.application_id for c in closed]
        apps = list(s.scalars(sa.select(Application).where(Application.id.in_(ids))))
        for a in apps:
            a.child_pin, a.child_surname, a.child_name = anonymous_pin(a.id), ANONYMISED, ANONYMISED
            a.child_patronymic, a.child_sex = None, None
            a.child_birth_date = coarse_birth_date(a.child_birth_date)
            a.parent = {k: v for k, v in (a.parent or {}).items() if k in PARENT_KEPT}
            a.address = {k: v for k, v in (a.address or {}).items() if k in ADDRESS_KEPT}
            a.phone, a.email = "", ""
        drafts = s.execute(sa.delete(Draft).where(Draft.application_id.in_(ids))).rowcount
        accounts = self._accounts_done(s, {a.account_id for a in apps}, set(ids))
        for account in accounts:
            account.email = f"{account.id}@anonymised.invalid"
            account.pin, account.surname, account.name = anonymous_pin(account.id), ANONYMISED, ANONYMISED
            account.patronymic, account.phone, account.tunduk_sub, account.password_hash = None, "", None, None
        gone = [a.id for a in accounts]
        if gone:
            for table in (SignIn, ActivationToken, SignInClient):
                s.execute(sa.delete(table).where(table.account_id.in_(gone)))
        s.flush()
        subjects = [f"application:{i}" for i in ids] + [f"account:{i}" for i in gone]
        return {"applications": len(apps), "drafts": drafts, "accounts": len(accounts)}, subjects

    @staticmethod
    def _accounts_done(s: Session, account_ids: set[str], now_done: set[str]) -> list[Account]:
        """The accounts whose every application is anonymised once these are."""
        keep = retention_clock.owners_done(s, Application.account_id, Application.id, account_ids, now_done)
        return list(s.scalars(sa.select(Account).where(Account.id.in_(keep)))) if keep else []


RETENTION = ServiceRetention("registration", retention_clock, trail, RegistrationAnonymiser())
retention_job = RETENTION.job
build_retention = RETENTION.job_on_own_database
