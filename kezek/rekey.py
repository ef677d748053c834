"""Moving sealed data to the current key (kezek/sealing.py), after a new key
was put first in KEZEK_DATA_KEYS (or a service's own setting).

Every sealed column of every table of a service (found by type in its
metadata) is read in batches in primary-key order; a value sealed with
another key is opened, sealed again with the current one, and the lookup
hash beside it (`<column>_hash`) computed again with the current key, in the
same UPDATE. Each batch is one transaction, so the command can be stopped
and run again: it takes up where nothing is left on an old key. Files are
moved by rewrapping their data keys (`SealedFiles.rekey`).

`check` counts what is still on another key: once every count is 0 the old
key can leave the settings.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kezek.sealing import Keyring, Sealed, ring_of, sealed_columns

BATCH = 1000


@dataclass
class Report:
    service: str
    key: str
    rows: dict[str, int] = field(default_factory=dict)     # table -> rows moved (or still old, for check)
    files: int = 0

    def as_dict(self) -> dict:
        return {"service": self.service, "key": self.key, "rows": self.rows, "files": self.files}


def _raw(col: sa.Column):
    """The column as stored (no opening on read, no comparison refused)."""
    return sa.type_coerce(col, sa.Text)


def _old(cols: list[sa.Column], ring: Keyring):
    prefix = f"v1.{ring.current}."
    return sa.or_(*[sa.and_(col.is_not(None), _raw(col).like("v1.%"), ~_raw(col).startswith(prefix))
                    for col in cols])


def _pk(table: sa.Table) -> sa.Column:
    [key] = list(table.primary_key.columns)
    return key


def check(engine: Engine, metadata: sa.MetaData, service: str) -> Report:
    ring = ring_of(engine)
    report = Report(service, ring.current)
    with engine.connect() as conn:
        for name, cols in sealed_columns(metadata).items():
            n = conn.scalar(sa.select(sa.func.count()).select_from(cols[0].table).where(_old(cols, ring)))
            if n:
                report.rows[name] = n
    return report


def rekey(engine: Engine, metadata: sa.MetaData, service: str, *, batch: int = BATCH) -> Report:
    ring = ring_of(engine)
    report = Report(service, ring.current)
    for name, cols in sealed_columns(metadata).items():
        moved = sum(_rekey_batches(engine, cols, ring, batch))
        if moved:
            report.rows[name] = moved
    return report


def _rekey_batches(engine: Engine, cols: list[sa.Column], ring: Keyring, batch: int) -> Iterator[int]:
    table = cols[0].table
    key = _pk(table)
    hashes = {c.name: (f"{c.name}_hash", c.type.hashed_as) for c in cols
              if isinstance(c.type, Sealed) and c.type.hashed_as and f"{c.name}_hash" in table.c}
    after = None
    while True:
        with engine.begin() as conn:
            q = sa.select(key, *[_raw(c).label(c.name) for c in cols]).where(_old(cols, ring))
            if after is not None:
                q = q.where(key > after)
            rows = conn.execute(q.order_by(key).limit(batch).with_for_update()
                                if conn.dialect.name == "postgresql" else q.order_by(key).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                values = {}
                for c in cols:
                    token = getattr(row, c.name)
                    if not Keyring.is_sealed(token) or Keyring.kid_of(token) == ring.current:
                        continue
                    clear = ring.open(token, c.type.purpose)
                    values[c.name] = ring.seal(clear, c.type.purpose)
                    if c.name in hashes:
                        hash_col, kind = hashes[c.name]
                        values[hash_col] = ring.lookup(kind, clear)
                conn.execute(sa.update(table).where(key == row[0]).values(
                    {table.c[k]: sa.type_coerce(v, sa.Text) if k in {c.name for c in cols} else v
                     for k, v in values.items()}))
            after = rows[-1][0]
            yield len(rows)
