"""DOMAIN.md section 6, checked against the stored state: each pool's held
and enrolled places match its referrals, a child holds at most one live
referral, and a child with a live referral is referred."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.models import Application, PlacePool, Referral

A, P, R = Application.__table__, PlacePool.__table__, Referral.__table__

# Each pool's books beside what they should show (PostgreSQL; for whole-system
# checks): the places published for it, and its live and enrolled referrals.
POOL_BOOKS = """
    SELECT p.id, p.free, p.held, p.enrolled,
           (SELECT coalesce(sum(count), 0) FROM place_publications u
             WHERE u.kindergarten_id = p.kindergarten_id AND u.cohort = p.cohort AND u.language = p.language
               AND u.for_category = p.for_category AND u.published_at IS NOT NULL) AS published,
           (SELECT count(*) FROM referrals r WHERE r.place_id = p.id AND r.status = 'live') AS live,
           (SELECT count(*) FROM referrals r WHERE r.place_id = p.id AND r.status = 'enrolled') AS taken
      FROM places p"""


def problems(s: Session) -> list[str]:
    found = []
    live = dict(s.execute(sa.select(R.c.place_id, sa.func.count()).where(R.c.status == "live")
                          .group_by(R.c.place_id)).all())
    enrolled = dict(s.execute(sa.select(R.c.place_id, sa.func.count()).where(R.c.status == "enrolled")
                              .group_by(R.c.place_id)).all())
    for r in s.execute(sa.select(P)):
        if r.held != live.get(r.id, 0):
            found.append(f"pool {r.id}: held {r.held} but {live.get(r.id, 0)} live referrals")
        if r.enrolled != enrolled.get(r.id, 0):
            found.append(f"pool {r.id}: enrolled {r.enrolled} but {enrolled.get(r.id, 0)} enrolments")
    twice = s.execute(sa.select(R.c.application_id).where(R.c.status == "live")
                      .group_by(R.c.application_id).having(sa.func.count() > 1)).all()
    found += [f"child {a} holds {2}+ live referrals" for (a,) in twice]
    mismatch = s.execute(sa.select(A.c.id).join(R, sa.and_(R.c.application_id == A.c.id, R.c.status == "live"))
                         .where(A.c.status != "referred")).all()
    found += [f"child {a} holds a live referral but is not referred" for (a,) in mismatch]
    return found
