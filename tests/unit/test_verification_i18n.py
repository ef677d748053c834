"""The caseworkers' pages speak Russian and Kyrgyz from gettext catalogs:
every text of every template is translated in both, with the same
placeholders, and no page or module carries a sentence of its own."""
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from services.verification import i18n

HERE = Path(i18n.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
CYRILLIC = re.compile(r"[\u0400-\u04FF]")


def template_messages() -> dict[str, tuple]:
    found = {}
    for _file, _line, message, _comments, _ctx in extract_from_dir(
            str(HERE), method_map=[("**/templates/**.html", "jinja2")],
            options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}):
        key = message[0] if isinstance(message, tuple) else message
        found[key] = message if isinstance(message, tuple) else (message,)
    return found


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_template_text_is_translated_with_the_same_placeholders(lang):
    with (HERE / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=lang)
    messages = template_messages()
    assert len(messages) > 150
    for key, ids in messages.items():
        entry = catalog.get(ids if len(ids) > 1 else key)
        assert entry is not None, f"{lang}: no translation of {key!r}"
        assert not entry.fuzzy, key
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        assert all(strings), f"{lang}: empty translation of {key!r}"
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(" ".join(ids))), (lang, key, text)
            assert CYRILLIC.search(text) or not re.search(r"[A-Za-z]{4,}", PLACEHOLDER.sub("", text)), (lang, key)


def test_templates_and_modules_carry_no_sentence_outside_the_catalogs():
    for path in (HERE / "templates").glob("*.html"):
        assert not CYRILLIC.search(path.read_text()), path.name
    modules = list(HERE.rglob("*.py"))
    assert len(modules) > 15
    for path in modules:
        text = path.read_text()
        text = text.replace('"Русский"', "").replace('"Кыргызча"', "")   # language names, in their own language
        assert not CYRILLIC.search(text), path.relative_to(HERE)


def test_the_compiled_catalogs_render_kyrgyz_and_russian_plurals(tmp_path):
    pages = i18n.Pages(tmp_path)
    ru = pages.envs["ru"].from_string('{{ ngettext("%(num)s day left", "%(num)s days left", n) }}')
    ky = pages.envs["ky"].from_string('{{ ngettext("%(num)s day left", "%(num)s days left", n) }}')
    assert [ru.render(n=n) for n in (1, 3, 5, 21)] == [
        "остался 1 день", "осталось 3 дня", "осталось 5 дней", "остался 21 день"]
    assert ky.render(n=3) == "3 күн калды"
