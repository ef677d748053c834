"""The dispatcher: sends due messages, one loop per channel (a slow mail
server must not hold up SMS), and records each attempt."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

import sqlalchemy as sa

from kezek.logging import get_logger
from kezek.metrics import NOTIFICATIONS_DEAD, NOTIFICATIONS_WAITING, PARKED, PARKED_OLDEST, Every
from kezek.pacing import LONGEST_IDLE, IdlePause
from services.notifications.channels import Transport
from services.notifications.domain import Channel, Outcome, Status, expired
from services.notifications.models import DeadLetter, Message, ParkedEvent
from services.notifications.service import Attempt, NotificationService
from services.notifications.usecases.common import aware

log = get_logger(__name__)
LEASES_EVERY = timedelta(seconds=30)


class Dispatcher:
    def __init__(self, service: NotificationService, transport: Transport, *, batch: int = 10,
                 idle_sleep: float = 0.25, idle_max: float = LONGEST_IDLE, lease: timedelta = timedelta(minutes=2),
                 sleep: Callable[[float], None] = time.sleep, concurrency: int = 1):
        self.service = service
        self.transport = transport
        # A transport that allows it (`concurrent`, e.g. an SMS gateway over
        # HTTP) has up to `concurrency` sends in flight: one after another, a
        # distribution day's 10,000 SMS waited on 10,000 round trips in turn.
        # Each message is still sent, then recorded, by one thread.
        self.concurrency = max(1, concurrency) if getattr(transport, "concurrent", False) else 1
        self.batch = max(batch, self.concurrency, getattr(transport, "claims_at_once", 0))
        # Long enough for a whole batch of sends at their timeouts; after a
        # crash, what was in flight waits this long before it is sent again.
        self.lease = lease
        # With nothing due, the next look after a pause from idle_sleep
        # doubling up to idle_max (kezek/pacing.py).
        self.idle_sleep = idle_sleep
        self.idle_max = idle_max
        # Run-out leases come of crashes: looked for every half minute by the
        # service's clock (and at the first claim), not at each claim, which
        # an idle loop makes four times a second.
        self._leases_looked: datetime | None = None
        self.sleep = sleep
        self.__name__ = f"notifications-dispatch-{transport.channel.value}"

    def leases_due(self) -> bool:
        now = self.service.clock()
        if self._leases_looked is not None and now - self._leases_looked < LEASES_EVERY:
            return False
        self._leases_looked = now
        return True

    @property
    def channel(self) -> Channel:
        return self.transport.channel

    def run_once(self) -> int:
        """Sends what is due now; returns how many attempts were made."""
        leased_until = time.monotonic() + self.lease.total_seconds()
        claimed = self.service.claim_due(self.channel, limit=self.batch, lease=self.lease, leases=self.leases_due())
        if self.concurrency > 1 and len(claimed) > 1:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.__name__) as pool:
                sent = [f.result() for f in [pool.submit(self.send, msg) for msg in claimed]]
            # a record that failed past its lease raises here, as below
            self.record_round([s for s in sent if s is not None], leased_until)
        else:
            # One after another (a mail server takes one message at a time on
            # a connection), each acceptance noted at once (`send`), and the
            # round recorded in one transaction, as `stream` records its
            # rounds: a record per message was a third transaction for each.
            self.record_round([s for s in (self.send(msg) for msg in claimed) if s is not None], leased_until)
        return len(claimed)

    def stream(self, stop: threading.Event, measure_every: float = 15.0) -> None:
        """The loop of a concurrent transport: up to `concurrency` sends in
        flight at all times, more claimed as soon as half the slots are free
        (run_once's batch waited for its slowest send before claiming the
        next: one provider answer that took seconds held fifteen slots
        idle). Each message is still claimed under a lease and sent by one
        thread, its acceptance noted at once (`send`); the sends that ended
        meanwhile are recorded together by this loop, in one transaction
        (`record_round`), while the others stay in flight (a transaction
        per send made the database the limit of a distribution day). On
        stop, what is in flight is sent and recorded before the transport
        closes."""
        measuring = Every(measure_every)
        idle = IdlePause(self.idle_sleep, self.idle_max)
        in_flight: dict[Future, float] = {}      # a send, and the end of its lease
        refill = max(1, self.concurrency // 2)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.__name__) as pool:
            while not stop.is_set():
                try:
                    if measuring.due():
                        self.measure()
                    free = self.concurrency - len(in_flight)
                    drained = False
                    if free >= refill or not in_flight:
                        leased_until = time.monotonic() + self.lease.total_seconds()
                        claimed = self.service.claim_due(self.channel, limit=free, lease=self.lease,
                                                         leases=self.leases_due())
                        in_flight.update((pool.submit(self.send, msg), leased_until) for msg in claimed)
                        drained = len(claimed) < free
                    if not in_flight:
                        stop.wait(idle.next())
                        continue
                    idle.found()
                    # Nothing more due: look again after idle_sleep at the latest.
                    done, _pending = wait(in_flight, timeout=self.idle_sleep if drained else None,
                                          return_when=FIRST_COMPLETED)
                    self.record_done({f: in_flight.pop(f) for f in done})
                except Exception as exc:  # the database may be away for a moment
                    log.warning("notifications.dispatch_failed", channel=self.channel.value, error=repr(exc))
                    stop.wait(1)
            wait(in_flight)
            try:
                self.record_done(in_flight)
            except Exception as exc:
                log.warning("notifications.dispatch_failed", channel=self.channel.value, error=repr(exc))
        self.transport.close()

    def record_done(self, done: dict[Future, float]) -> None:
        """The round of sends that ended, recorded in one transaction."""
        sent, leased_until = [], float("inf")
        for f, until in done.items():
            if (failed := f.exception()) is not None:     # the expired message's give-up could not be written
                log.warning("notifications.dispatch_failed", channel=self.channel.value, error=repr(failed))
            elif f.result() is not None:
                sent.append(f.result())
                leased_until = min(leased_until, until)
        self.record_round(sent, leased_until)

    def send(self, msg) -> tuple[str, Attempt] | None:
        """One claimed message sent (None: it expired, and was given up), the
        provider's acceptance noted at once unless the provider drops repeats;
        the rest of the record is the caller's (`record_round`)."""
        if expired(msg.expires_at, self.service.clock()):
            self.service.give_up_expired(msg.id)
            return None
        try:
            attempt = self.transport.send(msg)
        except Exception as exc:  # a transport bug is a failed attempt, not a dead loop
            attempt = Attempt(Outcome.TRANSIENT, error=f"transport raised {exc!r}")
        # Handed to a provider that would send a repeat again (a mail server):
        # noted at once. One that drops repeats by the message's key (the SMS
        # gateway) needs no note, and in-app delivery repeats harmlessly: a
        # crash before the round's record sends them again after the lease,
        # to no effect. A note was a transaction for each SMS of a
        # distribution day, a round trip to the database under the load of
        # everything else the day sets off.
        if attempt.outcome is Outcome.SENT and not getattr(self.transport, "idempotent", False):
            try:
                self.service.note_accepted(msg.id, attempt.provider_ref)
            except Exception as exc:  # the database is away: the record below waits for it
                log.warning("notifications.accept_note_failed", message_id=msg.id, error=repr(exc)[:300])
        return msg.id, attempt

    def record_round(self, sent: list[tuple[str, Attempt]], leased_until: float) -> None:
        """Records what the provider answered to a round of sends, in one
        transaction (`record_attempts`), asking the database again while it
        is away. Once a send happened, only this process knows it: giving up
        would leave the message to be claimed and sent again when its lease
        ends (a mail server cannot drop the repeat). So it keeps trying for
        as long as the round's first lease holds; past it, another dispatcher
        may take the messages, and the record is left to that one."""
        pause = 0.5
        while sent:
            try:
                self.service.record_attempts(sent)
                return
            except Exception as exc:
                if time.monotonic() + pause >= leased_until - 5:
                    raise
                log.warning("notifications.record_failed", message_ids=[mid for mid, _a in sent][:20],
                            error=repr(exc)[:300], retry_in=pause)
                self.sleep(pause)
                pause = min(pause * 2, 5.0)

    def measure(self) -> None:
        """The metrics an operator watches: this channel's messages waiting,
        the dead letters, the events parked until their application is known."""
        waiting = (Status.QUEUED.value, Status.SENDING.value)
        with self.service.sessions() as s:
            NOTIFICATIONS_WAITING.labels(channel=self.channel.value).set(s.scalar(
                sa.select(sa.func.count()).select_from(Message)
                .where(Message.channel == self.channel.value, Message.status.in_(waiting))))
            NOTIFICATIONS_DEAD.set(s.scalar(sa.select(sa.func.count()).select_from(DeadLetter)))
            parked, oldest = s.execute(sa.select(sa.func.count(), sa.func.min(ParkedEvent.parked_at))).one()
        PARKED.labels(service="notifications").set(parked)
        PARKED_OLDEST.labels(service="notifications").set(
            (self.service.clock() - aware(oldest)).total_seconds() if oldest else 0)

    def __call__(self, stop: threading.Event, measure_every: float = 15.0) -> None:
        if self.concurrency > 1:
            self.stream(stop, measure_every)
            return
        measuring = Every(measure_every)
        idle = IdlePause(self.idle_sleep, self.idle_max)
        while not stop.is_set():
            try:
                if measuring.due():
                    self.measure()
                if self.run_once():
                    idle.found()
                else:
                    stop.wait(idle.next())
            except Exception as exc:  # the database may be away for a moment
                log.warning("notifications.dispatch_failed", channel=self.channel.value, error=repr(exc))
                stop.wait(1)
        self.transport.close()


def build_jobs(settings) -> list:
    from kezek.retention import daily_loop
    from services.notifications.retention import build_retention
    from services.notifications.runtime import build_dispatchers

    return [*build_dispatchers(settings), daily_loop(build_retention(settings))]


def run_all(dispatchers: Iterable[Dispatcher], stop: threading.Event) -> list[threading.Thread]:
    threads = [threading.Thread(target=dsp, args=(stop,), name=dsp.__name__, daemon=True) for dsp in dispatchers]
    for t in threads:
        t.start()
    return threads
