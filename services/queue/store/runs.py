"""Allocation runs as recorded for audit and replay: the policy, the free
places, the children considered (compressed), the digest of what was
allocated, and one allocation_audit row per referral with its inputs."""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.domain.allocation import Allocation
from services.queue.domain.ranking import Applicant, PlaceKey
from services.queue.models import AllocationRecord, AllocationRun
from services.queue.store import chunks
from services.queue.store.times import EPOCH, aware, micros

RUNS = AllocationRun.__table__
AUDIT = AllocationRecord.__table__
AUDIT_COLUMNS = ("run_id", "seq", "referral_id", "application_id", "kindergarten_id", "cohort", "language",
                 "for_category", "preference_index", "inputs")


def digest(allocations: Iterable[Allocation]) -> str:
    """sha256 of the allocations of a run, whatever their order."""
    lines = sorted(f"{x.child_id}\t{x.place}\t{x.for_category}\t{x.preference_index}" for x in allocations)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def encode_candidates(children: list[Applicant]) -> bytes:
    """The children a run considered, for replay. Queue dates as UTC
    microseconds since the epoch: exact, and cheap for a national run."""
    return zlib.compress(pydantic_core.to_json(
        [[a.child_id, a.birth_date.toordinal(), a.category, micros(a.queue_date), a.language, a.preferences]
         for a in children]), 1)


def decode_candidates(blob: bytes) -> list[Applicant]:
    return [Applicant(cid, date.fromordinal(b), cat, EPOCH + timedelta(microseconds=q), lang, tuple(p))
            for cid, b, cat, q, lang, p in json.loads(zlib.decompress(blob))]


def start(s: Session, *, at: datetime, on: date, trigger: str, policy: dict, free_before: list) -> int:
    return s.execute(sa.insert(RUNS).values(
        started_at=at, on_date=on, trigger=trigger[:200], policy=policy, free_before=free_before,
        candidates=b"", candidates_count=0, allocated=0, digest="").returning(RUNS.c.id)).scalar_one()


@dataclass(frozen=True)
class Record:
    """What a run records of itself once allocated (`record_of`)."""
    candidates: bytes
    candidates_count: int
    allocated: int
    digest: str


def record_of(candidates: list[Applicant], allocations: list[Allocation]) -> Record:
    return Record(encode_candidates(candidates), len(candidates), len(allocations), digest(allocations))


def finish(s: Session, run_id: int, record: Record, *, at: datetime) -> None:
    s.execute(sa.update(RUNS).where(RUNS.c.id == run_id).values(
        candidates=record.candidates, candidates_count=record.candidates_count, allocated=record.allocated,
        digest=record.digest, finished_at=at))


def import_run(s: Session, trigger: str, now: datetime, policy: dict) -> int:
    """The run of one importer and day that holds its imported referrals."""
    run_id = s.execute(sa.select(RUNS.c.id).where(RUNS.c.trigger == trigger, RUNS.c.on_date == now.date())).scalar()
    if run_id is None:
        run_id = s.execute(sa.insert(RUNS).values(
            started_at=now, finished_at=now, on_date=now.date(), trigger=trigger, policy=policy, free_before=[],
            candidates=encode_candidates([]), candidates_count=0, allocated=0, digest=digest([])
        ).returning(RUNS.c.id)).scalar_one()
    return run_id


def record_allocations(s: Session, rows: list[tuple]) -> None:
    """allocation_audit rows (AUDIT_COLUMNS, inputs a dict)."""
    if s.get_bind().dialect.name == "postgresql":
        with s.connection().connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY allocation_audit ({', '.join(AUDIT_COLUMNS)}) FROM STDIN") as cp:
                for row in rows:
                    # pydantic_core: the same compact JSON, several times faster.
                    cp.write_row((*row[:-1], pydantic_core.to_json(row[-1]).decode()))
        return
    for chunk in chunks(rows, 5000):
        s.execute(sa.insert(AUDIT), [dict(zip(AUDIT_COLUMNS, row)) for row in chunk])


def run_ids(s: Session, only: Iterable[int] | None = None) -> list[int]:
    q = sa.select(RUNS.c.id).order_by(RUNS.c.id)
    if only is not None:
        q = q.where(RUNS.c.id.in_(list(only)))
    return [r for (r,) in s.execute(q)]


def latest(s: Session):
    """The last run's day and policy (None: no run yet)."""
    return s.execute(sa.select(RUNS.c.on_date, RUNS.c.policy).order_by(RUNS.c.id.desc()).limit(1)).mappings().first()


def load(s: Session, run_id: int):
    return s.execute(sa.select(RUNS).where(RUNS.c.id == run_id)).mappings().one()


def recorded_allocations(s: Session, run_id: int) -> list[Allocation]:
    return [Allocation(r.application_id, PlaceKey(r.kindergarten_id, r.cohort, r.language), r.for_category,
                       r.preference_index, {})
            for r in s.execute(sa.select(AUDIT).where(AUDIT.c.run_id == run_id).order_by(AUDIT.c.seq))]


def listed(s: Session, limit: int) -> list[dict]:
    q = (sa.select(RUNS.c.id, RUNS.c.started_at, RUNS.c.finished_at, RUNS.c.on_date, RUNS.c.trigger,
                   RUNS.c.candidates_count, RUNS.c.allocated, RUNS.c.digest)
         .order_by(RUNS.c.id.desc()).limit(limit))
    return [{"run_id": r.id, "started_at": aware(r.started_at), "finished_at": aware(r.finished_at),
             "on": r.on_date, "trigger": r.trigger, "candidates": r.candidates_count,
             "allocated": r.allocated, "digest": r.digest} for r in s.execute(q)]


def records_of(s: Session, app_id: str) -> list[dict]:
    q = sa.select(AUDIT).where(AUDIT.c.application_id == app_id).order_by(AUDIT.c.run_id)
    return [{"run_id": r.run_id, "referral_id": r.referral_id, "kindergarten": r.kindergarten_id,
             "cohort": r.cohort, "language": r.language, "for_category": r.for_category,
             "preference_index": r.preference_index, "inputs": r.inputs} for r in s.execute(q)]
