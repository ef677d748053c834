"""The webhooks' delivery loop (services/gateway/public/webhooks.py,
`Dispatcher.run_delivery`) when nothing is due: it looks less and less
often, up to its longest pause, and at once when the ingest of its process
has queued deliveries."""
from __future__ import annotations

import threading
import time

from services.gateway.public.config import PublicSettings
from services.gateway.public.webhooks import Dispatcher


def looking(idle_sleep: float, idle_max: float) -> tuple[Dispatcher, list[float], threading.Event, threading.Thread]:
    """A delivery loop with nothing ever due, and the times it looked."""
    dispatcher = Dispatcher(None, PublicSettings(_env_file=None, env="test"))
    looked: list[float] = []

    def deliver_once() -> int:
        looked.append(time.monotonic())
        return 0
    dispatcher.deliver_once = deliver_once
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run_delivery, args=(stop,),
                            kwargs={"idle_sleep": idle_sleep, "idle_max": idle_max}, daemon=True)
    loop.start()
    return dispatcher, looked, stop, loop


def test_with_nothing_due_the_delivery_loop_looks_less_and_less_often_up_to_its_longest_pause():
    _dispatcher, looked, stop, loop = looking(idle_sleep=0.01, idle_max=0.1)
    time.sleep(1.0)
    stop.set()
    loop.join(5)
    # 0.01 + 0.02 + 0.04 + 0.08, then every 0.1 s: about a dozen, where a look every 0.01 s was a hundred
    assert 3 <= len(looked) <= 20, len(looked)


def test_the_delivery_loop_looks_at_once_when_its_process_queued_deliveries():
    dispatcher, looked, stop, loop = looking(idle_sleep=0.1, idle_max=3600)
    deadline = time.monotonic() + 30
    while len(looked) < 6 and time.monotonic() < deadline:      # at 0, 0.1, 0.3, 0.7, 1.5, 3.1 s
        time.sleep(0.005)
    dispatcher.queued.set()                                     # as the ingest does when it queued deliveries
    told = time.monotonic()
    while len(looked) == 6 and time.monotonic() < told + 2.5:   # its own next look: 3.2 s on
        time.sleep(0.005)
    stop.set()
    loop.join(5)
    assert len(looked) == 7 and looked[6] - looked[5] < 2.5, "looked again once told, not after its pause"
