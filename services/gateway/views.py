"""What the cabinet shows of a queue entry, whatever the queue service's
exact field names: its application view (`kindergarten` or
`kindergarten_id`, a single live `referral` or a list of referrals) and its
position explanations (`ahead_by_category`, `ahead_same_category_earlier`)
are brought to one shape here, so the templates and the mobile API see one."""
from __future__ import annotations

from kezek.categories import ALWAYS_OFFERED, DEFAULT_RANKING, KNOWN  # noqa: F401 (the portal's api asks views)
from workflows.rules import LIVE_STATES

# The categories the portal can name, in the order it offers them; the queue's
# policy says which of them run (the voucher programme only in some places).
CATEGORIES = KNOWN
# Those a caseworker confirms when the queue's policy cannot be read.
CONFIRMED_BY_DEFAULT = frozenset(code for code, _rank, needs in DEFAULT_RANKING if needs)


def position(p: dict, names: dict[str, str]) -> dict:
    kg = str(p.get("kindergarten_id") or p.get("kindergarten") or "")
    ahead = p.get("ahead")
    if not isinstance(ahead, dict):
        if "ahead_by_category" in p or "ahead_same_category_earlier" in p:
            ahead = {"higher_category": sum((p.get("ahead_by_category") or {}).values()),
                     "earlier_queue_date": int(p.get("ahead_same_category_earlier") or 0)
                     + int(p.get("ahead_same_moment") or 0)}
        else:
            ahead = None
    return {"kindergarten_id": kg, "kindergarten_name": p.get("kindergarten_name") or names.get(kg) or kg,
            "position": p.get("position"), "ahead": ahead, "explanation": p.get("explanation") or p.get("text")}


def referral(r: dict, names: dict[str, str], standing: dict | None = None, today: str | None = None) -> dict:
    """`standing` is where the referral stands (services/gateway/referrals.py
    `standing`, from the queue's record: state, window, deadline, extended,
    extension_day, the last None outside the confirmation window and once
    extended): the extension is offered only on its `extension_day`;
    cancelling, while the referral is live. The workflow checks either act
    again when it comes."""
    kg = str(r.get("kindergarten_id") or r.get("kindergarten") or "")
    standing = standing or {}
    state = standing.get("state") or r.get("state") or r.get("status") or ""
    live = r.get("status") == "live" or state in LIVE_STATES
    if "actions" in r:
        actions = list(r["actions"] or [])
    else:
        actions = ["cancel"] if live else []
        if live and today and standing.get("extension_day") == today:
            actions.append("extend")
    # A closed referral (enrolled, cancelled ...) has no deadline left to show.
    deadline = (standing.get("deadline") or r.get("deadline")) if live else None
    return {"referral_id": str(r.get("referral_id") or r.get("id")), "kindergarten_id": kg,
            "kindergarten_name": r.get("kindergarten_name") or names.get(kg) or kg, "status": state,
            "stage": standing.get("window") or r.get("stage")
            or ("confirmation" if state == "awaiting_confirmation" else "enrolment"),
            "issued_at": r.get("issued_at"), "deadline": deadline, "actions": actions}


def entry(raw: dict, positions: list[dict] | None, names: dict[str, str]) -> dict:
    found = raw.get("positions") if positions is None else positions
    return {"status": raw.get("status"), "category": raw.get("category"), "queue_date": raw.get("queue_date"),
            "paused_until": raw.get("paused_until"), "left_at": raw.get("left_at"), "cohort": raw.get("cohort"),
            "language": raw.get("language"), "history": raw.get("history") or [],
            "positions": [position(p, names) for p in (found or [])]}


def live_referral(raw: dict) -> dict | None:
    return raw.get("referral") or None
