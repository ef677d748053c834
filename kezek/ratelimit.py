"""Request rate limits in a store every replica of a service shares: its own
database. One row per key and window, one upsert per request (or, with
`flush_seconds`, per key and flush):

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

With `flush_seconds` (the gateway's, where every request is counted), a
replica counts in memory and adds its counts to the shared rows in one
transaction (one statement per thousand keys) at most that often: a key is judged by the shared count as of
the last flush plus what this replica counted since. A key flushes at once
when it has counted here a sixteenth of the room left under its limit by
the shared count it knows (at least one hit), so the nearer a key comes to
its limit, the more often its replicas share their counts (at every hit at
the end): the shared count is exact before anyone is refused, and a few
replicas together let a key pass its limit by about one hit each.
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
_SHARE_OF_ROOM = 16          # batched: a key flushes at this share of the room left under its limit
_KEEP_SECONDS = 3600         # windows older than this are deleted
_FLUSH_ROWS = 1000           # keys added by one statement of a flush


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
    def __init__(self, engine: sa.Engine, table: sa.Table, *, clock: Callable[[], float] = time.time,
                 flush_seconds: float = 0.0):
        self.engine = engine
        self.table = table
        self.clock = clock
        self.flush_seconds = flush_seconds
        # (key, window start) -> [shared count at the last flush, counted here since]
        self._counts: dict[tuple[str, int], list[int]] = {}
        self._flushed_at = clock()
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._over: dict[str, tuple[int, int]] = {}     # key -> (window start, limit) known exceeded
        self._lock = threading.Lock()
        self._hits = 0
        upsert = self._insert(table)
        self._upsert_many = upsert.on_conflict_do_update(
            index_elements=[table.c.key, table.c.window_start], set_={"hits": table.c.hits + upsert.excluded.hits},
        ).returning(table.c.key, table.c.window_start, table.c.hits)

    @staticmethod
    def table_in(metadata: sa.MetaData) -> sa.Table:
        return sa.Table(TABLE, metadata, *_columns(), sa.Index(f"ix_{TABLE}_window_start", "window_start"))

    def hit(self, key: str, limit: int, window: int = 60, cost: int = 1) -> float:
        """Counts one request of `key`; 0.0 when it is within `limit` per
        `window` seconds, else the seconds until the window ends."""
        return self._hit(key, limit, window, cost, in_memory=False)

    def hit_in_memory(self, key: str, limit: int, window: int = 60, cost: int = 1) -> float | None:
        """`hit` when it needs no database (batched counting, no flush due
        by the timer or by the key nearing its limit), for a caller on the
        event loop's thread; None, with nothing counted, when it does: call
        `hit` off the loop then."""
        return self._hit(key, limit, window, cost, in_memory=True)

    def _hit(self, key: str, limit: int, window: int, cost: int, *, in_memory: bool) -> float | None:
        now = self.clock()
        start = int(now // window) * window
        key = _key(key)
        left = start + window - now
        with self._lock:
            if self._over.get(key, (None, None)) == (start, limit):
                return left
        if self.flush_seconds > 0:
            # old windows are swept by the flushes
            hits = self._count(key, start, limit, cost, now, in_memory=in_memory)
            if hits is None:
                return None
        elif in_memory:
            return None
        else:
            with self.engine.begin() as conn:
                hits = self._add(conn, key, start, cost)
            self._sweep(now)
        if hits <= limit:
            return 0.0
        with self._lock:
            if len(self._over) > 10_000:
                self._over = {k: v for k, v in self._over.items() if v[0] == start}
            self._over[key] = (start, limit)
        return left

    def _add(self, conn, key: str, start: int, cost: int) -> int:
        t = self.table
        stmt = self._insert(t).values(key=key, window_start=start, hits=cost)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.key, t.c.window_start],
                                          set_={"hits": t.c.hits + cost}).returning(t.c.hits)
        return conn.execute(stmt).scalar_one()

    def _add_many(self, conn, counts: list[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
        """Adds (key, window start, hits) in one statement; the new totals.
        One statement text for any number of keys, its rows as parameters
        (SQLAlchemy's "insertmanyvalues" sends them as one multi-row upsert):
        with the rows inline every flush was a new statement to compile,
        about 2 ms of CPU each against 0.2."""
        rows = [{"key": k, "window_start": s, "hits": n} for k, s, n in counts]
        return {(k, s): hits for k, s, hits in conn.execute(self._upsert_many, rows)}

    def _count(self, key: str, start: int, limit: int, cost: int, now: float, *,
               in_memory: bool = False) -> int | None:
        """Counted in memory; flushed when due or when the key nears its
        limit (with `in_memory`, nothing counted and None then)."""
        with self._lock:
            known = self._counts.setdefault((key, start), [0, 0])
            # Near the limit the other replicas' counts matter: a key flushes
            # once it has counted here a sixteenth of the room the shared
            # count left, so flushes come at every hit as the limit nears, and
            # a key far from it (a family polling its cabinet) waits for the timer.
            room = max(limit - known[0], 0)
            due = (now - self._flushed_at >= self.flush_seconds
                   or known[1] + cost >= max(1, room // _SHARE_OF_ROOM))
            if due and in_memory:
                return None
            known[1] += cost
            estimate = known[0] + known[1]
        if not due:
            return estimate
        self.flush(now)
        with self._lock:
            known = self._counts.get((key, start))
            return known[0] + known[1] if known else estimate

    def flush(self, now: float | None = None) -> None:
        """Adds what this replica counted to the shared rows and learns the
        shared counts (a hit reaching its limit does it at once)."""
        now = self.clock() if now is None else now
        with self._lock:
            self._flushed_at = now
            pending = [(k, s, c[1]) for (k, s), c in self._counts.items() if c[1]]
            for k, s, n in pending:
                self._counts[(k, s)][1] -= n
        totals = {}
        try:
            with self.engine.begin() as conn:
                pending.sort()      # every replica locks the rows in one order
                for at in range(0, len(pending), _FLUSH_ROWS):
                    totals.update(self._add_many(conn, pending[at:at + _FLUSH_ROWS]))
        except Exception:
            with self._lock:      # counted again at the next flush, never lost
                for k, s, n in pending:
                    self._counts.setdefault((k, s), [0, 0])[1] += n
            raise
        self._sweep(now)
        with self._lock:
            for ks, total in totals.items():
                self._counts.setdefault(ks, [0, 0])[0] = total
            # Windows of the last hour are kept (the longest any caller counts).
            self._counts = {ks: c for ks, c in self._counts.items() if c[1] or ks[1] + _KEEP_SECONDS > now}

    def _sweep(self, now: float) -> None:
        with self._lock:
            self._hits += 1
            if self._hits % _SWEEP_EVERY:
                return
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.window_start < int(now) - _KEEP_SECONDS))
