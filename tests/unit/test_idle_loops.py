"""The background loops that look for work in a table (kezek/pacing.py):
with nothing found they look less and less often, up to their longest
pause; a round that finds work makes the next pause the first one again.
Each loop's rounds are scripted and its waits recorded, not slept."""
from __future__ import annotations

import asyncio
import threading

import pytest

from kezek.pacing import LONGEST_IDLE, IdlePause
from kezek.relay import OutboxRelay
from services.notifications.domain import Channel
from services.notifications.jobs import Dispatcher
from services.queue import activities
from services.queue.activities import WorkflowStarter
from services.queue.jobs import Allocator


class Stop(threading.Event):
    """A loop's stop that records each wait instead of sleeping, and stops
    the loop after `rounds` of them."""

    def __init__(self, rounds: int):
        super().__init__()
        self.rounds = rounds
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.rounds:
            self.set()
        return self.is_set()


def rounds_of(found: list[int]):
    """A loop's round: what each round finds, in turn, then nothing."""
    script = iter(found)
    return lambda *_a, **_k: next(script, 0)


def test_an_idle_pause_doubles_from_the_first_up_to_the_longest_and_starts_over_after_work():
    idle = IdlePause(0.2, 1.0)
    assert [idle.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    idle.found()
    assert [idle.next() for _ in range(2)] == [0.2, 0.4]
    assert IdlePause(0.5, 0.1).next() == 0.5, "a longest shorter than the first is the first"


def test_a_relay_with_nothing_to_send_pauses_longer_each_round_and_at_once_looks_often_again_after_sending():
    class Relay(OutboxRelay):
        def __init__(self, found):
            self.relay_once = rounds_of(found)

        def measure(self):
            pass

        def close(self):
            pass

    stop = Stop(rounds=7)
    Relay([0, 0, 0, 0, 0, 3, 0, 0]).run(stop, idle_sleep=0.2, idle_max=1.0)
    # five empty rounds, a round that sent 3 (no pause), then empty again
    assert stop.waits == [0.2, 0.4, 0.8, 1.0, 1.0, 0.2, 0.4]


def test_a_relays_longest_idle_pause_is_a_second_by_default():
    assert LONGEST_IDLE == 1.0
    stop = Stop(rounds=6)
    relay = OutboxRelay.__new__(OutboxRelay)
    relay.relay_once, relay.measure, relay.close = rounds_of([]), lambda: None, lambda: None
    relay.run(stop)
    assert stop.waits == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


class Transport:
    concurrent = False

    def __init__(self, channel: Channel):
        self.channel = channel

    def close(self):
        pass


@pytest.mark.parametrize("concurrency", [1, 4], ids=["one at a time", "sends in flight"])
def test_a_dispatcher_with_nothing_due_pauses_longer_each_round_and_looks_often_again_after_a_send(concurrency):
    transport = Transport(Channel.SMS)
    transport.concurrent = concurrency > 1
    dispatcher = Dispatcher(None, transport, idle_sleep=0.25, idle_max=1.0, concurrency=concurrency)
    dispatcher.measure = dispatcher.leases_due = lambda: None
    stop = Stop(rounds=6)
    if concurrency == 1:
        dispatcher.run_once = rounds_of([0, 0, 0, 2, 0, 0])
    else:
        claims = iter([[], [], [], ["m1"], [], []])
        dispatcher.service = type("Service", (), {"claim_due": lambda self, *a, **k: next(claims, [])})()
        dispatcher.send = lambda msg: None
        dispatcher.record_done = lambda done: None
    dispatcher(stop)
    assert stop.waits == [0.25, 0.5, 1.0, 0.25, 0.5, 1.0]


def test_the_allocator_with_nothing_asked_for_pauses_longer_each_round_and_looks_at_once_when_woken():
    class Wake(Stop):
        """The allocator's wake: woken (True) at the `woken`-th wait."""

        def __init__(self, stop: threading.Event, woken: int):
            super().__init__(rounds=10**6)
            self.stop, self.woken = stop, woken

        def wait(self, timeout=None):
            self.waits.append(timeout)
            if len(self.waits) >= 8:
                self.stop.set()
            return len(self.waits) == self.woken

        def clear(self):
            pass

    allocator = Allocator(None, poll=0.25, poll_max=1.0)
    allocator.run_once = rounds_of([0, 0, 0, 0, 5, 0])
    stop = threading.Event()
    allocator.wake = Wake(stop, woken=6)
    allocator(stop)
    # four empty rounds; the fifth issued 5 referrals; woken at the sixth wait
    assert allocator.wake.waits == [0.25, 0.5, 1.0, 1.0, 0.25, 0.5, 0.25, 0.5]


def test_the_workflow_starter_with_nothing_unstarted_pauses_longer_each_round_and_looks_often_again_after_starts(
        monkeypatch):
    stop = threading.Event()
    slept: list[float] = []

    async def sleep(seconds):
        slept.append(seconds)
        if len(slept) >= 6:
            stop.set()

    class Client:
        @staticmethod
        async def connect(*_a, **_k):
            return object()

    monkeypatch.setattr(activities.asyncio, "sleep", sleep)
    monkeypatch.setattr("temporalio.client.Client", Client)
    starter = WorkflowStarter.__new__(WorkflowStarter)
    starter.address, starter.namespace, starter.idle_sleep, starter.idle_max = "temporal", "default", 0.25, 1.0
    found = rounds_of([0, 0, 0, 0, 7, 0])

    async def start_pending(_client):
        return found()
    starter.start_pending = start_pending
    asyncio.run(starter._run(stop))
    assert slept == [0.25, 0.5, 1.0, 1.0, 0.25, 0.5]
