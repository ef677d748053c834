"""A family's request to erase its application (DOMAIN.md section 7): the
data is kept only as long as the application needs it and the law requires.
The request is honoured for an application that closed without a place
(removed, aged out, refused): nothing obliges Kezek to keep it, so it is
anonymised at once, as at the end of its retention period. It is refused,
with the reason, while the data is what keeps a child's place or a record
the law requires."""
from __future__ import annotations

from datetime import datetime

from services.queue.domain.refusals import Refused

# Closed without a place: nothing to keep for a kindergarten's records.
ERASABLE = frozenset({"removed", "aged_out", "refused"})


def erasure_refusal(status: str | None, outcome: str | None, keep_until: datetime | None,
                    now: datetime) -> Refused | None:
    """Why the erasure of an application in `status` (the queue entry's;
    None: the queue never held one) that closed as `outcome` (None: it has
    not closed) is refused now; None when it may be erased."""
    if status in ("queued", "paused"):
        return Refused("erasure_in_queue", field="application_id")
    if status == "referred":
        return Refused("erasure_holds_referral", field="application_id")
    if status == "enrolled":
        return Refused("erasure_enrolled", field="application_id")
    if outcome in ERASABLE:
        return None
    if outcome is None:
        return Refused("erasure_not_closed", field="application_id")
    until = keep_until.date().isoformat() if keep_until else "-"
    if keep_until is None or now < keep_until:
        return Refused("erasure_within_retention", field="application_id", outcome=outcome, until=until)
    return None
