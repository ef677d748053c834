"""The verification service's tables. Its database is its own (kezek_verification)."""
from sqlalchemy.orm import DeclarativeBase

from kezek.outbox import Outbox


class Base(DeclarativeBase):
    pass


outbox = Outbox(Base.metadata, source="verification")
