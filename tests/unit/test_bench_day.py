"""bench/distribution_day.py's sampling and bench/queue_data.py's reading of
pg_stat_statements, on a stand-in for the running system."""
from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))   # its sibling modules, as the benchmarks run
import distribution_day  # noqa: E402
import queue_data  # noqa: E402


class Watch:
    """Answers the benchmark's reads with fixed counts and keeps their SQL."""

    def __init__(self):
        self.sql: list[str] = []

    def row(self, service: str, sql: str, **params):
        self.sql.append(sql)
        return (10, 10, 6) if "FROM referrals" in sql else (10, 10, 500, 0)

    def scalar(self, service: str, sql: str, **params):
        self.sql.append(sql)
        return 10

    def outbox_totals(self):
        self.sql.append("outbox totals")
        return {"queue": (600, 0)}

    def lags(self):
        return {g: {"kezek.application": (500, 0)} for g in distribution_day.POSITION_GROUPS}


LAST = {"ran": 10, "ran_relayed": 10, "positions_written": 500, "positions_unsent": 0, "sms_made": 10,
        "referrals": 10, "outbox": {"queue": [600, 0]}}


def take(final: frozenset[str], number: int = 1) -> tuple[dict, list[str]]:
    watch = Watch()
    s = distribution_day.sample(watch, SimpleNamespace(accepted={}), 0.0, {"queue": 0}, 0, datetime.now(UTC),
                                {}, dict(LAST), number, final)
    return s, watch.sql


def test_a_count_of_the_day_that_can_no_longer_change_is_not_read_again():
    s, sql = take(frozenset({"outbox", "made"}), number=5)
    assert not [q for q in sql if "FROM outbox" in q or "FROM messages" in q]
    assert (s["ran"], s["positions_written"], s["sms_made"]) == (10, 500, 10)
    assert "outbox totals" in sql           # the relays' rates still read every OUTBOX_EVERY samples


def test_the_counts_of_the_day_are_read_until_they_are_final():
    _s, sql = take(frozenset(), number=5)
    assert [q for q in sql if "FROM messages" in q] and [q for q in sql if "FROM outbox" in q]


def test_the_statements_that_took_most_of_the_databases_time_come_first_with_their_share():
    before = {("kezek_queue", 1): (10, 100.0, 10, "SELECT 1"), ("kezek_gateway", 2): (5, 50.0, 5, "SELECT 2")}
    after = {("kezek_queue", 1): (12, 110.0, 12, "SELECT  1"), ("kezek_gateway", 2): (25, 140.0, 25, "SELECT 2"),
             ("kezek_gateway", 3): (1, 0.0, 0, "BEGIN")}
    top = queue_data.top_statements(before, after, n=2)
    assert [x["query"] for x in top["top"]] == ["SELECT 2", "SELECT 1"]
    assert top["top"][0] == {"database": "kezek_gateway", "calls": 20, "ms": 90.0, "rows": 20,
                             "query": "SELECT 2", "share": 0.9}
    assert (top["ms"], top["statements"], top["calls"]) == (100.0, 3, 23)


def test_the_outbox_counts_are_final_only_once_the_positions_written_stand_still_and_none_is_unsent():
    s = {"ran_relayed": 10, "referrals": 10, "positions_unsent": 0}
    final = distribution_day.outbox_final
    assert not final([0, 0], True, s)             # just after the run: its positions not written yet
    assert not final([0, 500], True, s)           # still being written
    assert not final([500, 500], False, s)        # the allocation not done
    assert not final([500, 500], True, {**s, "positions_unsent": 3})
    assert not final([500, 500], True, {**s, "ran_relayed": 9})
    assert final([0, 500, 500], True, s)
