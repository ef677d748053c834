"""Which kindergartens exist, for the check at submission: a registration
that names an unknown kindergarten is refused there, naming the field, so a
parent is never told "your child is in the queue" for an application the
queue then refuses.

The queue owns the register of kindergartens and publishes no events about
it, so registration asks it (`GET /api/v1/kindergartens/{id}`, a service
token of its own) and keeps each answer a while: a known kindergarten ten
minutes, an unknown one half a minute (one just created is seen soon). A
submission names at most three, so this is at most three small calls, and
none for kindergartens asked about lately. When the queue does not answer,
an answer seen before is used however old; without one the submission gets
503 (Retry-After) and the draft waits, rather than a promise nobody keeps.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kezek.client import SyncServiceClient, UpstreamError, seg
from kezek.logging import get_logger
from kezek.problems import Unavailable

log = get_logger(__name__)

KNOWN_SECONDS = 600
UNKNOWN_SECONDS = 30


class QueueKindergartens:
    def __init__(self, queue: SyncServiceClient, *, clock: Callable[[], float] = time.monotonic):
        self.queue = queue
        self.clock = clock
        self._seen: dict[str, tuple[float, bool]] = {}    # id -> (fresh until, known)
        self._lock = threading.Lock()

    def unknown(self, ids: list[str]) -> list[str]:
        return [i for i in ids if not self._known(i)]

    def _known(self, kindergarten_id: str) -> bool:
        now = self.clock()
        with self._lock:
            seen = self._seen.get(kindergarten_id)
        if seen is not None and seen[0] > now:
            return seen[1]
        try:
            found = self.queue.call("GET", f"/api/v1/kindergartens/{seg(kindergarten_id)}", ok_missing=True)
        except UpstreamError as exc:
            if exc.status == 422:       # not even a well-formed kindergarten id
                found = None
            elif seen is not None:
                log.warning("registration.kindergartens_stale", status=exc.status)
                return seen[1]
            else:
                log.warning("registration.kindergartens_unavailable", status=exc.status, detail=exc.detail)
                raise Unavailable(detail="the register of kindergartens does not answer; try again shortly") \
                    from exc
        known = found is not None
        with self._lock:
            if len(self._seen) > 50_000:
                self._seen.clear()
            self._seen[kindergarten_id] = (now + (KNOWN_SECONDS if known else UNKNOWN_SECONDS), known)
        return known
