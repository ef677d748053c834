"""Gettext catalogs of the pages. The .po files in a service's `locale/`
are the source; `compile_catalogs` turns them into .mo files under the
state folder when they are missing or older than their .po (at start-up and
in tests), so compiled files are never committed."""
from __future__ import annotations

import functools
import io
import os
from collections.abc import Collection
from pathlib import Path

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "messages"


class CompiledTemplates(jinja2.BytecodeCache):
    """Templates compiled once per process, for the Jinja2 environments of
    one configuration (give each configuration of `jinja2.Environment` a
    cache of its own: the compiled code depends on it). A service builds an
    environment per language, and the tests build hundreds of apps: each
    template is compiled from source once (its source checked every time
    it loads, so a changed file is compiled again)."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


def compile_catalogs(src_dir: Path, out_dir: Path, domain: str = DOMAIN) -> list[Path]:
    """The .mo files written (none when all are up to date)."""
    written = []
    for po in sorted(src_dir.glob(f"*/LC_MESSAGES/{domain}.po")):
        lang = po.parent.parent.name
        mo = out_dir / lang / "LC_MESSAGES" / f"{domain}.mo"
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        compiled = _compiled(po, po.stat().st_mtime, lang, domain)
        mo.parent.mkdir(parents=True, exist_ok=True)
        # Two processes starting at once each write their own file, then
        # swap it in whole: a reader never sees half a catalogue.
        tmp = mo.with_name(f"{domain}.{os.getpid()}.{id(compiled)}.tmp")
        tmp.write_bytes(compiled)
        tmp.replace(mo)
        written.append(mo)
    return written


@functools.cache
def _compiled(po: Path, mtime: float, lang: str, domain: str) -> bytes:
    """The .mo of one .po as it was at `mtime`: parsed once a process (a
    process that builds several apps, the tests, writes it for each)."""
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang.replace("-", "_"), domain=domain)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def negotiate(offered: Collection[str], *chosen: str | None, accept: str | None = None, default: str) -> str:
    """The reader's language: the first of `chosen` (the address's ?lang=, the
    cookie ...) that is offered, else the first offered tag of the browser's
    Accept-Language, else `default`."""
    for candidate in chosen:
        if candidate in offered:
            return candidate
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in offered:
            return tag
    return default
