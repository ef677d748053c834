"""Alembic, one environment per service, run as an explicit step
(`kezek migrate`). Each service's `migrations/env.py` is two lines that hand
its metadata to `run_env`; its revisions live in `migrations/versions/`."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from kezek.db import ensure_database, make_engine

SERVICES_DIR = Path(__file__).resolve().parents[1] / "services"


def migration_services() -> list[str]:
    return sorted(p.parent.parent.name for p in SERVICES_DIR.glob("*/migrations/env.py"))


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(service: str, url: str, revision: str = "heads") -> None:
    ensure_database(url)
    command.upgrade(alembic_config(service, url), revision)


def run_env(target_metadata) -> None:
    """The body of every service's env.py (online mode only)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
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
