"""The voucher programme in the cabinet (DOMAIN.md section 2 point 9): the
gateway keeps the district commission's decisions that the verification
service publishes (verification.voucher_decided.v1, one row per
application, idempotent by event id) and shows the parent those of their
own applications."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.consumer import IdempotentConsumer
from kezek.db import aware
from services.gateway import readmodel
from services.gateway.models import VoucherDecision, outbox

CONSUMER_NAME = "gateway-vouchers"
DECIDED = "verification.voucher_decided.v1"
CATEGORY = "voucher"


def record(session: Session, event) -> None:
    data = event.data
    decided_at = datetime.fromisoformat(data["decided_at"].replace("Z", "+00:00"))
    known = session.get(VoucherDecision, data["application_id"], with_for_update=True)
    if known is not None and aware(known.decided_at) > decided_at:
        return   # a redelivered older decision never hides a newer one
    session.merge(VoucherDecision(
        application_id=data["application_id"], event_id=event.id, decision=data["decision"],
        decision_number=int(data["decision_number"]), benefit_type=data.get("benefit_type"),
        reason=data.get("reason") or "", decided_at=decided_at))
    readmodel.bump(session, [readmodel.application_key(data["application_id"])])   # the decision the copy holds


def decisions(sessions: sessionmaker[Session], application_ids: list[str]) -> dict[str, dict]:
    """The decisions on these applications (the caller's own), by application id."""
    if not application_ids:
        return {}
    with sessions() as s:
        rows = s.scalars(sa.select(VoucherDecision).where(VoucherDecision.application_id.in_(application_ids)))
        return {r.application_id: {"status": r.decision, "decision_number": r.decision_number,
                                   "benefit_type": r.benefit_type, "reason": r.reason or None,
                                   "decided_at": aware(r.decided_at).isoformat()} for r in rows}


def view(app: dict, decided: dict | None) -> dict | None:
    """What the cabinet says of an application's voucher: None when it is not
    a voucher application; "pending" until the commission has decided."""
    queue = app.get("queue") or {}
    if decided is None and CATEGORY not in (app.get("category"), queue.get("category")):
        return None
    return decided or {"status": "pending"}


def make_consumer(sessions: sessionmaker[Session], bootstrap: str, prefix: str = "kezek",
                  **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.verification"], bootstrap=bootstrap,
                              sessions=sessions, outbox=outbox, handle=record, types=(DECIDED,), **kafka_config)
