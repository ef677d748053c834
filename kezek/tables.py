"""What every service's database keeps beside its own tables: the outbox
(kezek/outbox.py), the audit trail (kezek/audit.py) and the retention clock
(kezek/retention.py), and the type map of its declarative base. One place, so
that a service's models.py declares only its own tables."""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from kezek.audit import AuditTrail
from kezek.outbox import Outbox
from kezek.retention import RetentionClock
from kezek.sealing import keep_lookup_hashes

# Moments keep their offset; open records are JSON.
TYPE_MAP = {datetime: sa.DateTime(timezone=True), dict: sa.JSON, list: sa.JSON}


class ServiceTables(NamedTuple):
    outbox: Outbox
    audit: AuditTrail
    retention_clock: RetentionClock     # when each closed application closed and how


def service_tables(base, source: str) -> ServiceTables:
    """The shared tables in `base`'s metadata, the outbox's events marked as
    `source`'s; every ORM write under `base` keeps the lookup hashes of its
    sealed columns (kezek/sealing.py)."""
    keep_lookup_hashes(base)
    return ServiceTables(Outbox(base.metadata, source=source), AuditTrail(base.metadata),
                         RetentionClock(base.metadata))
