"""How many records a consumer asks for in one poll (kezek/consumer.py):
a poll's records must be handled well inside the group's bound between
polls, or the consumer is put out of its group and handles them again."""
from hypothesis import given, strategies as st

from kezek.consumer import MAX_POLL_INTERVAL_MS, MAX_POLL_RECORDS, next_poll_size


def test_a_poll_handled_quickly_keeps_the_full_poll_size():
    assert next_poll_size(500, 0.4, MAX_POLL_RECORDS) == MAX_POLL_RECORDS


def test_a_slow_poll_makes_the_next_one_fit_a_quarter_of_the_bound_between_polls():
    # 500 records in 40 s (a loaded machine): 12.5 records a second, and
    # a quarter of the 30 s bound holds 93 of them.
    assert next_poll_size(500, 40.0, MAX_POLL_RECORDS) == 93


def test_the_poll_size_grows_back_when_the_pace_does():
    small = next_poll_size(500, 40.0, MAX_POLL_RECORDS)
    assert next_poll_size(small, 0.5, MAX_POLL_RECORDS) > small


def test_an_empty_poll_leaves_the_full_size_and_a_very_slow_one_asks_for_one_record():
    assert next_poll_size(0, 0.0, 200) == 200
    assert next_poll_size(3, 120.0, 200) == 1


@given(records=st.integers(1, 2_000), seconds=st.floats(0.001, 600), ceiling=st.integers(1, 2_000))
def test_the_next_poll_at_the_same_pace_fits_its_budget_unless_one_record_alone_does_not(records, seconds,
                                                                                          ceiling):
    size = next_poll_size(records, seconds, ceiling)
    assert 1 <= size <= ceiling
    pace = seconds / records
    budget = MAX_POLL_INTERVAL_MS / 1000 / 4
    assert size == 1 or size * pace <= budget + 1e-9
