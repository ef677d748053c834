"""What happened and whether it can be recomputed (DOMAIN.md sections 3 and
6): the audit trail, each child's allocations with the inputs that decided
them, the runs, their replay from what they recorded, and the register's
invariants checked against the stored state."""
from __future__ import annotations

from collections.abc import Iterable

from services.queue.domain.allocation import replay
from services.queue.domain.ranking import PlaceKey
from services.queue.domain.policy import Policy
from services.queue.store import audit, invariants, runs
from kezek.trust import Principal
from services.queue.usecases.work import Context


class Audit:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def trail(self, subject: str | None = None, *, limit: int = 200, after_id: int = 0) -> list[dict]:
        with self.ctx.read() as w:
            return audit.trail(w.s, subject, limit=limit, after_id=after_id)

    def look(self, who: Principal, action: str, subject: str, *, why: str | None = None) -> None:
        """A member of staff looked at a child's data: recorded, in its own transaction."""
        with self.ctx.uow() as w:
            audit.look(w.s, w.now(), who, action, subject, why)

    def looks(self, who: Principal, action: str, subjects: list[str], *, why: str | None = None) -> None:
        """One look at many children (a kindergarten's list): one record per child."""
        if subjects:
            with self.ctx.uow() as w:
                audit.looks(w.s, w.now(), who, action, subjects, why)

    def family_looks(self, parent_id: str) -> list[dict]:
        """The staff looks at the family's entries, newest first, as the
        family is told of them: when, the role and the office, what."""
        with self.ctx.read() as w:
            return audit.family_looks(w.s, parent_id)

    def allocation_records(self, app_id: str) -> list[dict]:
        """Each referral the child got, with the inputs that decided it."""
        with self.ctx.read() as w:
            return runs.records_of(w.s, app_id)

    def runs(self, limit: int = 50) -> list[dict]:
        with self.ctx.read() as w:
            return runs.listed(w.s, limit)

    def replay(self, run_ids: Iterable[int] | None = None) -> list[dict]:
        """Recomputes every recorded run from its recorded inputs (policy,
        free places, the children it considered) and compares with the
        allocations it made. Returns one report per run."""
        with self.ctx.read() as w:
            return [self._replay(w.s, run_id) for run_id in runs.run_ids(w.s, run_ids)]

    @staticmethod
    def _replay(s, run_id: int) -> dict:
        run = runs.load(s, run_id)
        pol = dict(run["policy"])
        pol.pop("version", None)
        free = {(PlaceKey(kg, cohort, lang), cat): n for kg, cohort, lang, cat, n in run["free_before"]}
        recorded = runs.recorded_allocations(s, run_id)
        problems = replay(recorded, runs.decode_candidates(run["candidates"]), free, run["on_date"],
                          Policy.from_dict(pol))
        if runs.digest(recorded) != run["digest"]:
            problems.append("the audit rows do not match the digest recorded with the run")
        return {"run_id": run_id, "on": run["on_date"].isoformat(), "allocations": len(recorded),
                "candidates": run["candidates_count"], "matches": not problems, "problems": problems[:20]}

    def check_register(self) -> list[str]:
        """The section 6 invariants, checked against the stored state."""
        with self.ctx.read() as w:
            return invariants.problems(w.s)
