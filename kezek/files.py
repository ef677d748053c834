"""Files kept out of the databases (certificate scans), sealed.

`FileStore` is where the bytes live: a local folder by default
(`FolderStore`, under the state folder), an object store later (a class
with the same five methods; `open_store` picks one by the URL's scheme).
`SealedFiles` puts every file through envelope encryption (kezek/sealing.py:
a data key per file, wrapped by the service's current key, its kid in the
file's header) and moves files to the current key (`rekey`) by rewrapping
their data keys only.

Names are relative paths of lower-case letters, digits, '-', '_' and '/'
(`scans/<uuid>`); the database row of a file keeps its name.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from kezek.sealing import Keyring

NAME = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_.-]+)*$")


class FileMissing(LookupError):
    pass


class FileStore(Protocol):
    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes: ...
    def delete(self, name: str) -> None: ...
    def exists(self, name: str) -> bool: ...
    def names(self) -> Iterator[str]: ...


class FolderStore:
    """Files in a folder: each written to a temporary file, flushed to disk
    and renamed into place, so a crash never leaves half a file."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root.resolve())

    def _path(self, name: str) -> Path:
        if not NAME.match(name) or ".." in name:
            raise ValueError(f"file name {name!r}")
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise FileMissing(name) from None

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def names(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()


def open_store(url: str, default: Path) -> FileStore:
    """The store a setting names: empty -> `default` (a folder under the
    state folder); a path or file:///path -> that folder."""
    if not url:
        return FolderStore(default)
    if url.startswith("file://"):
        return FolderStore(Path(url.removeprefix("file://")))
    if "://" in url:
        raise ValueError(f"file store {url.split('://')[0]}:// is not built in (a folder or file:///path)")
    return FolderStore(Path(url))


class SealedFiles:
    """Files sealed with the service's key ring."""

    def __init__(self, store: FileStore, ring: Keyring):
        self.store, self.ring = store, ring

    def put(self, name: str, data: bytes, **header) -> None:
        self.store.put(name, self.ring.seal_file(data, name, **header))

    def get(self, name: str) -> bytes:
        return self.ring.open_file(self.store.get(name), name)

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def rekey(self, *, check: bool = False) -> tuple[int, int]:
        """Every file to the current key: (moved, already there). `check`:
        count the files on another key, move nothing."""
        moved = kept = 0
        for name in self.store.names():
            blob = self.store.get(name)
            if Keyring.file_kid(blob) == self.ring.current:
                kept += 1
                continue
            if not check:
                self.store.put(name, self.ring.rewrap_file(blob, name))
            moved += 1
        return moved, kept
