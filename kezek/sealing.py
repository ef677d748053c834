"""Personal data at rest (DOMAIN.md section 7): fields sealed with AES-256-GCM
under a key named by its `kid`, a keyed hash beside a field that is looked
up, and envelope encryption for files. The one sealing module of Kezek.

Keys come from settings (`KEZEK_DATA_KEYS`, or `KEZEK_<SERVICE>_DATA_KEYS`
for one service; `_FILE` for either): `kid:key` entries separated by spaces,
commas or new lines, each key 32 random bytes in base64url (`kezek keys
data-key` prints one). The first entry is the current key: every new value
is sealed with it; the others only open what they sealed. Rotation: put the
new key first, keep the old ones, run `kezek rekey` (every row and file
moves to the current key), then drop the old ones. In development, with no
keys set, a key derived from a fixed development secret is used (kid `dev`).

Each key is split with HKDF-SHA256 into three: one seals fields, one keys
the lookup hashes, one wraps the data keys of files.

- A sealed field is `v1.<kid>.<base64url(nonce || ciphertext || tag)>`, with a
  random 12-byte nonce and the field's purpose (`child_pin`, `parent`, ...)
  as associated data: a sealed value cannot be moved to another field.
- A lookup hash is HMAC-SHA256(lookup key, `<kind>\\0<value>`) in hex: the
  same PIN gives the same hash under one key (unique indexes and searches
  use it), and nobody without the key can test a guess. A search computes
  the hash under every key of the ring (`lookups`), so rows not yet moved
  to the current key are still found.
- A file is sealed with a fresh data key of its own (AES-256-GCM); the data
  key is wrapped by the current key and kept, with its kid, in the file's
  header. Rotating rewraps the data key; the file's body stays as it is.

Anonymising a sealed field (retention, erasure) is overwriting it and its
lookup hash: nothing else holds the value.

In tables, `Sealed("purpose")` and `SealedJSON("purpose")` are column types
that seal on write and open on read with the key ring attached to the
engine (`kezek.db.make_engine(url, keyring=...)`). They refuse `==`, `IN`
and `LIKE`: a sealed column is found through its lookup hash column
(`<column>_hash`, declared with `hashed_as=`), which `kezek rekey` keeps in
step with the key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, get_history
from sqlalchemy.sql import operators

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEVELOPMENT_KID = "dev"
_DEVELOPMENT_SECRET = b"kezek development data key - never in production"
# Kinds of lookup hash whose values are compared without regard to case.
CASELESS = frozenset({"email"})
# A file: magic, header length (4 bytes, big-endian), header JSON, body.
FILE_MAGIC = b"KZS1"


class KeyringError(ValueError):
    """A key ring that cannot be built from the settings."""


class Unopenable(ValueError):
    """Sealed with a key this ring does not hold, altered, or not sealed at all."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key_line(kid: str) -> str:
    """A fresh `kid:key` entry for KEZEK_DATA_KEYS."""
    if not KID.match(kid):
        raise KeyringError(f"kid {kid!r}: letters, digits, '-' and '_' only, at most 32")
    return f"{kid}:{_b64(os.urandom(KEY_BYTES))}"


def _derive(master: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"kezek {info} v1".encode()).derive(master)


@dataclass(frozen=True)
class _Key:
    kid: str
    fields: AESGCM
    lookup: bytes
    wrap: AESGCM

    @classmethod
    def of(cls, kid: str, master: bytes) -> "_Key":
        return cls(kid, AESGCM(_derive(master, "fields")), _derive(master, "lookup"),
                   AESGCM(_derive(master, "file keys")))


class Keyring:
    """The keys of one service: the current one seals, every one opens."""

    def __init__(self, keys: Iterable[tuple[str, bytes]]):
        self._keys: dict[str, _Key] = {}
        for kid, master in keys:
            if not KID.match(kid):
                raise KeyringError(f"kid {kid!r}: letters, digits, '-' and '_' only, at most 32")
            if len(master) != KEY_BYTES:
                raise KeyringError(f"key {kid!r}: {len(master)} bytes, {KEY_BYTES} wanted")
            if kid in self._keys:
                raise KeyringError(f"key {kid!r} is given twice")
            self._keys[kid] = _Key.of(kid, master)
        if not self._keys:
            raise KeyringError("no key")
        self.current = next(iter(self._keys))

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        """`kid:base64url-key` entries separated by spaces, commas or lines; the first is current."""
        entries = [e for e in re.split(r"[\s,]+", text.strip()) if e]
        keys = []
        for entry in entries:
            kid, sep, b64 = entry.partition(":")
            if not sep:
                raise KeyringError(f"{entry[:8]}...: an entry is kid:key")
            try:
                keys.append((kid, _unb64(b64)))
            except ValueError as exc:
                raise KeyringError(f"key {kid!r} is not base64url") from exc
        return cls(keys)

    @classmethod
    def development(cls) -> "Keyring":
        # A safety net: every production path passes the settings' ring.
        if os.environ.get("KEZEK_ENV") == "production":
            raise KeyringError("the development data key is refused in production (KEZEK_DATA_KEYS)")
        return cls([(DEVELOPMENT_KID, hashlib.sha256(_DEVELOPMENT_SECRET).digest())])

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    # ------------------------------------------------------------ fields

    def seal(self, value: str, purpose: str) -> str:
        key = self._keys[self.current]
        nonce = os.urandom(NONCE_BYTES)
        body = key.fields.encrypt(nonce, value.encode(), purpose.encode())
        return f"{VERSION}.{key.kid}.{_b64(nonce + body)}"

    def open(self, token: str, purpose: str) -> str:
        kid, raw = self._split(token)
        try:
            return self._keys[kid].fields.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()).decode()
        except InvalidTag:
            raise Unopenable(f"{purpose}: altered, or sealed for another field") from None

    def _split(self, token: str) -> tuple[str, bytes]:
        version, _, rest = token.partition(".")
        kid, _, body = rest.partition(".")
        if version != VERSION or not body:
            raise Unopenable("not a sealed value")
        if kid not in self._keys:
            raise Unopenable(f"sealed with key {kid!r}, which this ring does not hold")
        try:
            return kid, _unb64(body)
        except ValueError:
            raise Unopenable("not a sealed value") from None

    @staticmethod
    def kid_of(token: str) -> str | None:
        """The kid a value is sealed with; None if it is not a sealed value."""
        version, _, rest = token.partition(".")
        kid, dot, _ = rest.partition(".")
        return kid if version == VERSION and dot else None

    @staticmethod
    def is_sealed(value: str | None) -> bool:
        return bool(value) and Keyring.kid_of(value) is not None  # type: ignore[arg-type]

    # ------------------------------------------------------------ lookup hashes

    def lookup(self, kind: str, value: str) -> str:
        """The keyed hash of `value` under the current key."""
        return self._hash(self._keys[self.current], kind, value)

    def lookups(self, kind: str, value: str) -> list[str]:
        """Its hash under every key, the current first: what a search compares with."""
        return [self._hash(k, kind, value) for k in self._keys.values()]

    @staticmethod
    def _hash(key: _Key, kind: str, value: str) -> str:
        value = value.lower() if kind in CASELESS else value
        return hmac.new(key.lookup, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------ files (envelope encryption)

    def seal_file(self, data: bytes, name: str, **header: Any) -> bytes:
        """`data` under a fresh data key wrapped by the current key; `name`
        (where the file is kept) is bound to both, `header` kept in clear."""
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        body = AESGCM(data_key).encrypt(nonce, data, name.encode())
        return _file(self._wrapped(data_key, name, header), nonce + body)

    def open_file(self, blob: bytes, name: str) -> bytes:
        head, body = _read_file(blob)
        data_key = self._unwrap(head, name)
        try:
            return AESGCM(data_key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], name.encode())
        except InvalidTag:
            raise Unopenable(f"file {name}: altered") from None

    def rewrap_file(self, blob: bytes, name: str) -> bytes:
        """The same file with its data key wrapped by the current key (the body is not touched)."""
        head, body = _read_file(blob)
        data_key = self._unwrap(head, name)
        extra = {k: v for k, v in head.items() if k not in ("kid", "key", "nonce")}
        return _file(self._wrapped(data_key, name, extra), body)

    @staticmethod
    def file_kid(blob: bytes) -> str:
        return _read_file(blob)[0]["kid"]

    def _wrapped(self, data_key: bytes, name: str, header: dict) -> dict:
        key = self._keys[self.current]
        nonce = os.urandom(NONCE_BYTES)
        return {**header, "kid": key.kid, "nonce": _b64(nonce),
                "key": _b64(key.wrap.encrypt(nonce, data_key, f"file key/{name}".encode()))}

    def _unwrap(self, head: dict, name: str) -> bytes:
        kid = head.get("kid")
        if kid not in self._keys:
            raise Unopenable(f"file {name}: sealed with key {kid!r}, which this ring does not hold")
        try:
            return self._keys[kid].wrap.decrypt(_unb64(head["nonce"]), _unb64(head["key"]),
                                                f"file key/{name}".encode())
        except (InvalidTag, KeyError, ValueError):
            raise Unopenable(f"file {name}: its key is altered, or it belongs elsewhere") from None


def _file(head: dict, body: bytes) -> bytes:
    raw = json.dumps(head, separators=(",", ":"), sort_keys=True).encode()
    return FILE_MAGIC + struct.pack(">I", len(raw)) + raw + body


def _read_file(blob: bytes) -> tuple[dict, bytes]:
    if blob[:4] != FILE_MAGIC or len(blob) < 8:
        raise Unopenable("not a sealed file")
    (n,) = struct.unpack(">I", blob[4:8])
    try:
        head = json.loads(blob[8:8 + n])
    except ValueError:
        raise Unopenable("not a sealed file") from None
    return head, blob[8 + n:]


# ------------------------------------------------------------ the engine's ring and the column types


def attach(engine: sa.engine.Engine, ring: Keyring | None) -> None:
    """The ring the engine's sealed columns use (each engine has its own
    dialect object); None: the development ring, when first needed."""
    engine.dialect.kezek_keyring = ring  # type: ignore[attr-defined]


def ring_of(bind: Any) -> Keyring:
    """The ring of an engine, connection or session."""
    if hasattr(bind, "get_bind"):
        bind = bind.get_bind()
    return _ring(bind.dialect)


_REFUSED = {operators.eq, operators.ne, operators.in_op, operators.not_in_op, operators.like_op,
            operators.ilike_op, operators.not_like_op, operators.not_ilike_op, operators.startswith_op,
            operators.endswith_op, operators.contains_op, operators.lt, operators.le, operators.gt,
            operators.ge, operators.between_op}


class _NoCompare(sa.types.TypeDecorator.Comparator):
    """Refuses comparing a sealed column with a value (each sealing differs,
    so it would never match); SQLAlchemy's own column-to-column checks pass."""

    def operate(self, op, *other, **kwargs):
        if op in _REFUSED and not all(isinstance(o, sa.ColumnElement) and not isinstance(o, sa.BindParameter)
                                      for o in other):
            raise TypeError(f"a sealed column cannot be compared ({op.__name__}): "
                            "compare its lookup hash column instead")
        return super().operate(op, *other, **kwargs)


class Sealed(sa.types.TypeDecorator):
    """A text column stored sealed (see the module's docstring). `hashed_as`:
    the kind of lookup hash kept beside it in `<column>_hash`."""

    impl = sa.Text
    cache_ok = True
    comparator_factory = _NoCompare

    def __init__(self, purpose: str, *, hashed_as: str | None = None):
        super().__init__()
        self.purpose, self.hashed_as = purpose, hashed_as

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return _ring(dialect).seal(self._dump(value), self.purpose)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return self._load(_ring(dialect).open(value, self.purpose))

    def _dump(self, value) -> str:
        return str(value)

    def _load(self, text: str):
        return text


class SealedJSON(Sealed):
    """A JSON value (a dict or a list) stored sealed."""

    cache_ok = True

    def _dump(self, value) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)

    def _load(self, text: str):
        return json.loads(text)


def _ring(dialect) -> Keyring:
    return getattr(dialect, "kezek_keyring", None) or _development()


_DEVELOPMENT: list[Keyring] = []


def _development() -> Keyring:
    if not _DEVELOPMENT:
        _DEVELOPMENT.append(Keyring.development())
    elif os.environ.get("KEZEK_ENV") == "production":
        Keyring.development()   # raises
    return _DEVELOPMENT[0]


def sealed_columns(metadata: sa.MetaData) -> dict[str, list[sa.Column]]:
    """Every sealed column, by table (what `kezek rekey` moves)."""
    out: dict[str, list[sa.Column]] = {}
    for table in metadata.sorted_tables:
        cols = [c for c in table.columns if isinstance(c.type, Sealed)]
        if cols:
            out[table.name] = cols
    return out


def keep_lookup_hashes(base) -> None:
    """Every ORM write of a mapped class under `base` sets `<column>_hash`
    beside each sealed column declared `hashed_as=`, from the clear value,
    under the current key. (Bulk core inserts set it themselves.)"""

    # (attribute, kind) of each mapper, worked out at its first write: for
    # every row written, the mapper's columns were gone through, and a
    # changed row's every attribute's state built (`state.attrs`), to look
    # at one (a tenth of the SMS dispatcher's CPU recording its rounds).
    pairs_of: dict[Any, list[tuple[str, str]]] = {}

    def hashed(mapper) -> list[tuple[str, str]]:
        pairs = pairs_of.get(mapper)
        if pairs is None:
            pairs = pairs_of[mapper] = [(prop.key, col.type.hashed_as) for prop in mapper.column_attrs
                                        for col in prop.columns if isinstance(col.type, Sealed) and col.type.hashed_as]
        return pairs

    def on_write(mapper, connection, target, *, changed_only: bool) -> None:
        pairs = hashed(mapper)
        if not pairs:
            return
        for key, kind in pairs:
            if changed_only and not get_history(target, key, passive=PASSIVE_NO_INITIALIZE).has_changes():
                continue
            value = getattr(target, key)
            setattr(target, f"{key}_hash", ring_of(connection).lookup(kind, value) if value else None)

    sa.event.listen(base, "before_insert", lambda m, c, t: on_write(m, c, t, changed_only=False), propagate=True)
    sa.event.listen(base, "before_update", lambda m, c, t: on_write(m, c, t, changed_only=True), propagate=True)
