"""What the queue shows: a child's entry with its live referral, its
position for each preference and why, the anonymised public queue of a
kindergarten, the register of places and the publications to come."""
from __future__ import annotations

from collections.abc import Iterable

from services.queue.domain.placement import Scheduled, schedule_key
from services.queue.domain.positions import PositionExplanation, explain_position
from services.queue.domain.ranking import rank_key, reached_min_age
from services.queue.domain.refusals import NotFound
from services.queue.store import entries, kindergartens, places
from services.queue.store.times import aware
from services.queue.usecases.work import Context


class Views:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def application(self, app_id: str) -> dict:
        with self.ctx.read() as w:
            return entries.view_with_referral(w.s, app_id)

    def applications_many(self, app_ids: Iterable[str]) -> dict[str, dict]:
        """`application` for many entries at once (reconciling an import);
        ids that are not in the queue are left out."""
        with self.ctx.read() as w:
            return entries.views_with_referrals(w.s, app_ids)

    def application_by_pin(self, pin: str) -> dict:
        with self.ctx.read() as w:
            app_id = entries.id_of_pin(w.s, pin)
            if app_id is None:
                raise NotFound("entry_unknown_pin", field="pin")
            return entries.view_with_referral(w.s, app_id)

    def positions(self, app_id: str) -> list[PositionExplanation]:
        """The child's position for each of its preferences, with why."""
        with self.ctx.read() as w:
            policy, _ = w.policy()
            row = entries.ranking_row(w.s, app_id)
            if row is None:
                raise NotFound("entry_unknown", field="application_id", application_id=app_id)
            if row.status != "queued" or not row.preferences:
                return []
            me = entries.applicant(row)
            # One query for all the preferences; the rule sorts them out.
            waiting = [me] + [entries.applicant(r) for r in entries.competitors(w.s, list(me.preferences), me.cohort)
                              if r.id != app_id]
            return [explain_position(app_id, waiting, policy, kg) for kg in me.preferences]

    def public_queue(self, kg: str, cohort: int, language: str, *, limit: int = 100, offset: int = 0) -> dict:
        """The anonymised queue of one kindergarten, cohort and language:
        masked names, queue date and category, in rank order; with each
        child's number in this language and its position as the parent's
        cabinet shows it (among the cohort's children of every language)."""
        with self.ctx.read() as w:
            policy, _ = w.policy()
            kindergartens.get(w.s, kg)
            # The cabinet's position counts every language (domain/positions.py);
            # places are per language, so the list is, and shows both numbers.
            every = sorted(entries.competitors(w.s, [kg], cohort), key=lambda r: rank_key(entries.applicant(r), policy))
            position = {r.id: i + 1 for i, r in enumerate(every)}
            ranked = [r for r in every if r.language == language]
            on = self.ctx.today(policy)
            shown = [{
                "number": offset + i + 1,
                "position": position[r.id],
                "child": r.masked_name,
                "queue_date": aware(r.queue_date),
                "category": r.category,
                "preference": list(r.preferences).index(kg) + 1,
                "eligible_today": reached_min_age(r.birth_date, on, policy),
            } for i, r in enumerate(ranked[offset:offset + limit])]
            return {"kindergarten": kg, "cohort": cohort, "language": language, "total": len(ranked),
                    "places": places.group_views(w.s, kg, cohort, language), "entries": shown}

    def places(self, kg: str | None = None) -> list[dict]:
        """The register of places (of one kindergarten)."""
        with self.ctx.read() as w:
            return places.register(w.s, kg)

    def scheduled_publications(self, district: str | None = None, kindergarten: str | None = None) -> list[dict]:
        """The publications to come, in the schedule's order (domain/placement.py:
        by moment, then the older birth year and the higher-ranked category first)."""
        with self.ctx.read() as w:
            policy, _ = w.policy()
            kgs = None
            if district is not None:
                kgs = [k["id"] for k in kindergartens.listed(w.s, district, closed=True)]
            if kindergarten is not None:
                kgs = [k for k in (kgs if kgs is not None else [kindergarten]) if k == kindergarten]
            found = places.scheduled(w.s, kgs)
            return sorted(found, key=lambda p: schedule_key(Scheduled(
                p["publish_at"], p["cohort"], p["for_category"], p["kindergarten"], p["language"]), policy))
