"""What a queue entry must meet by itself (DOMAIN.md sections 2 and 3): the
PIN's birth date, a known category, one to three kindergartens that teach
in the child's language; and how the public queue shows a child."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from services.queue.domain.commands import JoinQueue
from services.queue.domain.pin import birth_date_from_pin
from services.queue.domain.policy import Policy
from services.queue.domain.refusals import Invalid, NotFound

MAX_PREFERENCES = 3  # kindergartens a parent may list (the Balalyk form has three)

# What each kindergarten teaches in, by id (an empty list: any language).
Languages = Mapping[str, Sequence[str]]


def check_entry(cmd: JoinQueue, policy: Policy, languages: Languages, today: date) -> date:
    """The rules a new queue entry must meet by itself (the PIN's birth
    date, category, preferences); returns the birth date."""
    birth = birth_date_from_pin(cmd.pin, policy.country)
    if cmd.birth_date is not None and cmd.birth_date != birth:
        if policy.country == "KG":
            raise Invalid("birth_date_contradicts_pin", field="birth_date", given=cmd.birth_date, birth=birth)
        birth = cmd.birth_date  # a Kazakh IIN's date is only a hint
    if birth > today:
        raise Invalid("birth_date_future", field="pin")
    policy.category(cmd.category)
    check_preferences(cmd.preferences, cmd.language, languages)
    return birth


def check_preferences(preferences: Sequence[str], language: str, languages: Languages) -> None:
    """One to three different known kindergartens, each teaching in the
    child's language (`field`: the position in the list at fault)."""
    if not preferences:
        raise Invalid("preferences_empty", field="preferences")
    if len(set(preferences)) != len(preferences):
        raise Invalid("preferences_repeated", field="preferences")
    if len(preferences) > MAX_PREFERENCES:
        raise Invalid("preferences_too_many", field="preferences", most=MAX_PREFERENCES)
    for i, kid in enumerate(preferences):
        if kid not in languages:
            raise Invalid("kindergarten_unknown", field=f"preferences.{i}", kindergarten=kid)
        check_teaches(kid, languages[kid], language, field=f"preferences.{i}")


def check_teaches(kindergarten: str, taught: Sequence[str] | None, language: str, *, field: str) -> None:
    if taught is None:
        raise NotFound("kindergarten_unknown", field="kindergarten", kindergarten=kindergarten)
    if taught and language not in taught:
        raise Invalid("kindergarten_language", field=field, kindergarten=kindergarten, language=language,
                      languages=", ".join(taught))


def mask_name(surname: str, name: str, patronymic: str | None = None) -> str:
    """The public queue shows initials only: "Asanov Aibek" -> "A***** A."."""
    def initial(word: str | None) -> str:
        word = (word or "").strip()
        return f"{word[0].upper()}." if word else ""
    s = (surname or "").strip()
    masked = f"{s[0].upper()}{'*' * (len(s) - 1)}" if s else ""
    return " ".join(p for p in (masked, initial(name), initial(patronymic)) if p)
