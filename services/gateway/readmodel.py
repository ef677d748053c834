"""The cabinet's read model (issue 15): `/api/v1/me` and the cabinet page
answered from the gateway itself, not by asking registration and the queue
(once per child) on every request. (Temporal is never asked for a read:
a live referral's standing comes from the queue's record of it.)

What the services said about a family (registration's `/me`, each
application's queue entry and positions, its position history and voucher
decision, the standing of its live referral) is kept per family in the
gateway's memory, with the versions it was read at. The versions live in the
gateway's database (`cabinet_changes`: a row per change of a `parent:<id>`
or an `application:<id>`, the newest row's number its version; no personal
data) and are bumped by every event that
names the family or one of its applications (`STAMPED`, consumed by
`make_consumer`), and by the gateway's own acts (cancel, extend, remove,
erase, a signed-in parent's submission). A read costs one query: the
family's counters (the reads arriving while one runs share the next); when they are those the copy was read at, and it is
younger than `KEZEK_CABINET_SNAPSHOT_SECONDS`, the copy answers, else the
services are asked again and the copy replaced.

Why it says what the services say once the events are consumed: every
service writes its event in the transaction that changes its state (the
outbox), so when the event is consumed the change is committed. A copy
records the counters read *before* asking the services; an event consumed
after that read changes the counter, so the copy is not used again; an event
consumed before it was committed before the services were asked, so the
copy already shows its change. A bump only ever invalidates, so events
arriving out of order, twice (the consumers are at least once) or for a
family never read change nothing but the next read's cost. What no event
announces (a change of the account's e-mail, the breakdown of the children
ahead when the position stays) is at most `KEZEK_CABINET_SNAPSHOT_SECONDS`
old. The pieces that depend on the reader's moment (today's extension day,
kindergarten names) are worked out on every read from the kept answers.

Personal data stays out of the gateway's database: the copies live in the
memory of each gateway process (at most `CAPACITY` families, the oldest
dropped first), as the session lookups already do."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from kezek.consumer import IdempotentConsumer
from services.gateway.models import CabinetChange, outbox

CONSUMER_NAME = "gateway-cabinet-stamps"
CAPACITY = 20_000
KEEP_SECONDS = 3600          # changes kept; a copy is never used longer (the setting is capped to it)
SWEEP_EVERY = 5000           # rows inserted by a process between two deletions of old ones
_inserted = 0
# Every event that may change what a family's cabinet shows: registration's
# account and applications, the queue's entries and referrals, the
# referral workflows' acts and verification's decisions. Each names the
# parent and/or the application.
STAMPED = (
    "application.submitted.v1", "application.received.v1", "application.refused.v1", "application.queued.v1",
    "application.paused.v1", "application.resumed.v1",
    "application.left.v1", "application.removed.v1", "application.aged_out.v1",
    "application.returned_to_general_queue.v1", "application.closed.v1", "application.erasure_granted.v1",
    "referral.issued.v1", "referral.imported.v1", "referral.extended.v1", "referral.cancelled.v1",
    "referral.enrolled.v1", "referral.expired.v1", "referral.certificate_requested.v1",
    "referral.privilege_confirmed.v1", "referral.privilege_rejected.v1", "referral.deadline_approaching.v1",
    "verification.decision_recorded.v1",
    "verification.privilege_revoked.v1", "verification.certificate_recorded.v1",
)
# Bumped by the consumer that keeps what they change, in its own transaction
# (history.py, vouchers.py): position events are most of a national run's.
BUMPED_ELSEWHERE = ("application.position_changed.v1", "verification.voucher_decided.v1")
TOPICS = ("application", "referral", "verification")
# Events on those topics that name a family or an application but change
# nothing the cabinet shows (a caseworker's flag: what the queue does about
# it comes with the queue's own events).
UNSHOWN = ("verification.abuse_flagged.v1",)


def parent_key(parent_id: str) -> str:
    return f"parent:{parent_id}"[:120]


def application_key(application_id: str) -> str:
    return f"application:{application_id}"[:120]


def keys_of(data: dict) -> list[str]:
    keys = []
    if data.get("parent_id"):
        keys.append(parent_key(str(data["parent_id"])))
    if data.get("application_id"):
        keys.append(application_key(str(data["application_id"])))
    return keys


def bump(session: Session, keys: Iterable[str]) -> None:
    """Something these keys name has changed: in the caller's transaction
    (the event's, or the act's), so a copy read before it is not used again.
    Rows are only inserted: consumers bumping one key never wait for each
    other; now and then rows older than `KEEP_SECONDS` are deleted (a copy
    is never used that long, so a key's version going back cannot make an
    old copy look current)."""
    now = datetime.now(UTC)
    rows = [{"key": k, "at": now} for k in sorted(set(keys))]
    if rows:
        session.execute(sa.insert(CabinetChange), rows)
    global _inserted
    _inserted += len(rows)
    if _inserted >= SWEEP_EVERY:
        _inserted = 0
        session.execute(sa.delete(CabinetChange).where(CabinetChange.at < now - timedelta(seconds=KEEP_SECONDS)))


def record(session: Session, event) -> None:
    record_many(session, [event])


def record_many(session: Session, events: list) -> None:
    """One bump for the keys a batch of events names (one insert, each key
    once): what a copy checks is only whether its keys changed since."""
    bump(session, [k for e in events for k in keys_of(e.data)])


def bump_now(sessions: sessionmaker[Session], keys: Iterable[str]) -> None:
    with sessions() as s, s.begin():
        bump(s, keys)


def versions(sessions: sessionmaker[Session], keys: Iterable[str]) -> dict[str, int]:
    """The version of each key: the newest change's number (0 for a key no
    recent event has named)."""
    keys = list(keys)
    with sessions() as s:
        found = dict(s.execute(sa.select(CabinetChange.key, sa.func.max(CabinetChange.seq))
                               .where(CabinetChange.key.in_(keys)).group_by(CabinetChange.key)).all()) \
            if keys else {}
    return {k: int(found.get(k) or 0) for k in keys}


_VERSIONS_OF_ARRAY = (sa.select(CabinetChange.key, sa.func.max(CabinetChange.seq))
                      .where(CabinetChange.key == sa.any_(sa.bindparam("keys", type_=postgresql.ARRAY(sa.String))))
                      .group_by(CabinetChange.key))


@dataclass
class Copy:
    """What the services said of one family, and the counters read before asking."""
    at: float
    stamps: dict[str, int]
    me: dict                                      # registration's /me
    parts: dict[str, dict] = field(default_factory=dict)   # per application: the queue side, raw
    decided: dict[str, dict] = field(default_factory=dict)  # per application: the voucher decision
    # The JSON API's answer made of it (cabinet.answer): (day, names, bytes).
    answer: tuple[str, dict, bytes] | None = field(default=None, compare=False, repr=False)


class CabinetReadModel:
    def __init__(self, sessions: sessionmaker[Session], max_age: float, *, capacity: int = CAPACITY,
                 clock: Callable[[], float] = time.monotonic):
        self.sessions = sessions
        self.max_age = min(max_age, KEEP_SECONDS)
        self.capacity = capacity
        self.clock = clock
        self._copies: OrderedDict[str, Copy] = OrderedDict()
        self._lock = threading.Lock()
        # The reads waiting for the next query of counters (`checked`).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[tuple[dict[str, int], asyncio.Future]] = []
        self._asking = False
        self._conn: sa.Connection | None = None

    @property
    def enabled(self) -> bool:
        return self.max_age > 0

    def current(self, family: str) -> Copy | None:
        """The family's copy if no event has changed it since it was read
        (blocking: one query; call it in a thread)."""
        copy = self._young(family)
        if copy is None or versions(self.sessions, copy.stamps) != copy.stamps:
            return None
        return copy

    async def checked(self, family: str) -> Copy | None:
        """`current` on the event loop: the counters of every family read at
        about the same moment are asked in one query (in a thread). A query
        already running may have begun before this read arrived, so a read
        waits for the next one, which begins after it: never older than a
        query of its own."""
        copy = self._young(family)
        if copy is None:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:          # (tests run each read in a loop of its own)
            self._loop, self._waiting, self._asking = loop, [], False
        waiter = loop.create_future()
        self._waiting.append((copy.stamps, waiter))
        if not self._asking:
            self._asking = True
            loop.create_task(self._ask())
        found = await waiter
        return copy if all(found[k] == v for k, v in copy.stamps.items()) else None

    async def _ask(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                keys = {k for stamps, _ in batch for k in stamps}
                try:
                    found = await asyncio.to_thread(self._versions, keys)
                except Exception as exc:             # each read fails as its own query would
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(found)
        finally:
            self._asking = False

    def _versions(self, keys: Iterable[str]) -> dict[str, int]:
        """`versions` for `_ask` (one batch at a time). On PostgreSQL over a
        connection of the read model's own, kept open in autocommit, with
        the keys as one array: one round trip and one prepared statement per
        query, where a pooled session costs a ping, a rollback and a query
        text of its own for every number of keys."""
        engine = self.sessions.kw.get("bind")
        if engine is None or engine.dialect.name != "postgresql":
            return versions(self.sessions, keys)
        keys = list(keys)
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            found = dict(conn.execute(_VERSIONS_OF_ARRAY, {"keys": keys}).all())
        except Exception:
            self._conn = None                # a new connection for the next query
            try:
                conn.close()
            except Exception:
                pass
            raise
        return {k: int(found.get(k) or 0) for k in keys}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _young(self, family: str) -> Copy | None:
        with self._lock:
            copy = self._copies.get(family)
        if copy is None or self.clock() - copy.at >= self.max_age:
            return None
        return copy

    def keep(self, family: str, copy: Copy) -> None:
        with self._lock:
            self._copies[family] = copy
            self._copies.move_to_end(family)
            while len(self._copies) > self.capacity:
                self._copies.popitem(last=False)

    def forget(self, family: str) -> None:
        with self._lock:
            self._copies.pop(family, None)


def make_consumer(sessions: sessionmaker[Session], bootstrap: str, prefix: str = "kezek",
                  **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.{t}" for t in TOPICS], bootstrap=bootstrap,
                              sessions=sessions, outbox=outbox, handle_many=record_many, types=STAMPED, **kafka_config)
