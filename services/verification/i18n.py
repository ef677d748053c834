"""The staff pages in Russian, Kyrgyz and Kazakh: gettext catalogs
(`locale/<lang>/LC_MESSAGES/messages.po`, the source) compiled to .mo files
under the state folder when missing or older than their .po, and one Jinja2
environment per language with those translations installed. Every text a
page shows is a msgid in a template; code passes codes, never sentences."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from kezek import i18n, territories
from kezek.formatting import Formats
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
    return i18n.negotiate(LANGUAGES, requested, cookie, preferred, default=DEFAULT)


def _fmt_date(value: date | str | None, fmt: Formats, form: str | None = None) -> str:
    """A day (a moment's own day: the staff pages show moments as stored)."""
    if value is None:
        return "—"
    return fmt.long_day(value) if form == "long" else fmt.date(value)


def _fmt_moment(value: datetime | str | None, fmt: Formats) -> str:
    """A moment or a day as the pages and a refusal's parameters carry it."""
    if value is None:
        return "—"
    shown = fmt.moment(value)
    return shown or str(value)


_COMPILED = i18n.CompiledTemplates()   # the environments below, compiled once a process


class Pages:
    """One Jinja2 environment per language."""

    def __init__(self, state_dir: Path, static_version: str = "1"):
        mo_dir = Path(state_dir) / "locale" / "verification"
        compile_catalogs(mo_dir)
        self.envs: dict[str, Environment] = {}
        for lang in LANGUAGES:
            env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                              extensions=["jinja2.ext.i18n"], undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, bytecode_cache=_COMPILED)
            env.install_gettext_translations(Translations.load(str(mo_dir), [lang], DOMAIN), newstyle=True)
            fmt = Formats(lang)
            env.filters["d"] = lambda v, form=None, _f=fmt: _fmt_date(v, _f, form)
            env.filters["dt"] = lambda v, _f=fmt: _fmt_moment(v, _f)
            env.filters["moment"] = lambda v, _f=fmt: _fmt_moment(v, _f)
            env.filters["district"] = lambda code, _l=lang: territories.district_name(code, _l)
            env.globals.update(lang=lang, languages=LANGUAGE_NAMES, static_version=static_version)
            self.envs[lang] = env

    def render(self, lang: str, template: str, **ctx) -> str:
        return self.envs[lang].get_template(template).render(**ctx)
