"""The published figures (DOMAIN.md section 7: public, no personal data) of
one district or the whole country, for a month in local time: waiting
children by cohort and language, the register now, places published,
referrals issued and how they ended, children who left, and the median days
a waiting child has waited."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from kezek import calendar as kcal
from services.queue.domain.refusals import Invalid
from services.queue.store import figures as store
from services.queue.usecases.work import Context

MONTH = re.compile(r"^((?:19[7-9]|2[01]\d)\d)-(0[1-9]|1[0-2])$")   # 1970-01 to 2199-12


def month_bounds(month: date, country: str) -> tuple[datetime, datetime]:
    """The month's first and the next month's first moment, local time, in UTC."""
    cal = kcal.calendar(country)
    after = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return cal.start_of_day(month).astimezone(UTC), cal.start_of_day(after).astimezone(UTC)


def parse_month(text: str | None, today: date) -> date:
    """"2027-03" -> 1 March 2027; None: this month."""
    if not text:
        return today.replace(day=1)
    m = MONTH.match(text)
    if not m:
        raise Invalid("month_format", field="month")
    return date(int(m.group(1)), int(m.group(2)), 1)


class Figures:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def districts(self) -> list[dict]:
        with self.ctx.read() as w:
            return store.districts(w.s)

    def of(self, district: str | None, month: str | None = None) -> dict:
        """The figures of `district` (None: every district together)."""
        with self.ctx.read() as w:
            policy, _ = w.policy()
            today = w.ctx.today(policy)
            first = parse_month(month, today)
            start, end = month_bounds(first, policy.country)
            return self._figures(w.s, district, first, start, end, w.now())

    def overview(self, month: str | None = None) -> dict:
        """The country's figures and each district's, for the public pages."""
        with self.ctx.read() as w:
            policy, _ = w.policy()
            first = parse_month(month, w.ctx.today(policy))
            start, end = month_bounds(first, policy.country)
            now = w.now()
            return {"month": first.strftime("%Y-%m"), "total": self._figures(w.s, None, first, start, end, now),
                    "districts": [self._figures(w.s, d["district"], first, start, end, now)
                                  for d in store.districts(w.s)]}

    @staticmethod
    def _figures(s, district: str | None, first: date, start: datetime, end: datetime, now: datetime) -> dict:
        kgs = store.kindergartens_of(s, district)
        ids = None if district is None else [k for k, _ in kgs]
        by_group = store.waiting(s, ids)
        return {
            "district": district, "month": first.strftime("%Y-%m"),
            "kindergartens": sum(1 for _, is_open in kgs if is_open),
            "waiting": by_group, "waiting_total": store.waiting_total(s, ids),
            "median_days_waiting": store.median_days_waiting(s, ids, now),
            "places": {**store.places(s, ids), **store.published(s, ids, start, end)},
            "referrals": store.referrals(s, ids, start, end),
        }
