"""The staff pages in Russian, Kyrgyz and Kazakh: gettext catalogs
(`locale/<lang>/LC_MESSAGES/messages.po`, the source) compiled to .mo files
under the state folder when missing or older than their .po, and one Jinja2
environment per language with those translations installed. Every text a
page shows is a msgid in a template; code passes codes, never sentences."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from babel.dates import format_date, format_datetime
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from kezek import i18n
from services.verification.domain import STAFF_LANGUAGES

HERE = Path(__file__).parent
LOCALE_DIR = HERE / "locale"
TEMPLATES = HERE / "templates"
DOMAIN = "messages"
LANGUAGES = STAFF_LANGUAGES
LANGUAGE_NAMES = {"ru": "Русский", "ky": "Кыргызча", "kk": "Қазақша"}
DEFAULT = "ru"


def compile_catalogs(out_dir: Path, src_dir: Path = LOCALE_DIR) -> list[Path]:
    return i18n.compile_catalogs(src_dir, out_dir, DOMAIN)


def pick_language(requested: str | None, cookie: str | None, preferred: str | None) -> str:
    for candidate in (requested, cookie, preferred):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT


def _fmt_date(value: date | None, lang: str, form: str = "dd.MM.yyyy") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):          # a day as another service's JSON carries it
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    return format_date(value, form, locale=lang)


def _fmt_moment(value: datetime | None, lang: str) -> str:
    if value is None:
        return "—"
    return format_datetime(value, "dd.MM.yyyy HH:mm", tzinfo=value.tzinfo, locale=lang)


def _fmt_iso(value: str | None, lang: str) -> str:
    """A moment or a day as a refusal's parameters carry it (ISO, local time)."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "—")
    if len(str(value)) == 10:
        return _fmt_date(moment.date(), lang)
    return _fmt_moment(moment, lang)


class Pages:
    """One Jinja2 environment per language."""

    def __init__(self, state_dir: Path, static_version: str = "1"):
        mo_dir = Path(state_dir) / "locale" / "verification"
        compile_catalogs(mo_dir)
        self.envs: dict[str, Environment] = {}
        for lang in LANGUAGES:
            env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                              extensions=["jinja2.ext.i18n"], undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
            env.install_gettext_translations(Translations.load(str(mo_dir), [lang], DOMAIN), newstyle=True)
            env.filters["d"] = lambda v, form="dd.MM.yyyy", _l=lang: _fmt_date(v, _l, form)
            env.filters["dt"] = lambda v, _l=lang: _fmt_moment(v, _l)
            env.filters["moment"] = lambda v, _l=lang: _fmt_iso(v, _l)
            env.globals.update(lang=lang, languages=LANGUAGE_NAMES, static_version=static_version)
            self.envs[lang] = env

    def render(self, lang: str, template: str, **ctx) -> str:
        return self.envs[lang].get_template(template).render(**ctx)
