"""Backups (issue 20): every service's database, the files the services keep
(certificate scans, still sealed) and the Temporal development server's
SQLite file, into one folder; and back into a fresh deployment.

- SQLite (development, one machine): each file through SQLite's online
  backup API, which copies a consistent snapshot while the services write
  (the write-ahead log included); `<service>.db`.
- PostgreSQL: `pg_dump --format=custom` of each service's database
  (`<service>.dump`, one consistent snapshot per database); restored with
  `pg_restore` into that service's database, created when missing.
- Files: every file of a service's file store as it is kept (sealed: the
  backup holds no readable scan), `files/<service>/<name>`.
- Temporal: the development server's `temporal.db` in the state folder
  (`kezek run` starts it there), by the same backup API. A production
  Temporal cluster keeps its own database: back that up with its own tools.

A backup holds personal data only sealed; it opens only with the data keys
(KEZEK_DATA_KEYS ...), which never go into it: keep them apart, and restore
with the same keys. `manifest.json` names what is there, each part's size
and SHA-256 and the kids of the keys it was sealed under (never a key).
A restore refuses a target that already holds data unless forced."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from kezek.settings import SEALING_SERVICES, SERVICES, Settings

FORMAT = "kezek.backup.v1"
TEMPORAL_FILE = "temporal.db"


class BackupError(RuntimeError):
    pass


@dataclass
class Manifest:
    created_at: str
    backend: str
    parts: dict[str, dict] = field(default_factory=dict)
    kids: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"format": FORMAT, "created_at": self.created_at, "backend": self.backend, "parts": self.parts,
                "kids": self.kids}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _pg_env(url: str) -> tuple[list[str], dict]:
    u = make_url(url)
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = u.password
    args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]
    return args, env


def _pg_tool(name: str) -> str:
    from kezek.infra.postgres import pg_bin

    try:
        return str(pg_bin() / name)
    except FileNotFoundError:
        found = shutil.which(name)
        if not found:
            raise BackupError(f"{name} not found: install the PostgreSQL client") from None
        return found


def backup(settings: Settings, out: Path) -> Manifest:
    """Writes the backup of the deployment `settings` describes into `out` (empty or new)."""
    from kezek import wiring

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    urls = {s: settings.database_url_for(s) for s in SERVICES}
    backend = "sqlite" if all(u.startswith("sqlite") for u in urls.values()) else "postgresql"
    manifest = Manifest(datetime.now(UTC).isoformat(), backend)
    for service, url in urls.items():
        if url.startswith("sqlite"):
            target = out / f"{service}.db"
            sqlite_copy(_sqlite_path(url), target)
        else:
            target = out / f"{service}.dump"
            args, env = _pg_env(url)
            done = subprocess.run([_pg_tool("pg_dump"), *args, "--format=custom", "--no-owner",
                                   "--file", str(target), make_url(url).database], env=env, capture_output=True)
            if done.returncode:
                raise BackupError(f"pg_dump of {service}: {done.stderr.decode(errors='replace').strip()}")
        manifest.parts[service] = {"file": target.name, "bytes": target.stat().st_size, "sha256": _sha256(target)}
        files = wiring.files(service, settings)
        if files is not None:
            names = sorted(files.store.names())
            for name in names:
                path = out / "files" / service / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(files.store.get(name))
            manifest.parts[f"{service} files"] = {"folder": f"files/{service}", "count": len(names)}
    for service in SEALING_SERVICES:
        manifest.kids[service] = list(settings.keyring_for(service).kids)
    temporal = settings.state_dir / TEMPORAL_FILE
    if temporal.exists():
        sqlite_copy(temporal, out / TEMPORAL_FILE)
        manifest.parts["temporal"] = {"file": TEMPORAL_FILE, "bytes": (out / TEMPORAL_FILE).stat().st_size,
                                      "sha256": _sha256(out / TEMPORAL_FILE)}
    (out / "manifest.json").write_text(json.dumps(manifest.as_dict(), indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise BackupError(f"{folder}: no manifest.json (not a Kezek backup)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{folder}: format {manifest.get('format')!r}, {FORMAT} wanted")
    for part in manifest["parts"].values():
        if "sha256" in part and _sha256(Path(folder) / part["file"]) != part["sha256"]:
            raise BackupError(f"{folder}/{part['file']}: its SHA-256 is not the manifest's (damaged)")
    return manifest


def _holds_data(settings: Settings, service: str, url: str) -> bool:
    if url.startswith("sqlite"):
        return _sqlite_path(url).exists() and _sqlite_path(url).stat().st_size > 0
    import sqlalchemy as sa

    from kezek.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return bool(c.scalar(sa.text("SELECT count(*) FROM information_schema.tables "
                                         "WHERE table_schema = 'public'")))
    except sa.exc.OperationalError:
        return False          # no such database yet
    finally:
        engine.dispose()


def restore(settings: Settings, folder: Path, *, force: bool = False) -> dict:
    """Puts the backup in `folder` into the deployment `settings` describes.
    The data keys must hold every kid the backup was sealed under."""
    from kezek import wiring
    from kezek.db import ensure_database

    folder = Path(folder)
    manifest = read_manifest(folder)
    for service, kids in manifest.get("kids", {}).items():
        missing = set(kids) - set(settings.keyring_for(service).kids)
        if missing:
            raise BackupError(f"{service}: sealed under key(s) {sorted(missing)}, which the settings do not hold "
                              f"(KEZEK_DATA_KEYS / KEZEK_{service.upper()}_DATA_KEYS)")
    urls = {s: settings.database_url_for(s) for s in SERVICES}
    if not force:
        busy = [s for s, u in urls.items() if s in manifest["parts"] and _holds_data(settings, s, u)]
        if busy:
            raise BackupError(f"the target already holds data ({', '.join(busy)}): restore into a fresh one, "
                              "or --force")
    restored = []
    for service, url in urls.items():
        part = manifest["parts"].get(service)
        if part is None:
            continue
        source = folder / part["file"]
        if part["file"].endswith(".db"):
            if not url.startswith("sqlite"):
                raise BackupError(f"{service}: a SQLite backup cannot go into {make_url(url).get_backend_name()}")
            target = _sqlite_path(url)
            for extra in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
                extra.unlink(missing_ok=True)
            sqlite_copy(source, target)
        else:
            if url.startswith("sqlite"):
                raise BackupError(f"{service}: a PostgreSQL dump cannot go into SQLite")
            ensure_database(url)
            args, env = _pg_env(url)
            done = subprocess.run([_pg_tool("pg_restore"), *args, "--clean", "--if-exists", "--no-owner",
                                   "--single-transaction", "--exit-on-error", "-d", make_url(url).database,
                                   str(source)], env=env, capture_output=True)
            if done.returncode:
                raise BackupError(f"pg_restore of {service}: {done.stderr.decode(errors='replace').strip()}")
        files_part = manifest["parts"].get(f"{service} files")
        files = wiring.files(service, settings)
        if files_part and files is not None:
            root = folder / files_part["folder"]
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                files.store.put(path.relative_to(root).as_posix(), path.read_bytes())
        restored.append(service)
    if "temporal" in manifest["parts"]:
        target = settings.state_dir / TEMPORAL_FILE
        for extra in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            extra.unlink(missing_ok=True)
        sqlite_copy(folder / TEMPORAL_FILE, target)
        restored.append("temporal")
    return {"restored": restored, "from": manifest["created_at"], "backend": manifest["backend"]}
