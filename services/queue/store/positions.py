"""Positions on any SQL database (SQLite): one pass per cohort over its
waiting children in rank order (domain.positions.first_preference_positions),
compared with queue_positions. PostgreSQL's set-based path: positions_pg.py."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.domain.policy import Policy
from services.queue.domain.positions import first_preference_positions
from services.queue.domain.ranking import UNRANKED
from services.queue.models import Application, PublishedPosition
from services.queue.store import chunks
from services.queue.store.times import aware

A = Application.__table__
POS = PublishedPosition.__table__


def save_changed(s: Session, pools: list[tuple[int, str]] | None, policy: Policy, now: datetime) -> list[tuple]:
    """As positions_pg.save_changed: (application id, parent id,
    kindergarten, position, previous position or None) of every child whose
    position changed, in (kindergarten, position) order, saved."""
    by_cohort: dict[int, set[str] | None] = {}
    if pools is None:
        by_cohort = {c: None for (c,) in s.execute(sa.select(A.c.cohort).where(A.c.status == "queued").distinct())}
    else:
        for c, k in pools:
            by_cohort.setdefault(c, set()).add(k)
    fresh: dict[str, tuple[str, int, str | None]] = {}
    ranks = policy.ranks()
    for cohort, kgs in by_cohort.items():
        rows = s.execute(sa.select(A.c.id, A.c.category, A.c.queue_date, A.c.preferences, A.c.parent_id)
                         .where(A.c.status == "queued", A.c.cohort == cohort)).all()
        ranked = sorted(rows, key=lambda r: (ranks.get(r.category, UNRANKED), aware(r.queue_date), r.id))
        parents = {r.id: r.parent_id for r in rows}
        for child, first, pos in first_preference_positions((r.id, tuple(r.preferences)) for r in ranked):
            if kgs is None or first in kgs:
                fresh[child] = (first, pos, parents[child])
    last = {}
    for chunk in chunks(sorted(fresh), 500):
        last.update({r.application_id: (r.kindergarten_id, r.position)
                     for r in s.execute(sa.select(POS).where(POS.c.application_id.in_(chunk)))})
    changed = []
    for app_id in sorted(fresh, key=lambda a: (fresh[a][0], fresh[a][1])):
        kg, pos, parent = fresh[app_id]
        before = last.get(app_id)
        if before == (kg, pos):
            continue
        if before is None:
            s.execute(sa.insert(POS).values(application_id=app_id, kindergarten_id=kg, position=pos, changed_at=now))
        else:
            s.execute(sa.update(POS).where(POS.c.application_id == app_id)
                      .values(kindergarten_id=kg, position=pos, changed_at=now))
        changed.append((app_id, parent, kg, pos, before[1] if before else None))
    return changed
