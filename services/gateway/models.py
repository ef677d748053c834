"""The gateway service's tables. Its database is its own (kezek_gateway)."""
from sqlalchemy.orm import DeclarativeBase

from kezek.ratelimit import RateLimits
from kezek.tables import service_tables


class Base(DeclarativeBase):
    pass


outbox, trail, retention_clock = service_tables(Base, "gateway")
rate_limits = RateLimits.table_in(Base.metadata)   # shared by every gateway replica


from datetime import datetime  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Mapped, mapped_column  # noqa: E402


class PositionPoint(Base):
    """A child's position for one kindergarten at one moment, from the
    queue's application.position_changed.v1: the cabinet's chart."""
    __tablename__ = "position_points"
    __table_args__ = (sa.Index("ix_position_points_application", "application_id", "at"),)
    # An event id, or `seen-<uuid>` for a position the cabinet showed itself.
    event_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    application_id: Mapped[str] = mapped_column(sa.String(100))
    kindergarten_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    position: Mapped[int] = mapped_column(sa.Integer)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class VoucherDecision(Base):
    """The district commission's decision on a voucher application, from
    verification.voucher_decided.v1: the cabinet shows it to the parent."""
    __tablename__ = "voucher_decisions"
    application_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(36))
    decision: Mapped[str] = mapped_column(sa.String(20))
    decision_number: Mapped[int] = mapped_column(sa.Integer)
    benefit_type: Mapped[str | None] = mapped_column(sa.String(30), nullable=True)
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    decided_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class CabinetChange(Base):
    """That something a family's cabinet shows has changed, as an event told
    (services/gateway/readmodel.py): one row per `parent:<id>` or
    `application:<id>` an event names. Only ever inserted (consumers never
    wait for each other's locks), the newest `seq` of a key is its version;
    rows older than an hour are deleted. No personal data: the cabinet
    itself is kept in memory."""
    __tablename__ = "cabinet_changes"
    __table_args__ = (sa.Index("ix_cabinet_changes_key_seq", "key", "seq"),
                      sa.Index("ix_cabinet_changes_at", "at"))
    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(120))
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
