"""Queue entries (the `applications` table) and what is read with them."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from kezek.sealing import ring_of
from services.queue.domain.commands import JoinQueue
from services.queue.domain.entries import mask_name
from services.queue.domain.policy import Policy
from services.queue.domain.ranking import Applicant
from services.queue.domain.refusals import NotFound
from services.queue.models import CLOSED, WAITING, Application, Referral
from services.queue.store import chunks
from services.queue.store.times import aware

A = Application.__table__
R = Referral.__table__


def lock(s: Session, app_id: str, *, lock: bool = True) -> Application:
    q = sa.select(Application).where(Application.id == app_id)
    if lock:
        q = q.with_for_update()
    app = s.scalars(q).one_or_none()
    if app is None:
        raise NotFound("entry_unknown", field="application_id", application_id=app_id)
    return app


def parent_of(s: Session, app_id: str) -> str | None:
    """The entry's parent (None: an entry without an account), read
    without the entry's sealed columns."""
    row = s.execute(sa.select(A.c.parent_id).where(A.c.id == app_id)).first()
    if row is None:
        raise NotFound("entry_unknown", field="application_id", application_id=app_id)
    return row[0]


def parents_of(s: Session, app_ids: list[str]) -> dict[str, str | None]:
    """The entries' parents (parent_of for many), read in chunks."""
    found: dict[str, str | None] = {}
    for part in chunks(sorted(set(app_ids)), 5000):
        found.update((i, p) for i, p in s.execute(sa.select(A.c.id, A.c.parent_id).where(A.c.id.in_(part))))
    return found


def id_of_pin(s: Session, pin: str) -> str | None:
    """The entry of a child PIN (one per child, closed ones aside), found
    by the PIN's lookup hash under every key of the ring."""
    row = s.execute(sa.select(A.c.id).where(A.c.pin_hash.in_(ring_of(s).lookups("pin", pin)),
                                            A.c.status.notin_(CLOSED))).first()
    return row[0] if row else None


def pins_of(s: Session, ids: list[str]) -> dict[str, str]:
    have: dict[str, str] = {}
    for part in chunks(ids, 5000):
        have.update((i, p) for i, p in s.execute(sa.select(A.c.id, A.c.pin).where(A.c.id.in_(part))))
    return have


def live_pins(s: Session, pins: list[str]) -> set[str]:
    """Those of `pins` a live entry holds."""
    ring = ring_of(s)
    by_hash = {h: p for p in set(pins) for h in ring.lookups("pin", p)}
    taken: set[str] = set()
    for part in chunks(list(by_hash), 5000):
        taken.update(by_hash[h] for h in s.scalars(sa.select(A.c.pin_hash).where(A.c.pin_hash.in_(part),
                                                                              A.c.status.notin_(CLOSED))))
    return taken


def new_row(cmd: JoinQueue, app_id: str, birth: date, queue_date: datetime, policy: Policy, now: datetime) -> dict:
    surname, name, patronymic = cmd.surname.strip(), cmd.name.strip(), (cmd.patronymic or "").strip() or None
    return dict(
        id=app_id, pin=cmd.pin, parent_id=cmd.parent_id, country=policy.country,
        surname=surname, name=name, patronymic=patronymic, masked_name=mask_name(surname, name, patronymic),
        birth_date=birth, cohort=birth.year,
        category=cmd.category, claimed_category=cmd.category, queue_date=queue_date,
        language=cmd.language, preferences=list(cmd.preferences), locale=cmd.locale, status="queued",
        created_at=now, updated_at=now)


def insert(s: Session, row: dict, *, source_event_id: str | None) -> None:
    """In a savepoint: IntegrityError (a concurrent entry of the same PIN) leaves the transaction usable."""
    with s.begin_nested():
        s.add(Application(**row, source_event_id=source_event_id))
        s.flush()


def insert_many(s: Session, rows: list[dict]) -> None:
    ring = ring_of(s)
    s.execute(sa.insert(A), [{**r, "pin_hash": ring.lookup("pin", r["pin"])} for r in rows])


def lists_any(s: Session, kgs: Iterable[str]):
    """The condition: the entry lists any of these kindergartens."""
    if s.get_bind().dialect.name == "postgresql":
        return A.c.preferences.op("&&")(sa.cast(sa.literal(list(kgs), postgresql.ARRAY(sa.String(100))),
                                                postgresql.ARRAY(sa.String(100))))
    return sa.text("EXISTS (SELECT 1 FROM json_each(applications.preferences) AS je "
                   "WHERE je.value IN (SELECT value FROM json_each(:kg_prefs)))"
                   ).bindparams(kg_prefs=json.dumps(list(kgs)))


def competitors(s: Session, kgs: list[str], cohort: int, language: str | None = None):
    """Waiting children of a cohort who list any of the kindergartens."""
    lists = lists_any(s, kgs)
    q = sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language, A.c.preferences,
                  A.c.masked_name).where(A.c.status == "queued", A.c.cohort == cohort, lists)
    if language is not None:
        q = q.where(A.c.language == language)
    return s.execute(q).all()


def category_in_use(s: Session, categories: set[str]) -> str | None:
    """One of these categories that an entry still has, if any."""
    if not categories:
        return None
    row = s.execute(sa.select(A.c.category).where(A.c.category.in_(categories), A.c.status.notin_(CLOSED))
                    .limit(1)).first()
    return row[0] if row else None


def ranking_row(s: Session, app_id: str):
    return s.execute(sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language,
                               A.c.preferences, A.c.status).where(A.c.id == app_id)).first()


def applicant(r) -> Applicant:
    return Applicant(r.id, r.birth_date, r.category, aware(r.queue_date), r.language, tuple(r.preferences))


def for_import(s: Session, ids: list[str]) -> dict:
    """The entries a batch of imported referrals names, locked in id order."""
    apps = {}
    for part in chunks(ids, 5000):
        apps.update((r.id, r) for r in s.execute(
            sa.select(A.c.id, A.c.status, A.c.cohort, A.c.language, A.c.preferences, A.c.pin, A.c.surname,
                      A.c.name, A.c.patronymic, A.c.birth_date, A.c.parent_id, A.c.queue_date)
            .where(A.c.id.in_(part)).order_by(A.c.id).with_for_update()))
    return apps


def due_stoplists(s: Session, now: datetime) -> list[Application]:
    """Paused entries whose stop-list has ended, locked (others' locks skipped)."""
    q = (sa.select(Application).where(Application.status == "paused", Application.paused_until <= now)
         .order_by(Application.paused_until).limit(500).with_for_update(skip_locked=True))
    return list(s.scalars(q))


def set_status(s: Session, ids: Iterable[str], status: str, now: datetime) -> None:
    s.execute(sa.update(A).where(A.c.id.in_(list(ids))).values(status=status, updated_at=now))


# ------------------------------------------------------------------ views


def view(a: Application) -> dict:
    return {"id": a.id, "status": a.status, "category": a.category, "claimed_category": a.claimed_category,
            "queue_date": aware(a.queue_date), "cohort": a.cohort, "birth_date": a.birth_date,
            "language": a.language, "preferences": list(a.preferences), "paused_until": aware(a.paused_until),
            "left_at": aware(a.left_at), "parent_id": a.parent_id, "child": a.masked_name}


def referral_view(r) -> dict:
    return {"id": r["id"], "kindergarten": r["kindergarten_id"], "cohort": r["cohort"], "language": r["language"],
            "status": r["status"], "state": r["state"], "issued_at": aware(r["issued_at"]),
            "deadline": aware(r["deadline"]), "needs_confirmation": r["needs_confirmation"],
            "extended": r["extended"]}


def view_with_referral(s: Session, app_id: str) -> dict:
    out = view(lock(s, app_id, lock=False))
    ref = s.execute(sa.select(R).where(R.c.application_id == app_id, R.c.status != "ended")
                    .order_by(R.c.id.desc()).limit(1)).mappings().first()
    out["referral"] = referral_view(ref) if ref else None
    return out


def views_with_referrals(s: Session, app_ids: Iterable[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in chunks(list(app_ids), 2000):
        for app in s.scalars(sa.select(Application).where(Application.id.in_(part))):
            out[app.id] = {**view(app), "referral": None}
        refs = s.execute(sa.select(R).where(R.c.application_id.in_(part), R.c.status != "ended")
                         .order_by(R.c.id)).mappings()
        for ref in refs:  # the newest last, as `view_with_referral` shows it
            out[ref["application_id"]]["referral"] = referral_view(ref)
    return out


def listing(s: Session, kg: str) -> list[Application]:
    """Open entries (not removed, enrolled or left) that list `kg`, locked in id order."""
    q = (sa.select(Application).where(Application.status.in_(("queued", "paused", "referred")),
                                      lists_any(s, [kg])).order_by(Application.id).with_for_update())
    return list(s.scalars(q))


# ------------------------------------------------------------ ageing out


def due_school_age(s: Session, cutoff: date, limit: int):
    """Waiting children born on or before `cutoff` (they have reached school
    age), locked (others' locks skipped): a range of the partial index
    ix_applications_school_age, which holds only waiting children."""
    q = (sa.select(A.c.id, A.c.parent_id, A.c.cohort, A.c.category, A.c.birth_date, A.c.preferences, A.c.status,
                   A.c.created_at)
         .where(WAITING, A.c.birth_date <= cutoff)
         .order_by(A.c.birth_date, A.c.id).limit(limit).with_for_update(skip_locked=True))
    return s.execute(q).all()


def set_aged_out(s: Session, ids: list[str], now: datetime) -> None:
    for part in chunks(ids, 5000):
        s.execute(sa.update(A).where(A.c.id.in_(part)).values(status="aged_out", paused_until=None, updated_at=now))
