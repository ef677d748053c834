"""The allocation on PostgreSQL: the waiting children streamed category by
category in rank order straight from the covering index, asking only for
those who list a kindergarten that still has a place for them, and the
run's writes as set operations and COPY (a national run issues tens of
thousands of referrals in one transaction)."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime

import psycopg
from psycopg import sql as psql
from sqlalchemy.orm import Session

from kezek.trust import Principal
from services.queue.domain.entries import MAX_PREFERENCES
from services.queue.domain.policy import Policy
from services.queue.domain.ranking import Applicant
from services.queue.models import audit_trail, outbox
from services.queue.store import referrals
from services.queue.store.allocation import ISSUED, check_all_referred

# "Lists one of these kindergartens", as one hashed `= ANY` per preference
# position: far faster than `preferences && array` on long lists.
# The list travels as one string, split by the server once (a constant
# then): sending a long array costs the client more than the query.
_LISTS_ANY = " OR ".join(f"preferences[{i + 1}] = ANY(string_to_array(%(w)s, E'\\x1f')::varchar(100)[])"
                         for i in range(MAX_PREFERENCES))
# A group with places in a few kindergartens only (a run after one freed
# place): the children who list them, found by ix_applications_prefs (a few
# hundred a kindergarten) and sorted, rather than a walk of the group's whole
# rank order that finds nobody when nobody waits for them.
_FEW = 32
_LISTS_FEW = "preferences && string_to_array(%(w)s, E'\\x1f')::varchar(100)[]"


def ranked(s: Session, cohort: int, language: str, bound: date, policy: Policy, consumed: list[Applicant],
           group: dict, allocations: list) -> Iterator[Applicant]:
    """Category by category in rank order, each in (queue date, id) order
    straight from ix_applications_rank_order, in chunks. Each chunk asks
    only for children who list a kindergarten that still has a place they
    may take: the others would get nothing now and change nothing, so the
    allocation is the same, and the tail of a national queue is never sent
    to Python. `allocations` is read to know which places are left."""
    conn = s.connection().connection.driver_connection
    left = Counter(group)
    few = len({key.kindergarten for (key, _cat), n in group.items() if n > 0}) <= _FEW
    # Many kindergartens: walk ix_applications_rank_order (index-only); the
    # planner would rather sort, not knowing how few rows the LIMIT needs.
    # Queue dates in UTC: psycopg then gives them a fixed offset, which
    # Python compares and formats far faster than a named zone.
    with conn.cursor() as cur:
        cur.execute(("SET LOCAL enable_seqscan = off; " if few else
                     "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; ")
                    + "SET LOCAL TimeZone = 'UTC'")
    try:
        yield from _chunks(conn, cohort, language, bound, policy, consumed, left, len(allocations), allocations,
                           _LISTS_FEW if few else _LISTS_ANY)
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:  # else the rollback resets them
            with conn.cursor() as cur:
                cur.execute("RESET enable_sort; RESET enable_bitmapscan; RESET enable_seqscan; RESET TimeZone")


def _chunks(conn, cohort, language, bound, policy, consumed, left, seen, allocations, lists):
    for cat in sorted(policy.categories, key=lambda c: (c.rank, c.code)):
        after: tuple | None = None
        chunk = 2_000
        while True:
            for x in allocations[seen:]:
                left[(x.place, x.for_category)] -= 1
            seen = len(allocations)
            wanted = sorted({k.kindergarten for (k, pool_cat), n in left.items()
                             if n > 0 and pool_cat in (None, cat.code)})
            if not wanted:
                break
            sql = ("SELECT id, birth_date, category, queue_date, language, preferences FROM applications "
                   "WHERE status = 'queued' AND cohort = %(c)s AND language = %(l)s AND category = %(cat)s "
                   "AND birth_date <= %(b)s AND (" + lists + ") ")
            params = {"c": cohort, "l": language, "cat": cat.code, "b": bound, "w": "\x1f".join(wanted),
                      "n": chunk}
            if after is not None:
                sql += "AND (queue_date, id COLLATE \"C\") > (%(qd)s, %(id)s COLLATE \"C\") "
                params.update(qd=after[0], id=after[1])
            sql += "ORDER BY queue_date, id COLLATE \"C\" LIMIT %(n)s"
            with conn.cursor(binary=True) as cur:
                # Not prepared: with the list as a constant, PostgreSQL
                # hashes it (a generic plan would compare one by one).
                rows = cur.execute(sql, params, prepare=False).fetchall()
            for rid, birth, category, qd, lang, prefs in rows:
                a = Applicant(rid, birth, category, qd, lang, tuple(prefs))
                consumed.append(a)
                yield a
            if len(rows) < chunk:
                break
            after = (rows[-1][3], rows[-1][0])
            chunk = min(chunk * 2, 50_000)


def settle(s: Session, now: datetime, ids: list[str], taken: Counter, timings: dict) -> None:
    """store.allocation.settle as two set operations."""
    conn = s.connection().connection.driver_connection
    with conn.cursor() as cur:
        t = time.perf_counter()
        cur.execute("UPDATE applications SET status = 'referred', updated_at = %s "
                    "WHERE id = ANY(%s) AND status = 'queued'", (now, ids))
        check_all_referred(ids, cur.rowcount)
        timings["write_applications"] = time.perf_counter() - t
        pids, ns = zip(*sorted(taken.items()))
        # The CHECK (free >= 0) refuses more referrals than free places.
        cur.execute("UPDATE places AS p SET free = p.free - v.n, held = p.held + v.n "
                    "FROM unnest(%s::bigint[], %s::int[]) AS v(id, n) WHERE p.id = v.id", (list(pids), list(ns)))


def write(s: Session, rows: list[tuple], timings: dict) -> list[int]:
    """store.allocation.write by COPY."""
    conn = s.connection().connection.driver_connection
    with conn.cursor() as cur:
        t = time.perf_counter()
        # The sequence named once: pg_get_serial_sequence in the select list
        # looked it up in the catalogue again for every row.
        seq = cur.execute("SELECT pg_get_serial_sequence('referrals', 'id')").fetchone()[0]
        cur.execute(psql.SQL("SELECT nextval({}::regclass) FROM generate_series(1, %s)").format(psql.Literal(seq)),
                    (len(rows),))
        ref_ids = [r[0] for r in cur.fetchall()]
        # The partial unique index refuses a second live referral of a child.
        with cur.copy(f"COPY referrals (id, {', '.join(referrals.COLUMNS)}) FROM STDIN") as cp:
            for rid, row in zip(ref_ids, rows):
                cp.write_row((rid, *row))
        timings["write_referrals"] = timings.get("write_referrals", 0.0) + time.perf_counter() - t
    return ref_ids


def announce(s: Session, now: datetime, ref_ids: list[int], deadlines: dict[bool, str], who: Principal) -> None:
    """store.allocation.announce built by PostgreSQL from the referrals just
    written: the facts (Outbox.add_from_query) and the audit rows never pass
    through Python (a national run announces some 47,000 referrals)."""
    if not ref_ids:
        return
    params = {"ids": ref_ids, "deadline_confirm": deadlines[True], "deadline_enrol": deadlines[False]}
    outbox.add_from_query(s, ISSUED, f"""
        SELECT 'referral:' || r.id AS subject, {referrals.ISSUED_DATA_SQL} AS data
        FROM referrals r JOIN applications a ON a.id = r.application_id
             LEFT JOIN kindergartens k ON k.id = r.kindergarten_id
        WHERE r.id = ANY(CAST(%(ids)s AS bigint[])) ORDER BY r.id""", params, time=now)
    audit_trail.record_from_query(s, who, """
        SELECT 'referral.issued' AS action, 'application:' || r.application_id AS subject, json_build_object(
            'referral_id', r.id, 'state', r.state, 'deadline', CASE WHEN r.needs_confirmation
                THEN CAST(%(deadline_confirm)s AS text) ELSE CAST(%(deadline_enrol)s AS text) END,
            'reason', NULL) AS details
        FROM referrals r WHERE r.id = ANY(CAST(%(ids)s AS bigint[])) ORDER BY r.id""", params, at=now)
