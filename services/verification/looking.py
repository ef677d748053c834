"""Why a member of staff looked at a child's data (DOMAIN.md section 7;
kezek/looks.py): the reason of a look made in the course of the
department's work, and the search by PIN, which says why before it runs.
Pure, as domain.py."""
from __future__ import annotations

from dataclasses import dataclass

from kezek import looks
from kezek import pin as kpin
from kezek.refusals import FieldError
from services.verification.domain import _raise_if, err

# ------------------------------------------------------------ why a look happened (DOMAIN.md section 7)
#
# Every look at a child's data is recorded with why (kezek/looks.py). A page
# opened in the course of the department's work (a case, an abuse flag, a
# voucher application, the worklist) has that work as its reason; nobody is
# asked. A search by PIN reaches any child of the district, so the member of
# staff says why before it runs.

_WORK_REASONS = {"worklist.view": "worklist", "case.view": "case", "scan.view": "case", "abuse.list": "abuse",
                 "abuse.view": "abuse", "voucher.list": "voucher", "voucher.view": "voucher",
                 "voucher.print": "voucher", "audit.search": "audit", "child.looks": "audit"}


def look_reason(action: str) -> str | None:
    """The reason of a look made in the course of the department's work."""
    what = _WORK_REASONS.get(action)
    return looks.work(what) if what else None


@dataclass(frozen=True)
class ChildSearch:
    pin: str
    purpose: str
    note: str
    reason: str


def validate_child_search(pin: str, purpose: str, note: str, country: str) -> ChildSearch:
    """A search by PIN: the PIN of the country, a purpose, and the note where
    the purpose needs one. Every problem at once."""
    errors: list[FieldError] = []
    pin = kpin.digits_only(pin)
    if not pin:
        errors.append(err("pin", "required"))
    else:
        try:
            kpin.parse(pin, country)
        except kpin.PinError:
            errors.append(err("pin", "pin_invalid"))
    errors += [err(p.field, p.code, **p.params) for p in looks.purpose_problems(purpose, note)]
    _raise_if(errors)
    reason = looks.search_reason(purpose, note)
    return ChildSearch(pin, purpose, looks.reason_parts(reason)[1], reason)
