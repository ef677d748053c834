"""Parents' accounts and their children's applications moved from the old
portal (`kezek import`): checked by the rules of a normal registration,
created once (idempotent), nothing sent to the parents, each record in the
audit trail."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kezek.calendar import timezone
from kezek.db import unit_of_work
from kezek.events import new_event
from kezek.outbox import sealed_payload
from kezek.sealing import Keyring, ring_of
from services.registration import domain as d
from services.registration.models import CLOSED, Account, Application, outbox, trail
from services.registration.usecases.context import ITSELF, Caller, Context, refuse


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


class Imports(Context):
    def import_accounts(self, accounts: list[ImportAccount], *, dry_run: bool = False,
                        by: Caller = ITSELF) -> list[bool | d.RegistrationRefused]:
        """Parents' accounts moved from a previous system, in one transaction:
        created without a password and not activated; the parent asks for an
        activation link by e-mail (`resend_activation`), so nothing is sent
        to hundreds of thousands of parents at once. Per account, in order:
        True if created, False if it was imported before, or the refusal
        (the others go on). `dry_run`: check only, write nothing."""
        return self._batch(lambda s: self._import_accounts(s, accounts, by), dry_run=dry_run)

    def _batch(self, work: Callable[[Session], list], *, dry_run: bool) -> list:
        """`work` in one transaction (a dry run: in a session closed without
        a commit). A unique index that refuses the batch (an account with
        one of its e-mails, or an application of one of its children, made
        meanwhile) leaves nothing written; checked again, the record is seen."""
        for attempt in range(3):
            try:
                if dry_run:
                    with self.sessions() as s:
                        return work(s)
                with unit_of_work(self.sessions) as s:
                    return work(s)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _import_accounts(self, s: Session, accounts: list[ImportAccount],
                         by: Caller) -> list[bool | d.RegistrationRefused]:
        now = self.clock()
        today = now.astimezone(timezone(self.country)).date()
        checked, out = _checked(accounts, lambda a: d.validate_imported_account(
            {"surname": a.surname, "name": a.name, "patronymic": a.patronymic, "pin": a.pin,
             "phone": a.phone, "email": a.email}, self.country, today))
        emails = [c.email for c in checked if c is not None]
        by_id, by_email = {}, {}
        for part in _chunks([a.id for a in accounts]):
            by_id.update(s.execute(sa.select(Account.id, Account.email).where(Account.id.in_(part))).all())
        ring = ring_of(s)
        email_of = {h: e for e in set(emails) for h in ring.lookups("email", e)}
        for part in _chunks(list(email_of)):
            by_email.update((email_of[h], i_) for h, i_ in s.execute(
                sa.select(Account.email_hash, Account.id).where(Account.email_hash.in_(part))))
        rows = []
        for i, (a, c) in enumerate(zip(accounts, checked)):
            if c is None:
                continue
            if (seen := _seen_id("parent.id", a.id, by_id, c.email, "account_id_taken")) is not None:
                out[i] = seen
            elif c.email in by_email:  # another account has this e-mail (in Kezek, or earlier in the batch)
                out[i] = refuse("parent.email", "email_taken")
            else:
                by_id[a.id], by_email[c.email] = c.email, a.id
                rows.append(dict(id=a.id, email=c.email, email_hash=ring.lookup("email", c.email), password_hash=None,
                                 pin=c.pin, pin_hash=ring.lookup("pin", c.pin), surname=c.surname,
                                 name=c.name, patronymic=c.patronymic, phone=c.phone, locale=a.locale,
                                 created_at=now, activated_at=None))
        if rows:
            s.execute(sa.insert(Account.__table__), rows)
            trail.record_many(s, by.principal, [{"action": "account.imported", "subject": f"account:{r['id']}"}
                                                for r in rows], at=now)
        return out

    def import_applications(self, applications: list[ImportApplication], *, dry_run: bool = False,
                            accounts_to_come: frozenset[str] = frozenset(),
                            by: Caller = ITSELF) -> list[bool | d.RegistrationRefused]:
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
        to_come = accounts_to_come if dry_run else frozenset()
        return self._batch(lambda s: self._import_applications(s, applications, to_come, by, write=not dry_run),
                           dry_run=dry_run)

    def _import_applications(self, s: Session, applications: list[ImportApplication],
                             accounts_to_come: frozenset[str], by: Caller,
                             write: bool) -> list[bool | d.RegistrationRefused]:
        today = self.today()
        checked, out = _checked(applications, lambda a: d.validate_imported_child(
            {"pin": a.child_pin, "surname": a.surname, "name": a.name, "patronymic": a.patronymic,
             "birth_date": a.birth_date}, self.country, today))
        pins = [c.pin for c in checked if c is not None]
        known, accounts, live = {}, {}, {}
        for part in _chunks([a.id for a in applications]):
            known.update((r.id, (r.account_id, r.child_pin)) for r in s.execute(
                sa.select(Application.id, Application.account_id, Application.child_pin)
                .where(Application.id.in_(part))))
        for part in _chunks([a.account_id for a in applications]):
            accounts.update((r.id, r) for r in s.scalars(sa.select(Account).where(Account.id.in_(part))))
        ring = ring_of(s)
        pin_of = {h: p for p in set(pins) for h in ring.lookups("pin", p)}
        for part in _chunks(list(pin_of)):
            live.update((pin_of[h], i_) for h, i_ in s.execute(
                sa.select(Application.child_pin_hash, Application.id).where(
                    Application.child_pin_hash.in_(part), Application.status.not_in(CLOSED))))
        rows = []
        for i, (a, c) in enumerate(zip(applications, checked)):
            if c is None:
                continue
            if (seen := _seen_id("application.id", a.id, known, (a.account_id, c.pin),
                                 "application_id_taken")) is not None:
                out[i] = seen
            elif a.account_id not in accounts and a.account_id not in accounts_to_come:
                out[i] = refuse("parent.id", "account_unknown")
            elif c.pin in live:   # in Kezek already, or earlier in the batch
                out[i] = refuse("child.pin", "child_already_registered")
            else:
                known[a.id], live[c.pin] = (a.account_id, c.pin), a.id
                acc = accounts.get(a.account_id)
                rows.append(dict(
                    id=a.id, account_id=a.account_id, country=self.country, child_pin=c.pin,
                    child_pin_hash=ring.lookup("pin", c.pin), child_surname=c.surname, child_name=c.name,
                    child_patronymic=c.patronymic,
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
            s.execute(sa.insert(outbox.table), [self._imported_received(ring, r, accounts.get(r["account_id"]))
                                                for r in rows])
            trail.record_many(s, by.principal, [{"action": "application.imported", "subject": f"application:{r['id']}",
                                                 "details": {"account": r["account_id"]}} for r in rows])
        return out

    def _imported_received(self, ring: Keyring, row: dict, account: Account | None) -> dict:
        now = self.clock()
        data = {"application_id": row["id"], "parent_id": row["account_id"],
                "locale": account.locale if account else "ru", "child_name": row["child_name"],
                "queue_date": row["submitted_at"].isoformat(), "category": row["category"], "imported": True}
        if row["email"]:
            data["email"] = row["email"]
        if row["phone"]:
            data["phone"] = row["phone"]
        event = new_event("application.received.v1", row["id"], data, source=outbox.source, time=now)
        return {"event_id": event.id, "type": event.type, "subject": event.subject,
                "payload": sealed_payload(ring, event.type, event.to_json()), "created_at": now}



def _checked(records: list, validate: Callable) -> tuple[list, list[bool | d.RegistrationRefused]]:
    """Per record: its checked form (None when refused), and True or the refusal."""
    checked, out = [], []
    for record in records:
        try:
            checked.append(validate(record))
            out.append(True)
        except d.RegistrationRefused as e:
            checked.append(None)
            out.append(e)
    return checked, out


def _chunks(values: list[str], size: int = 5000):
    """The distinct values, a query's IN list at a time."""
    values = list(dict.fromkeys(values))
    return (values[i:i + size] for i in range(0, len(values), size))


def _seen_id(field_: str, id_: str, known: dict, same, taken: str) -> bool | d.RegistrationRefused | None:
    """An imported record's id: None when new; False when this record was
    imported before (`known[id_] == same`); refused when it is too long or
    another record's."""
    if len(id_) > 36:
        return refuse(field_, "id_too_long")
    if id_ in known:
        return False if known[id_] == same else refuse(field_, taken)
    return None
