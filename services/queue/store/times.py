"""Moments as stored: always UTC."""
from __future__ import annotations

from datetime import UTC, datetime

from kezek.db import aware, utc  # noqa: F401  (the queue's use cases import them from here)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(t: datetime) -> int:
    """Microseconds since the epoch: exact, and cheap to store by the million."""
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
