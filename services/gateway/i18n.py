"""Gettext catalogs of the portal. The .po files in `locale/` are the
source; `compile_catalogs` turns them into .mo files under the state folder
when they are missing or older than their .po (at start-up and in tests),
so compiled files are never committed."""
from __future__ import annotations

import functools
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
# Kyrgyz and Russian for Kyrgyzstan, Kazakh and Russian for Kazakhstan, English.
LANGUAGES = ("ky", "ru", "kk", "en")
LANGUAGE_NAMES = {"ky": "Кыргызча", "ru": "Русский", "kk": "Қазақша", "en": "English"}
# A missing translation falls back to Russian, which every parent of both
# countries can read, before the English msgid.
FALLBACK = {"ky": "ru", "kk": "ru"}
DEFAULT = {"KG": "ky", "KZ": "kk"}


def compile_catalogs(out_dir: Path, src_dir: Path = LOCALE_DIR) -> list[Path]:
    written = []
    for po in sorted(src_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        lang = po.parent.parent.name
        mo = out_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=lang.replace("-", "_"), domain=DOMAIN)
        mo.parent.mkdir(parents=True, exist_ok=True)
        tmp = mo.with_suffix(".tmp")
        with tmp.open("wb") as f:
            write_mo(f, catalog, use_fuzzy=False)
        tmp.replace(mo)
        written.append(mo)
    return written


@functools.cache
def translations(mo_dir: str, lang: str) -> NullTranslations:
    if lang == "en":
        return NullTranslations()
    t = Translations.load(mo_dir, [lang], DOMAIN)
    if lang in FALLBACK:
        t.add_fallback(translations(mo_dir, FALLBACK[lang]))
    return t


def pick_language(requested: str | None, cookie: str | None, accept: str | None, country: str) -> str:
    for candidate in (requested, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return DEFAULT.get(country, "ru")
