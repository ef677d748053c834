"""Gettext catalogs of the pages. The .po files in a service's `locale/`
are the source; `compile_catalogs` turns them into .mo files under the
state folder when they are missing or older than their .po (at start-up and
in tests), so compiled files are never committed."""
from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "messages"


def compile_catalogs(src_dir: Path, out_dir: Path, domain: str = DOMAIN) -> list[Path]:
    """The .mo files written (none when all are up to date)."""
    written = []
    for po in sorted(src_dir.glob(f"*/LC_MESSAGES/{domain}.po")):
        lang = po.parent.parent.name
        mo = out_dir / lang / "LC_MESSAGES" / f"{domain}.mo"
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=lang.replace("-", "_"), domain=domain)
        mo.parent.mkdir(parents=True, exist_ok=True)
        # Two processes starting at once each write their own file, then
        # swap it in whole: a reader never sees half a catalogue.
        tmp = mo.with_name(f"{domain}.{os.getpid()}.{id(catalog)}.tmp")
        with tmp.open("wb") as f:
            write_mo(f, catalog, use_fuzzy=False)
        tmp.replace(mo)
        written.append(mo)
    return written


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
