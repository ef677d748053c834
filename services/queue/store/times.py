"""Moments as stored: always UTC."""
from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("a moment must carry its time zone")
    return t.astimezone(UTC)


def micros(t: datetime) -> int:
    """Microseconds since the epoch: exact, and cheap to store by the million."""
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
