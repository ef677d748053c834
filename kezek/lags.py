"""How far behind each part of the event backbone is: the outboxes that the
relays have not yet published, and the events each consumer group has not
yet handled. `kezek status` prints them; the services' /metrics export the
outboxes (kezek.observe); bench/chaos.py waits for both to reach zero."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from kezek import connections


@dataclass(frozen=True)
class Backlog:
    """Unsent rows of one outbox and the age of the oldest, in seconds."""
    unsent: int
    oldest_seconds: float


def outbox_backlog(conn: sa.Connection, table: str = "outbox", floor: int | None = None) -> Backlog:
    """Two index-only reads on the partial index of unsent rows; from
    `floor` when the caller knows no row below it is unsent (a relay's
    floor, kezek/relay.py), so that neither steps over the entries of the
    rows marked sent before it."""
    where = "sent_at IS NULL" + ("" if floor is None else f" AND seq >= {int(floor)}")
    unsent = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()
    oldest = None
    if unsent:
        oldest = conn.execute(sa.text(
            f"SELECT created_at FROM {table} WHERE {where} ORDER BY seq LIMIT 1")).scalar()
    if oldest is None:
        return Backlog(unsent, 0.0)
    if isinstance(oldest, str):        # SQLite hands back text
        oldest = datetime.fromisoformat(oldest)
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return Backlog(unsent, max(0.0, (datetime.now(UTC) - oldest).total_seconds()))


def outbox_tables(service: str) -> list[tuple[str, str]]:
    """(name, table) of each outbox in a service's database: its own, and the
    public stream's for the gateway."""
    return [(service, "outbox")] + ([("public", "public_outbox")] if service == "gateway" else [])


def consumer_lags(bootstrap: str, topic_prefix: str, timeout_ms: int = 5000) -> dict[str, dict]:
    """Per consumer group reading Kezek's topics: {"lag": events not yet
    committed, "members": live members, "state": the group's state}. The
    lag of a partition is its end offset minus the group's committed offset
    (its first offset when the group committed nothing there yet: consumers
    start from the earliest). Topics are those the group committed on or
    its members subscribe to."""
    from kafka.admin import KafkaAdminClient, OffsetSpec
    from kafka.structs import TopicPartition

    admin = KafkaAdminClient(**connections.kafka(bootstrap_servers=bootstrap, client_id="kezek-lags",
                                                 request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms))
    try:
        groups = [g["group_id"] for g in admin.list_groups()]
        if not groups:
            return {}
        described = admin.describe_groups(groups)
        committed = admin.list_group_offsets(groups)
        topics_of: dict[str, set[str]] = {}
        for g in groups:
            topics = {tp.topic for tp in committed.get(g, {})}
            for m in (described.get(g) or {}).get("members") or []:
                topics |= set((m.get("member_metadata") or {}).get("topics") or [])
            topics = {t for t in topics if t.startswith(f"{topic_prefix}.")}
            if topics:
                topics_of[g] = topics
        wanted = sorted(set().union(*topics_of.values())) if topics_of else []
        if not wanted:
            return {}
        partitions = {t["name"]: [p["partition_index"] for p in t["partitions"]] for t in admin.describe_topics(wanted)}
        tps = [TopicPartition(t, p) for t in wanted for p in partitions.get(t, [])]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps}, timeout_ms=timeout_ms)
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps}, timeout_ms=timeout_ms)
        out = {}
        for g, topics in sorted(topics_of.items()):
            lag = 0
            for tp in (tp for tp in tps if tp.topic in topics):
                at = committed.get(g, {}).get(tp)
                offset = at.offset if at is not None and at.offset >= 0 else _offset(starts[tp])
                lag += max(0, _offset(ends[tp]) - offset)
            info = described.get(g) or {}
            out[g] = {"lag": lag, "members": len(info.get("members") or []), "state": info.get("group_state", "")}
        return out
    finally:
        admin.close()


def _offset(value) -> int:
    return value.offset if hasattr(value, "offset") else int(value)
