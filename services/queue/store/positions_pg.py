"""Positions on PostgreSQL, set-based: every waiting child of the marked
pools ranked in one statement (a window over the unnested preferences),
each child's rank in its first preference compared with the one last
published, the changed ones saved in queue_positions and returned."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from kezek.outbox import Outbox
from services.queue.domain.policy import Policy
from services.queue.domain.ranking import UNRANKED


def save_changed(s: Session, pools: list[tuple[int, str]] | None, policy: Policy, now: datetime) -> list[tuple]:
    """(application id, parent id, kindergarten, position, previous position
    or None) of every child whose position changed, in (kindergarten,
    position) order; queue_positions holds the new ones."""
    sql, params = _changed(pools, policy, now)
    sql += """
        SELECT c.id, c.parent_id, c.kg, c.pos, c.previous
        FROM changed c JOIN saved ON saved.application_id = c.id
        ORDER BY c.kg, c.pos
    """
    with s.connection().connection.driver_connection.cursor(binary=True) as cur:
        # Not prepared: with the keys as a constant, PostgreSQL hashes the
        # `= ANY` (a generic plan would compare them one by one).
        return cur.execute(sql, params, prepare=False).fetchall()


def publish_changed(s: Session, pools: list[tuple[int, str]] | None, policy: Policy, now: datetime,
                    outbox: Outbox, event_type: str) -> int:
    """The same, with one `event_type` event per changed child written into
    the outbox by the same statement: after a national run that is some
    700,000 events, which never come back into Python. Returns how many."""
    sql, params = _changed(pools, policy, now)
    # Every saved row is a changed one (data-modifying CTEs run whether or
    # not they are read); the event's data is the one event_data() makes.
    ctes = sql.strip().removeprefix("WITH").strip()
    rows = """
        SELECT 'application:' || c.id AS subject, CASE
            WHEN c.parent_id <> '' AND k.name <> '' THEN json_build_object(
                'application_id', c.id, 'position', c.pos, 'previous_position', c.previous,
                'kindergarten_id', c.kg, 'parent_id', c.parent_id, 'kindergarten_name', k.name)
            WHEN c.parent_id <> '' THEN json_build_object(
                'application_id', c.id, 'position', c.pos, 'previous_position', c.previous,
                'kindergarten_id', c.kg, 'parent_id', c.parent_id)
            WHEN k.name <> '' THEN json_build_object(
                'application_id', c.id, 'position', c.pos, 'previous_position', c.previous,
                'kindergarten_id', c.kg, 'kindergarten_name', k.name)
            ELSE json_build_object(
                'application_id', c.id, 'position', c.pos, 'previous_position', c.previous,
                'kindergarten_id', c.kg) END AS data
        FROM changed c LEFT JOIN kindergartens k ON k.id = c.kg
    """
    return outbox.add_from_query(s, event_type, rows, params, ctes=ctes, time=now)


def _changed(pools: list[tuple[int, str]] | None, policy: Policy, now: datetime) -> tuple[str, dict[str, Any]]:
    """The CTEs `changed` (children whose position differs from the one
    last published) and `saved` (queue_positions brought up to date)."""
    rank = " ".join(f"WHEN '{c.code}' THEN {c.rank}" for c in policy.categories)
    params: dict[str, Any] = {"now": now}
    if pools is None:
        in_pools, prefilter = "", ""
    else:
        # One hashed `= ANY` over "cohort/kindergarten" keys, not a join
        # with the pools: joined, the planner may pair every pool with
        # every child of its cohort first (quadratic at national scale).
        params["pools"] = [f"{c}/{k}" for c, k in pools]
        in_pools = "AND CAST(a.cohort AS text) || '/' || p.kg = ANY(CAST(%(pools)s AS text[])) "
        cohorts = sorted({c for c, _ in pools})
        kgs = sorted({k for _, k in pools})
        # A few pools (a join, a removal): the GIN index finds their
        # children. Many (a national run): reading the table is cheaper.
        if len(kgs) <= 50:
            params.update(ck=cohorts, kk=kgs)
            prefilter = ("AND a.cohort = ANY(CAST(%(ck)s AS int[])) "
                         "AND a.preferences && CAST(%(kk)s AS varchar(100)[]) ")
        else:
            prefilter = ""
    sql = f"""
        WITH listing AS (
            SELECT a.id, a.parent_id, p.kg, a.preferences[1] AS first,
                   row_number() OVER (PARTITION BY a.cohort, p.kg COLLATE "C" ORDER BY
                       CASE a.category {rank} ELSE {UNRANKED} END, a.queue_date, a.id COLLATE "C") AS pos
            FROM applications a CROSS JOIN LATERAL unnest(a.preferences) AS p(kg)
            WHERE a.status = 'queued' {prefilter}{in_pools}
        ), changed AS (
            SELECT l.id, l.parent_id, l.kg, CAST(l.pos AS int) AS pos, q.position AS previous
            FROM listing l LEFT JOIN queue_positions q ON q.application_id = l.id
            WHERE l.kg = l.first
              AND (q.position IS DISTINCT FROM l.pos OR q.kindergarten_id IS DISTINCT FROM l.kg)
        ), updated AS (
            UPDATE queue_positions q SET kindergarten_id = c.kg, position = c.pos, changed_at = %(now)s
            FROM changed c WHERE q.application_id = c.id AND c.previous IS NOT NULL
            RETURNING q.application_id
        ), inserted AS (
            INSERT INTO queue_positions (application_id, kindergarten_id, position, changed_at)
            SELECT id, kg, pos, %(now)s FROM changed WHERE previous IS NULL
            RETURNING application_id
        ), saved AS (
            SELECT application_id FROM updated UNION ALL SELECT application_id FROM inserted
        )
    """
    return sql, params
