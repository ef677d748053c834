"""The gateway's own data of closed applications, anonymised when the
retention policy says (kezek/retention.py): the cabinet's position history
of the application goes, the voucher decision keeps its outcome and loses
its reason, and the public projection forgets which pseudonym and referral
refs the application had (the published public events carry pseudonyms
only and stay as published)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.consumer import IdempotentConsumer
from kezek.retention import CLOSED, ERASURE_GRANTED, Closed, RetentionJob, ServiceRetention
from services.gateway.models import PositionPoint, VoucherDecision, outbox, retention_clock, trail
from services.gateway.public.models import ParkedEvent, PublicChild, PublicReferral

CONSUMER_NAME = "gateway-retention"


class GatewayAnonymiser:
    fields = ("position_points (deleted)", "voucher_decisions.reason",
              "public_children, public_referrals, public_parked_events (the projection's keys, deleted)")

    def anonymise(self, s: Session, closed: list[Closed], at: datetime) -> tuple[dict[str, int], list[str]]:
        ids = [c.application_id for c in closed]
        n = {
            "position_points": s.execute(sa.delete(PositionPoint).where(PositionPoint.application_id.in_(ids))).rowcount,
            "voucher_decisions": s.execute(sa.update(VoucherDecision).where(VoucherDecision.application_id.in_(ids))
                                           .values(reason="")).rowcount,
            "public_children": s.execute(sa.delete(PublicChild).where(PublicChild.application_id.in_(ids))).rowcount,
            "public_referrals": s.execute(sa.delete(PublicReferral).where(
                PublicReferral.application_id.in_(ids))).rowcount,
            "public_parked_events": s.execute(sa.delete(ParkedEvent).where(ParkedEvent.application_id.in_(ids))).rowcount,
        }
        return {k: v for k, v in n.items() if v}, [f"application:{i}" for i in ids]


RETENTION = ServiceRetention("gateway", retention_clock, trail, GatewayAnonymiser())
retention_job = RETENTION.job
build_retention = RETENTION.job_on_own_database


def make_consumer(job: RetentionJob, bootstrap: str, prefix: str = "kezek", **kafka_config) -> IdempotentConsumer:
    """application.closed (the gateway's retention clock) and a granted erasure."""
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.application"], bootstrap=bootstrap,
                              sessions=job.sessions, outbox=outbox, handle=job.route, types=(CLOSED, ERASURE_GRANTED),
                              **kafka_config)
