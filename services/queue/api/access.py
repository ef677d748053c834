"""Who may use each route of the queue's API (DOMAIN.md section 7), as data:
each route names one of these permissions (kezek.trust checks it), and a
route that loads a child's entry checks its scope with `entry_in_scope`.

| permission    | who                                                                 |
| ------------- | ------------------------------------------------------------------- |
| READ          | any verified caller: every service, staff, a parent (no personal data) |
| ADMIN         | an administrator                                                    |
| PUBLISH       | an administrator; a kindergarten's staff for it; a district officer for its district |
| JOIN          | the registration service; an administrator (the console)            |
| ENTRY         | the parent of the family; staff whose kindergarten or district the child lists or holds; admin, operator |
| FIND_BY_PIN   | staff in scope as for ENTRY (a look at personal data: audited); admin |
| FAMILY_ACTS   | the parent of the family; an administrator                          |
| REVOKE        | a supervisor, for a child of the district                           |
| AUDIT         | administrators, operators, supervisors                              |
| FAMILY_LOOKS  | the parent of the family (which offices looked at its entries)      |
| PLACEMENTS    | a kindergarten's staff, its district's officers, admin: its referrals and children (audited looks), a child leaving |
| MANAGE        | an administrator; a district officer for its district: kindergartens created, edited, closed |
"""
from __future__ import annotations

from kezek.settings import SERVICES
from kezek.trust import (ANY, DISTRICT, FAMILY, KINDERGARTEN, STAFF_ROLES, Access, OutOfScope, allow, parent,
                         services, staff)

# Staff who read a child's entry, each in its scope.
_STAFF_IN_SCOPE = (staff("admin", "operator"), staff("caseworker", "supervisor", "district", scope=DISTRICT),
                   staff("kindergarten", scope=KINDERGARTEN))

READ = allow(services(*SERVICES, "cli"), staff(*STAFF_ROLES), parent())
ADMIN = allow(staff("admin"))
PUBLISH = allow(staff("admin"), staff("kindergarten", scope=KINDERGARTEN), staff("district", scope=DISTRICT))
JOIN = allow(services("registration"), staff("admin"))
ENTRY = allow(parent(), *_STAFF_IN_SCOPE)
FIND_BY_PIN = allow(*_STAFF_IN_SCOPE)
FAMILY_ACTS = allow(parent(), staff("admin"))
REVOKE = allow(staff("supervisor", scope=DISTRICT))
AUDIT = allow(staff("admin", "operator", "supervisor"))
FAMILY_LOOKS = allow(parent())
PLACEMENTS = allow(staff("admin"), staff("kindergarten", scope=KINDERGARTEN), staff("district", scope=DISTRICT))
MANAGE = allow(staff("admin"), staff("district", scope=DISTRICT))
STAFF_LOOKS = frozenset(STAFF_ROLES)


def entry_in_scope(access: Access, entry: dict, districts: dict[str, str]) -> None:
    """404 unless the entry lies in the caller's scope: a parent's own child;
    for kindergarten staff a child who lists their kindergarten or holds a
    referral to it; for district staff one who lists (or holds) a
    kindergarten of their district. `districts`: kindergarten -> district."""
    grant, who = access.grant, access.principal
    if grant is None or grant.scope == ANY:
        return
    kgs = set(entry.get("preferences") or [])
    if entry.get("referral"):
        kgs.add(entry["referral"]["kindergarten"])
    if grant.scope == FAMILY:
        access.check(family=entry.get("parent_id"))
    elif grant.scope == KINDERGARTEN:
        access.check(kindergarten=who.kindergarten if who.kindergarten in kgs else None)
    elif grant.scope == DISTRICT:
        access.check(district=who.district if who.district in {districts.get(k) for k in kgs} else None)
    else:  # pragma: no cover - kezek.trust knows no other scope
        raise OutOfScope(field=grant.scope)


def kindergarten_in_scope(access: Access, kindergarten: str, district: str) -> None:
    """Places of a kindergarten: its own staff, its district's officers."""
    grant = access.grant
    if grant is None or grant.scope == ANY:
        return
    if grant.scope == KINDERGARTEN:
        access.check(kindergarten=kindergarten)
    else:
        access.check(district=district)
