"""The family's own copy (DOMAIN.md section 7): everything registration
holds about the verified parent's account: the account, each application as
it was filed (the child, the parent's data and document, the address, the
contacts), and the acts recorded on them (the audit trail's acts, staff
named by role only)."""
from __future__ import annotations

import sqlalchemy as sa

from kezek.audit import ACT
from services.registration.models import retention_clock, trail
from services.registration.usecases.context import Context, aware, family_of


def _plain(value):
    return aware(value).isoformat() if hasattr(value, "tzinfo") else (
        value.isoformat() if hasattr(value, "isoformat") else value)


class Family(Context):
    def family_copy(self, account_id: str) -> dict:
        """Only ever for the verified parent's own account."""
        with self.sessions() as s:
            account, apps = family_of(s, account_id)
            subjects = [f"account:{account_id}"] + [f"application:{a.id}" for a in apps]
            t = trail.table
            acts = s.execute(sa.select(t).where(t.c.subject.in_(subjects), t.c.kind == ACT)
                             .order_by(t.c.id)).mappings().all()
            clocks = {a.id: retention_clock.get(s, a.id) for a in apps}
            return {
                "account": {"id": account.id, "email": account.email, "pin": account.pin,
                            "surname": account.surname, "name": account.name, "patronymic": account.patronymic,
                            "phone": account.phone, "locale": account.locale,
                            "tunduk_linked": account.tunduk_sub is not None,
                            "created_at": _plain(account.created_at), "activated_at": _plain(account.activated_at)},
                "applications": [{
                    "id": a.id, "country": a.country, "status": a.status, "submitted_at": _plain(a.submitted_at),
                    "child": {"pin": a.child_pin, "surname": a.child_surname, "name": a.child_name,
                              "patronymic": a.child_patronymic, "birth_date": _plain(a.child_birth_date),
                              "sex": a.child_sex},
                    "parent": a.parent, "address": a.address, "phone": a.phone, "email": a.email,
                    "category": a.category, "language": a.language, "preferences": a.preferences,
                    "anonymised_at": _plain((clocks[a.id] or {}).get("anonymised_at")),
                } for a in apps],
                "history": [{"at": _plain(r["at"]), "action": r["action"], "subject": r["subject"],
                             "by": r["actor"] if r["actor_role"] in ("parent", "service")
                             else f"staff ({r['actor_role']})",
                             "outcome": r["outcome"]} for r in acts],
            }
