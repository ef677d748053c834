"""The allocation's reads and writes, on any SQL database (SQLite): the
waiting children of a group in rank order, and the referrals of a run.
PostgreSQL has its faster path in allocation_pg.py; both give the same."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.trust import Principal
from services.queue.domain.policy import Policy
from services.queue.domain.ranking import UNRANKED, Applicant
from services.queue.models import Application, outbox
from services.queue.store import audit, chunks, kindergartens, places, referrals
from services.queue.store.times import aware

A = Application.__table__
ISSUED = "referral.issued.v1"


class StaleRead(Exception):
    """Something the run read changed before it wrote: roll back and retry."""


def check_all_referred(ids: list[str], changed: int) -> None:
    if changed != len(ids):
        raise StaleRead(f"{len(ids) - changed} children changed during the run")


def ranked(s: Session, cohort: int, language: str, bound: date, policy: Policy, consumed: list[Applicant],
           group: dict, allocations: list) -> Iterator[Applicant]:
    """Waiting children of one group who are old enough, in rank order,
    streamed from the database; each one read is added to `consumed`."""
    rank = sa.case(policy.ranks(), value=A.c.category, else_=UNRANKED)
    q = (sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language, A.c.preferences)
         .where(A.c.status == "queued", A.c.cohort == cohort, A.c.language == language, A.c.birth_date <= bound)
         .order_by(rank, A.c.queue_date, A.c.id))
    for rid, birth, cat, qd, lang, prefs in s.execute(q):
        a = Applicant(rid, birth, cat, aware(qd), lang, tuple(prefs))
        consumed.append(a)
        yield a


def settle(s: Session, now: datetime, ids: list[str], taken: Counter, timings: dict) -> None:
    """The children referred (only those still waiting, else StaleRead) and
    the places held (`taken` per pool id) by a run's referrals."""
    changed = 0
    for chunk in chunks(ids, 500):
        changed += s.execute(sa.update(A).where(A.c.id.in_(chunk), A.c.status == "queued")
                             .values(status="referred", updated_at=now)).rowcount
    check_all_referred(ids, changed)
    places.hold(s, dict(taken))


def write(s: Session, rows: list[tuple], timings: dict) -> list[int]:
    """The referral rows (referrals.COLUMNS); returns their ids."""
    return referrals.insert_many(s, [dict(zip(referrals.COLUMNS, row)) for row in rows])


def announce(s: Session, now: datetime, ref_ids: list[int], deadlines: dict[bool, str], who: Principal) -> None:
    """Each of these new referrals' referral.issued.v1 fact and its
    referral.issued audit row by `who`, at `now`, as the ReferralWorkflow's
    first step wrote them (record_referral, "issued"); `deadlines`: the end
    of the first window as text, with a privilege to confirm (True) and
    without."""
    R = referrals.R
    rows = []
    for part in chunks(ref_ids, 5000):
        rows += s.execute(sa.select(R.c.id, R.c.application_id, R.c.kindergarten_id, R.c.needs_confirmation,
                                    R.c.category, R.c.cohort, R.c.language, R.c.state, A.c.parent_id)
                          .join(A, A.c.id == R.c.application_id).where(R.c.id.in_(part)).order_by(R.c.id)).all()
    kgs = kindergartens.many(s, {r.kindergarten_id for r in rows})
    facts, trail = [], []
    for r in rows:
        deadline = deadlines[r.needs_confirmation]
        facts.append((f"referral:{r.id}", referrals.issued_data(
            r.id, r.application_id, r.kindergarten_id, kgs.get(r.kindergarten_id), r.parent_id, deadline=deadline,
            needs_confirmation=r.needs_confirmation, category=r.category, cohort=r.cohort, language=r.language)))
        trail.append({"action": "referral.issued", "subject": f"application:{r.application_id}", "details": {
            "referral_id": r.id, "state": r.state, "deadline": deadline, "reason": None}})
    outbox.add_many(s, ISSUED, facts, time=now)
    audit.record_many(s, now, who, trail)
