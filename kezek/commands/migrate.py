"""`kezek migrate`: every service's Alembic migrations, as an explicit step."""
from __future__ import annotations

import argparse

from kezek.migrations import migration_services, upgrade
from kezek.settings import Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek migrate", description=__doc__)
    p.add_argument("services", nargs="*", help="only these services (default: all)")
    args = p.parse_args(argv)
    settings = Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    for service in args.services or migration_services():
        upgrade(service, settings.database_url_for(service), settings=settings)
        print(f"migrated {service}")
    return 0
