"""The relay's floor (kezek/relay.py, Floor): a candidate seq becomes the
floor only once every transaction that may have taken a seq below it has
ended. The relay's use of it on PostgreSQL: tests/integration/test_relays.py."""
from kezek.relay import Floor


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_candidate_waits_out_the_settling_time_then_every_transaction_begun_before():
    clock = Clock()
    floor = Floor(settle=0.1, clock=clock)
    floor.saw(100)
    assert not floor.due(), "not settled yet"
    clock.now = 0.1
    assert floor.due()
    assert floor.ready(oldest_running=55, next_id=70) is None, "settled: transactions up to 69 may hold seqs below 100"
    assert floor.ready(oldest_running=69, next_id=80) is None, "69 is still running"
    assert floor.ready(oldest_running=70, next_id=80) == 100, "all of them have ended"
    assert not floor.due()


def test_one_candidate_at_a_time_and_never_one_at_or_below_the_floor():
    clock = Clock()
    floor = Floor(settle=0.1, clock=clock)
    floor.saw(100)
    floor.saw(200)
    clock.now = 1
    floor.ready(oldest_running=1, next_id=5)
    assert floor.ready(oldest_running=5, next_id=9) == 100, "the first candidate, not the second"
    floor.raise_to(100)
    floor.saw(100)
    assert not floor.due() and floor.wants_look(), "nothing written since: no candidate"


def test_a_relay_that_finds_nothing_looks_for_the_last_seq_once_a_second():
    clock = Clock()
    floor = Floor(look_every=1.0, clock=clock)
    assert floor.wants_look()
    clock.now = 0.5
    assert not floor.wants_look()
    clock.now = 1.0
    assert floor.wants_look()
    floor.saw(10)
    clock.now = 5.0
    assert not floor.wants_look(), "not while a candidate waits"


def test_the_floor_never_goes_down():
    floor = Floor()
    floor.raise_to(100)
    floor.raise_to(40)
    assert floor.value == 100
    floor.raise_to(140)
    assert floor.value == 140
