"""Ageing out (DOMAIN.md section 3; the rule: domain/ageing.py). A waiting
child leaves the queue at 00:00 local time of its school-age birthday: the
daily job (`Ageing.daily`, run by the allocator loop) reads only the day's
birthdays through the partial index `ix_applications_school_age` and closes
them in batches. A child holding a live referral keeps it; when the
referral ends without enrolment, or a stop-list ends, on or after the
birthday, the effect that ends it sends the child out instead
(`leaves_queue` / `age_out`, called from referral_effects.py)."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from kezek import calendar as kcal
from kezek.logging import get_logger
from services.queue.domain.ageing import latest_school_age_birth_date, reached_school_age, school_age_date
from services.queue.domain.policy import Policy
from services.queue.models import Application
from services.queue.store import entries as store
from services.queue.store.times import aware, utc
from services.queue.usecases.closing import closed, closed_many
from services.queue.usecases.work import RETRYABLE, Context, UnitOfWork

log = get_logger(__name__)

AGEING = "system:ageing"
AGED_OUT = "application.aged_out.v1"


class Ageing:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._done_on: date | None = None

    def daily(self) -> int:
        """Once per local day (the first call after 00:00; again after a
        failure): the children whose school-age birthday has come leave."""
        today = self.ctx.today()
        if self._done_on == today:
            return 0
        n = self.age_out_due()
        self._done_on = today
        return n

    def age_out_due(self, *, batch: int = 2000) -> int:
        """Every waiting child who has reached school age today (or on a day
        the job missed) leaves the queue; batches of `batch`, each one
        transaction. Returns how many left."""
        total = 0
        while True:
            n = self.ctx.retried(lambda: self._batch(batch), on=RETRYABLE, attempts=5, event="ageing.retry")
            total += n
            if n < batch:
                break
        if total:
            log.info("queue.aged_out", children=total)
        return total

    def _batch(self, batch: int) -> int:
        with self.ctx.uow() as w:
            policy, _ = w.policy()
            cal = kcal.calendar(policy.country)
            cutoff = latest_school_age_birth_date(w.ctx.today(policy), policy)
            due = store.due_school_age(w.s, cutoff, batch)
            if not due:
                return 0
            now = w.now()
            store.set_aged_out(w.s, [r.id for r in due], now)
            at = {r.id: aged_out_at(cal, r.birth_date, aware(r.created_at), policy) for r in due}
            by_moment: dict[datetime, list] = defaultdict(list)
            for r in due:
                by_moment[at[r.id]].append(r)
            for moment, rows in by_moment.items():
                w.emit_many(AGED_OUT, ((f"application:{r.id}", aged_out_data(r, moment, policy)) for r in rows),
                            time=moment)
            closed_many(w, ((r.id, r.parent_id, at[r.id]) for r in due), "aged_out")
            w.audit_many(AGEING, [{"action": "application.aged_out", "subject": f"application:{r.id}",
                                   "details": {"school_age_years": policy.school_age_years,
                                               "from_status": r.status}} for r in due], at=now)
            w.positions_moved({(r.cohort, k) for r in due for k in r.preferences})
            return len(due)


def aged_out_at(cal: kcal.WorkingCalendar, birth_date: date, joined_at: datetime | None, policy: Policy) -> datetime:
    """00:00 local time of the school-age birthday (or the moment the entry
    joined, for one that joined older: an import)."""
    midnight = utc(cal.start_of_day(school_age_date(birth_date, policy)))
    return max(midnight, utc(joined_at)) if joined_at is not None else midnight


def aged_out_data(app, at: datetime, policy: Policy, referral_id: int | str | None = None) -> dict:
    data = {"application_id": app.id, "parent_id": app.parent_id, "cohort": app.cohort, "category": app.category,
            "aged_out_at": utc(at).isoformat(), "school_age_years": policy.school_age_years}
    if referral_id is not None:
        data["referral_id"] = str(referral_id)
    return data


def leaves_queue(w: UnitOfWork, app: Application, at: datetime) -> bool:
    """True if a child whose referral or stop-list ends at `at` has reached
    school age by then, and so leaves the queue instead of returning to it."""
    policy, _ = w.policy()
    return reached_school_age(app.birth_date, kcal.calendar(policy.country).local_date(at), policy)


def age_out(w: UnitOfWork, app: Application, *, at: datetime, referral_id: int | str | None = None) -> None:
    """One child leaves the queue for school age at `at` (a referral that
    ended, a stop-list that ended), in the caller's transaction."""
    policy, _ = w.policy()
    before = app.status
    app.status, app.paused_until, app.updated_at = "aged_out", None, w.now()
    w.emit(AGED_OUT, f"application:{app.id}", aged_out_data(app, at, policy, referral_id), time=at)
    closed(w, app.id, app.parent_id, "aged_out", at)
    w.audit(AGEING, "application.aged_out", f"application:{app.id}",
            {"school_age_years": policy.school_age_years, "from_status": before,
             **({"referral_id": str(referral_id)} if referral_id is not None else {})}, at=at)
    w.entry_moved(app.cohort, app.preferences)
