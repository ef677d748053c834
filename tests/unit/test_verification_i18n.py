"""The caseworkers' pages speak Russian and Kyrgyz from gettext catalogs:
every text of every template is translated in both, with the same
placeholders, and no page or module carries a sentence of its own."""
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from services.verification import domain as d
from services.verification import i18n
from workflows import rules

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
        text = text.replace('"Русский"', "").replace('"Кыргызча"', "").replace('"Қазақша"', "")  # language names, in their own language
        assert not CYRILLIC.search(text), path.relative_to(HERE)


def test_the_compiled_catalogs_render_kyrgyz_and_russian_plurals(tmp_path):
    pages = i18n.Pages(tmp_path)
    ru = pages.envs["ru"].from_string('{{ ngettext("%(num)s day left", "%(num)s days left", n) }}')
    ky = pages.envs["ky"].from_string('{{ ngettext("%(num)s day left", "%(num)s days left", n) }}')
    assert [ru.render(n=n) for n in (1, 3, 5, 21)] == [
        "остался 1 день", "осталось 3 дня", "осталось 5 дней", "остался 21 день"]
    assert ky.render(n=3) == "3 күн калды"


SAMPLE_PARAMS = {"max": "200", "max_mb": "5", "until": "2027-03-11", "state": "enrolled", "seconds": 4, "min": 10,
                 "deadline": "2027-03-10T00:00:00", "at": "2027-03-09T10:00:00", "issued": "2027-03-12",
                 "kindergarten": "sun-1", "district": "41711210000000"}
CLI_ONLY = {"login_format", "login_taken", "password_too_short", "scope_unchecked"}     # `kezek staff-add` prints the English


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_refusal_of_the_service_is_said_in_the_page_language(lang, tmp_path):
    env = i18n.Pages(tmp_path).envs[lang]
    error = env.from_string('{% import "_messages.html" as m %}{{ m.error(e) }}')
    for code in set(d.TEXTS) - CLI_ONLY:
        said = error.render(e={"code": code, "params": SAMPLE_PARAMS})
        assert CYRILLIC.search(said) and code not in said, (lang, code, said)


def caseworker_refusals() -> set[str]:
    """Every refusal the referral's rules give a caseworker's confirm or
    reject, over the states, categories and moments a referral may have."""
    issued = datetime(2027, 3, 1, 10, tzinfo=UTC)
    codes = set()
    for state in rules.ReferralState:
        for category, needs in (("general", False), ("privileged", True), ("extraordinary", False)):
            r = rules.Standing(state=state, category=category, needs_confirmation=needs, issued_at=issued,
                               deadline=issued + timedelta(days=3), closed_at=issued, stoplist_until=issued)
            for at in (issued - timedelta(hours=1), issued + timedelta(days=1), issued + timedelta(days=5)):
                for act in (rules.Act.CONFIRM, rules.Act.REJECT):
                    why = rules.refusal(act, r, at, date(2027, 3, 9))
                    codes |= {why.code, rules.closed_reason(state, issued, issued).code} if why else set()
    return codes | {"acted_at_in_future", "acted_at_too_old", "case_closed"}   # the workflow's clock; the client


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_refusal_of_the_referral_a_caseworker_meets_is_said_in_the_page_language(lang, tmp_path):
    env = i18n.Pages(tmp_path).envs[lang]
    refusal = env.from_string('{% import "_messages.html" as m %}{{ m.refusal(r) }}')
    codes = caseworker_refusals()
    assert {"window_ended", "referral_closed", "certificate_date_in_future", "general_has_no_privilege"} <= codes
    for code in codes:
        said = refusal.render(r={"refusal": "the English words", "refusal_code": code, "refusal_params": SAMPLE_PARAMS})
        assert CYRILLIC.search(said) and "English" not in said, (lang, code, said)
    unknown = refusal.render(r={"refusal": "the English words", "refusal_code": None, "refusal_params": {}})
    assert '<q lang="en">the English words</q>' in unknown
