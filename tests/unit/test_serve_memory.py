"""`kezek serve` (kezek/commands/serve.py): what start-up made is kept out
of the garbage collector's work, and young collections are rarer than
Python's default (issue 15: their pauses stop every request in flight)."""
from __future__ import annotations

import gc

import pytest

from kezek.commands import serve


@pytest.fixture
def collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_collections_run_every_7000_allocations(collector):
    made_at_start = [object() for _ in range(1000)]
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    serve.settle_memory()
    assert gc.get_freeze_count() >= len(made_at_start)
    assert gc.get_threshold()[0] == serve.YOUNG_THRESHOLD == 7000
