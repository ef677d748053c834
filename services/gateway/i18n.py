"""Gettext catalogs of the portal. The .po files in `locale/` are the
source; `compile_catalogs` turns them into .mo files under the state folder
when they are missing or older than their .po (at start-up and in tests),
so compiled files are never committed."""
from __future__ import annotations

import functools
from pathlib import Path

from babel.support import NullTranslations, Translations

from kezek import i18n

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
    return i18n.compile_catalogs(src_dir, out_dir, DOMAIN)


@functools.cache
def translations(mo_dir: str, lang: str) -> NullTranslations:
    if lang == "en":
        return NullTranslations()
    t = Translations.load(mo_dir, [lang], DOMAIN)
    if lang in FALLBACK:
        t.add_fallback(translations(mo_dir, FALLBACK[lang]))
    return t


def pick_language(requested: str | None, cookie: str | None, accept: str | None, country: str) -> str:
    return i18n.negotiate(LANGUAGES, requested, cookie, accept=accept, default=DEFAULT.get(country, "ru"))
