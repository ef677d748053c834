"""Why a member of staff looks at a child's personal data (DOMAIN.md
section 7): the reason recorded with every look (`AuditTrail.look(why=)`).

A look made in the course of the staff's own work (a case, an abuse flag, a
voucher application, a kindergarten's list of its children) has that work as
its reason, recorded as a short code (`work:case`). A search by PIN reaches
any child of the caller's scope, so the member of staff says why before it
runs: one of `PURPOSES`, with a note where the purpose needs one (a request
from outside names its reference). The reason is kept as `<purpose>` or
`<purpose>: <note>`; `reason_parts` reads it back for the pages.

Pure: standard library only.
"""
from __future__ import annotations

PARENT_VISIT = "parent_visit"          # the parent came in, called or wrote about the child
DOCUMENT_CHECK = "document_check"      # checking documents brought for a case
ABUSE_CHECK = "abuse_check"            # checking a suspected abuse of a privilege
OFFICIAL_REQUEST = "official_request"  # a court's, prosecutor's or police request: its reference in the note
OTHER = "other"                        # said in the note
PURPOSES = (PARENT_VISIT, DOCUMENT_CHECK, ABUSE_CHECK, OFFICIAL_REQUEST, OTHER)
NOTE_REQUIRED = frozenset({OFFICIAL_REQUEST, OTHER})
NOTE_MIN, NOTE_MAX = 3, 200
WORK = "work"


class PurposeError(ValueError):
    """A search's purpose is missing or wrong; `field` names the form field
    ("purpose" or "note"), `code` the rule ("required", "choice",
    "note_required", "too_long")."""

    def __init__(self, field: str, code: str, **params: object):
        super().__init__(f"{field}: {code}")
        self.field, self.code, self.params = field, code, params


def search_reason(purpose: str | None, note: str | None) -> str:
    """The reason of a search by PIN, checked; raises every problem as the first PurposeError."""
    problems = purpose_problems(purpose, note)
    if problems:
        raise problems[0]
    note = _clean(note)
    return f"{purpose}: {note}" if note else str(purpose)


def purpose_problems(purpose: str | None, note: str | None) -> list[PurposeError]:
    out: list[PurposeError] = []
    note = _clean(note)
    if not purpose:
        out.append(PurposeError("purpose", "required"))
    elif purpose not in PURPOSES:
        out.append(PurposeError("purpose", "choice"))
    elif purpose in NOTE_REQUIRED and len(note) < NOTE_MIN:
        out.append(PurposeError("note", "note_required"))
    if len(note) > NOTE_MAX:
        out.append(PurposeError("note", "too_long", max=NOTE_MAX))
    return out


def work(what: str) -> str:
    """The reason of a look made in the course of `what` (case, abuse, voucher, kindergarten ...)."""
    return f"{WORK}:{what}"


def reason_parts(reason: str | None) -> tuple[str, str]:
    """(code, note) of a recorded reason: ("work:case", ""), ("official_request", "No. 12/3")."""
    if not reason:
        return "", ""
    code, _, note = reason.partition(": ")
    return code, note


def _clean(note: str | None) -> str:
    return " ".join((note or "").split())
