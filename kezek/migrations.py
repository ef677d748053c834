"""Alembic, one environment per service, run as an explicit step
(`kezek migrate`). Each service's `migrations/env.py` is two lines that hand
its metadata to `run_env`; its revisions live in `migrations/versions/`."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from alembic import command
from alembic.config import Config

from kezek.db import ensure_database, make_engine
from kezek.sealing import Keyring, ring_of

_BATCH = 2000

SERVICES_DIR = Path(__file__).resolve().parents[1] / "services"


def migration_services() -> list[str]:
    return sorted(p.parent.parent.name for p in SERVICES_DIR.glob("*/migrations/env.py"))


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(service: str, url: str, revision: str = "heads", *, settings=None) -> None:
    """Migrates one service's database. `settings` give the migrations that
    seal personal data their key ring and file store (default: Settings())."""
    ensure_database(url)
    command.upgrade(configured(service, url, settings), revision)


def downgrade(service: str, url: str, revision: str, *, settings=None) -> None:
    command.downgrade(configured(service, url, settings), revision)


def configured(service: str, url: str, settings=None) -> Config:
    from kezek.settings import Settings

    cfg = alembic_config(service, url)
    cfg.attributes["settings"] = settings or Settings()
    cfg.attributes["keyring"] = cfg.attributes["settings"].sealing_keyring(service)
    return cfg


def migration_settings():
    """The settings the running migration was given (for a service's own
    settings, e.g. where its files are kept)."""
    from alembic import context

    from kezek.settings import Settings

    return context.config.attributes.get("settings") or Settings()


def run_env(target_metadata) -> None:
    """The body of every service's env.py (online mode only)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url, keyring=context.config.attributes.get("keyring"))
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


# ------------------------------------------------------------ sealing columns in place


def seal_rows(op, table: str, key: str, columns: dict[str, str], hashes: dict[str, tuple[str, str]] | None = None,
              *, where: str = "") -> int:
    """Seals, in place and in batches, the clear values of `columns`
    (column -> purpose, kezek/sealing.py) of `table`, whose primary key is
    `key`, with the ring the migration runs with; `hashes` (hash column ->
    (column, kind)) are set from the clear values. Values already sealed are
    left as they are, so a migration run again changes nothing."""
    return _rewrite(op, table, key, columns, hashes or {}, where, seal=True)


def open_rows(op, table: str, key: str, columns: dict[str, str], *, where: str = "") -> int:
    """The reverse of `seal_rows` (downgrades): sealed values back in clear."""
    return _rewrite(op, table, key, columns, {}, where, seal=False)


def _rewrite(op, table, key, columns, hashes, where, *, seal: bool) -> int:
    bind = op.get_bind()
    ring: Keyring = ring_of(bind)
    cols = list(dict.fromkeys([*columns, *(src for src, _ in hashes.values())]))
    def select(after):
        conds = [c for c in (f"{key} > :after" if after is not None else "", where) if c]
        return sa.text(f"SELECT {key}, {', '.join(cols)} FROM {table}"
                       f"{' WHERE ' + ' AND '.join(conds) if conds else ''} ORDER BY {key} LIMIT {_BATCH}")
    sets = ", ".join(f"{c} = :{c}" for c in [*columns, *hashes])
    update = sa.text(f"UPDATE {table} SET {sets} WHERE {key} = :_key")
    after, changed = None, 0
    while True:
        rows = bind.execute(select(after), {"after": after} if after is not None else {}).all()
        if not rows:
            return changed
        batch = []
        for row in rows:
            values = dict(zip(cols, row[1:]))
            clear = {c: _clear(ring, values[c], columns.get(c, "")) if c in columns else values[c] for c in cols}
            out = {"_key": row[0]}
            for c, purpose in columns.items():
                v = values[c]
                if seal:
                    out[c] = v if v is None or Keyring.is_sealed(v) else ring.seal(str(v), purpose)
                else:
                    out[c] = clear[c]
            for hash_col, (src, kind) in hashes.items():
                out[hash_col] = ring.lookup(kind, clear[src]) if clear[src] else None
            batch.append(out)
        bind.execute(update, batch)
        changed += len(batch)
        after = rows[-1][0]


def _clear(ring: Keyring, value, purpose: str):
    if value is None or not Keyring.is_sealed(value):
        return value
    return ring.open(value, purpose)


def retype(op, table: str, column: str, type_, *, nullable: bool | None = None) -> None:
    """A column's type (and NOT NULL) on PostgreSQL; SQLite keeps any text
    in any text column and would have to copy the whole table, so it is
    left as it is there."""
    if op.get_bind().dialect.name == "postgresql":
        kw = {} if nullable is None else {"nullable": nullable}
        if isinstance(type_, sa.JSON) or type_ is sa.JSON:
            kw["postgresql_using"] = f"{column}::json"
        elif type_ is sa.Text or isinstance(type_, sa.Text):
            kw["postgresql_using"] = f"{column}::text"
        op.alter_column(table, column, type_=type_, **kw)
