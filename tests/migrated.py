"""`upgrade` for the tests: a new SQLite database at the head revision is a
copy of a template this process migrated once per service (the migrations
take about a second a service; hundreds of tests each start from an empty
database). Anything else (PostgreSQL, a revision short of the heads, a
database that already holds tables, settings with their own key ring) runs
the migrations as kezek.migrations.upgrade does."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from kezek import migrations

_TEMPLATES: dict[str, Path] = {}


def upgrade(service: str, url: str, revision: str = "heads", *, settings=None) -> None:
    target = _new_sqlite_file(url)
    if target is None or revision != "heads" or settings is not None:
        migrations.upgrade(service, url, revision, settings=settings)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(service), target)


def _template(service: str) -> Path:
    if service not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix=f"kezek-{service}-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / f"{service}.db"
        migrations.upgrade(service, f"sqlite:///{path}")
        _TEMPLATES[service] = path
    return _TEMPLATES[service]


def _new_sqlite_file(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    path = Path(u.database)
    fresh = not path.exists() or path.stat().st_size == 0
    return path if fresh and not Path(f"{path}-wal").exists() else None
