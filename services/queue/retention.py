"""The queue's own data of closed applications, anonymised when the
retention policy says (kezek/retention.py): the entry keeps its row (its
cohort, category, queue date, preferences and status count in the figures,
and its id in the allocation record), its child's PIN, names and removal
reason go, and its birth date keeps only the year. The allocation record
(allocation_runs, allocation_audit) already holds only pseudonyms, the
application id, and the inputs that decided (category, queue date, birth
date, preferences), so `kezek queue-replay` still matches afterwards."""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.retention import ANONYMISED, Closed, ServiceRetention, anonymous_pin
from kezek.sealing import ring_of
from services.queue.models import Application, audit_trail, retention_clock

A = Application.__table__


class QueueAnonymiser:
    fields = ("applications.pin", "applications.surname", "applications.name", "applications.patronymic",
              "applications.birth_date (year kept)", "applications.removal_reason", "audit_trail.details")

    def anonymise(self, s: Session, closed: list[Closed], at: datetime) -> tuple[dict[str, int], list[str]]:
        ids = [c.application_id for c in closed]
        cohorts = dict(s.execute(sa.select(A.c.id, A.c.cohort).where(A.c.id.in_(ids))).all())
        if cohorts:
            # Sealed columns: the pseudonym is sealed like any value, and its
            # lookup hash replaces the PIN's (kezek/sealing.py).
            ring = ring_of(s)
            s.execute(A.update().where(A.c.id == sa.bindparam("app_id")).values(
                pin=sa.bindparam("anon_pin"), pin_hash=sa.bindparam("anon_hash"), surname=ANONYMISED,
                name=ANONYMISED, patronymic=None, masked_name="", birth_date=sa.bindparam("year"),
                removal_reason=None), [
                {"app_id": i, "anon_pin": anonymous_pin(i), "anon_hash": ring.lookup("pin", anonymous_pin(i)),
                 "year": date(cohort, 1, 1)} for i, cohort in cohorts.items()])
        return {"applications": len(cohorts)}, [f"application:{i}" for i in ids]


RETENTION = ServiceRetention("queue", retention_clock, audit_trail, QueueAnonymiser())
retention_job = RETENTION.job
build_retention = RETENTION.job_on_own_database
