"""Policy versions: the latest is in force, every change is kept."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.domain.policy import DEFAULT_POLICY, Policy
from services.queue.models import PolicyVersion
from services.queue.store.times import aware


def current(s: Session, country: str) -> tuple[Policy, int | None]:
    row = s.execute(sa.select(PolicyVersion.id, PolicyVersion.policy)
                    .order_by(PolicyVersion.id.desc()).limit(1)).first()
    if row is None:
        return DEFAULT_POLICY.replace(country=country), None
    return Policy.from_dict(row.policy), row.id


def add(s: Session, policy: Policy, *, at, actor: str, reason: str) -> int:
    return s.execute(sa.insert(PolicyVersion.__table__).values(
        policy=policy.to_dict(), changed_at=at, actor=actor, reason=reason).returning(PolicyVersion.id)).scalar_one()


def history(s: Session) -> list[dict]:
    rows = s.execute(sa.select(PolicyVersion).order_by(PolicyVersion.id)).scalars().all()
    return [{"version": r.id, "policy": r.policy,
             "changed_at": aware(r.changed_at),
             "actor": r.actor, "reason": r.reason} for r in rows]
