"""The queue's SQL, behind the use cases: plain functions of a session.
Where PostgreSQL and the generic path (SQLite) differ, each has its module:
`allocation_pg` / `allocation`, `positions_pg` / `positions`."""
from __future__ import annotations

from collections.abc import Iterator


def chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
