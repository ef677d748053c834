"""Request rate limits in a store every replica of a service shares: its own
database. One row per key and window, one upsert per request:

    limits = RateLimits(engine, RateLimits.table_in(metadata))
    wait = limits.hit("parent:42", limit=300)       # 0.0, or seconds to wait
    if wait:
        raise TooManyRequests(wait)                # 429 with Retry-After

Fixed windows of `window` seconds: simple and cheap, at the price of a burst
of up to twice the limit across a window's edge. A key already over its
limit in the current window is answered from memory, so a flood from one
key costs the database nothing more. Old windows are deleted now and then
by whichever replica comes first. The table is created by a migration with
`create_rate_limit_table(op)`.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

TABLE = "rate_limits"
_SWEEP_EVERY = 1000          # hits between two deletions of old windows
_KEEP_SECONDS = 3600         # windows older than this are deleted


def _columns() -> list[sa.Column]:
    return [sa.Column("key", sa.String(100), primary_key=True),
            sa.Column("window_start", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("hits", sa.Integer, nullable=False)]


def create_rate_limit_table(op) -> None:
    """Migration step."""
    op.create_table(TABLE, *_columns())
    op.create_index(f"ix_{TABLE}_window_start", TABLE, ["window_start"])


def drop_rate_limit_table(op) -> None:
    op.drop_table(TABLE)


def _key(key: str) -> str:
    return key if len(key) <= 100 else key[:40] + "#" + hashlib.sha256(key.encode()).hexdigest()[:48]


class RateLimits:
    def __init__(self, engine: sa.Engine, table: sa.Table, *, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.table = table
        self.clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._over: dict[str, tuple[int, int]] = {}     # key -> (window start, limit) known exceeded
        self._lock = threading.Lock()
        self._hits = 0

    @staticmethod
    def table_in(metadata: sa.MetaData) -> sa.Table:
        return sa.Table(TABLE, metadata, *_columns(), sa.Index(f"ix_{TABLE}_window_start", "window_start"))

    def hit(self, key: str, limit: int, window: int = 60, cost: int = 1) -> float:
        """Counts one request of `key`; 0.0 when it is within `limit` per
        `window` seconds, else the seconds until the window ends."""
        now = self.clock()
        start = int(now // window) * window
        key = _key(key)
        left = start + window - now
        with self._lock:
            if self._over.get(key, (None, None)) == (start, limit):
                return left
        t = self.table
        stmt = self._insert(t).values(key=key, window_start=start, hits=cost)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.key, t.c.window_start],
                                          set_={"hits": t.c.hits + cost}).returning(t.c.hits)
        with self.engine.begin() as conn:
            hits = conn.execute(stmt).scalar_one()
        self._sweep(now)
        if hits <= limit:
            return 0.0
        with self._lock:
            if len(self._over) > 10_000:
                self._over = {k: v for k, v in self._over.items() if v[0] == start}
            self._over[key] = (start, limit)
        return left

    def _sweep(self, now: float) -> None:
        with self._lock:
            self._hits += 1
            if self._hits % _SWEEP_EVERY:
                return
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.window_start < int(now) - _KEEP_SECONDS))
