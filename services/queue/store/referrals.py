"""Referrals: a place held for one child, and the facts about it."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.domain.refusals import NotFound
from services.queue.models import Application, Kindergarten, Referral
from services.queue.store import chunks

R = Referral.__table__
A = Application.__table__
COLUMNS = ("application_id", "place_id", "kindergarten_id", "cohort", "language", "for_category", "category",
           "needs_confirmation", "preference_index", "status", "state", "run_id", "issued_at", "deadline",
           "announced")


def lock(s: Session, referral_id: str | int, app_id: str | None = None) -> Referral:
    try:
        rid = int(referral_id)
    except (TypeError, ValueError):
        raise NotFound("referral_unknown", field="referral_id", referral_id=referral_id) from None
    ref = s.scalars(sa.select(Referral).where(Referral.id == rid).with_for_update()).one_or_none()
    if ref is None or (app_id is not None and ref.application_id != app_id):
        raise NotFound("referral_not_of_entry", field="referral_id", referral_id=referral_id, application_id=app_id)
    return ref


def event_data(s: Session, ref: Referral, parent_id: str | None, **extra) -> dict:
    """What every referral event carries: ids, the parent (the entry's
    `parent_id`), the kindergarten's name and address."""
    return data_of(ref.id, ref.application_id, ref.kindergarten_id, s.get(Kindergarten, ref.kindergarten_id),
                   parent_id, **extra)


def issued_data(referral_id: int | str, application_id: str, kindergarten_id: str, kg: Kindergarten | None,
                parent_id: str | None, *, deadline: str | None, needs_confirmation: bool, category: str,
                cohort: int, language: str) -> dict:
    """referral.issued.v1: what every referral event carries, the end of
    the first window and what the parent is told with it."""
    return data_of(referral_id, application_id, kindergarten_id, kg, parent_id, deadline=deadline,
                   needs_confirmation=needs_confirmation, category=category, cohort=cohort, language=language)


# issued_data for the referrals `r` (joined with their entries `a` and
# their kindergartens `k`), built by PostgreSQL: the same fields, left out
# when issued_data leaves them out; the first window's end as given
# (%(deadline_confirm)s when a privilege is to be confirmed, else
# %(deadline_enrol)s), in the text Python wrote.
ISSUED_DATA_SQL = """json_strip_nulls(json_build_object(
    'referral_id', CAST(r.id AS text), 'application_id', r.application_id, 'kindergarten_id', r.kindergarten_id,
    'parent_id', NULLIF(a.parent_id, ''), 'kindergarten_name', k.name, 'kindergarten_address', NULLIF(k.address, ''),
    'deadline', CASE WHEN r.needs_confirmation THEN CAST(%(deadline_confirm)s AS text)
                     ELSE CAST(%(deadline_enrol)s AS text) END,
    'needs_confirmation', r.needs_confirmation, 'category', r.category, 'cohort', r.cohort,
    'language', r.language))"""


def data_of(referral_id: int | str, application_id: str, kindergarten_id: str, kg: Kindergarten | None,
            parent_id: str | None, **extra) -> dict:
    data = {"referral_id": str(referral_id), "application_id": application_id, "kindergarten_id": kindergarten_id}
    if parent_id:
        data["parent_id"] = parent_id
    if kg is not None:
        data["kindergarten_name"] = kg.name
        if kg.address:
            data["kindergarten_address"] = kg.address
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


def imported_ids(s: Session, external_ids: list[str]) -> set[str]:
    known: set[str] = set()
    for part in chunks(external_ids, 5000):
        known.update(s.scalars(sa.select(R.c.external_id).where(R.c.external_id.in_(part))))
    return known


def insert_many(s: Session, rows: list[dict]) -> list[int]:
    return list(s.execute(sa.insert(R).returning(R.c.id, sort_by_parameter_order=True), rows).scalars())


def unstarted(s: Session, limit: int):
    q = (sa.select(R, A.c.parent_id).join(A, A.c.id == R.c.application_id)
         .where(R.c.workflow_started_at.is_(None)).order_by(R.c.id).limit(limit))
    return s.execute(q).mappings().all()


def mark_started(s: Session, referral_id: int, at: datetime) -> None:
    s.execute(sa.update(R).where(R.c.id == referral_id, R.c.workflow_started_at.is_(None))
              .values(workflow_started_at=at))


def mark_started_many(s: Session, referral_ids: list[int], at: datetime) -> None:
    if referral_ids:
        s.execute(sa.update(R).where(R.c.id.in_(referral_ids), R.c.workflow_started_at.is_(None))
                  .values(workflow_started_at=at))


def placement(s: Session, app_id: str, kindergarten: str | None = None) -> Referral | None:
    """The referral by which the child was enrolled (or had been, before it
    left), the newest first, locked; of one kindergarten if named."""
    q = (sa.select(Referral).where(Referral.application_id == app_id,
                                   sa.or_(Referral.status == "enrolled", Referral.outcome == "left"))
         .order_by(Referral.id.desc()).limit(1).with_for_update())
    if kindergarten is not None:
        q = q.where(Referral.kindergarten_id == kindergarten)
    return s.scalars(q).one_or_none()
