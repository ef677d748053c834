"""The codes of refusals and their English text, for API clients.

A refusal names a code (`place_not_free`), the field it concerns and the
parameters of its message (`{"free": 2}`). Each service declares its codes
once, in its own catalogue:

    MESSAGES = refusals.catalogue("queue", {
        "place_not_free": "only {free} places are free",
    })

API clients read the English text in `detail`; the pages translate the code
with their gettext catalogs (msgid = the English text), so a Kyrgyz page
never shows an English sentence.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_CODE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")

# Codes every service may answer (the skeleton's own).
COMMON: dict[str, str] = {
    "bad_request": "the request is malformed",
    "bad_path": "the path contains characters that are not allowed",
    "invalid_input": "the input is invalid",
    "not_found": "not found",
    "refused": "refused by the rules",
    "unauthenticated": "sign in, or call with a valid service token",
    "forbidden": "not allowed for this role",
    "body_too_large": "the body may have at most {limit} bytes",
    "rate_limited": "too many requests; try again in a moment",
    "unavailable": "temporarily unavailable; try again shortly",
    "internal": "internal error",
}

_catalogues: dict[str, dict[str, str]] = {"common": COMMON}


def catalogue(owner: str, messages: Mapping[str, str]) -> dict[str, str]:
    """Registers `owner`'s codes; a code means one thing across services."""
    for code, text in messages.items():
        if not _CODE.match(code):
            raise ValueError(f"refusal code {code!r} must be lower_snake_case")
        for other, known in _catalogues.items():
            if other != owner and code in known and known[code] != text:
                raise ValueError(f"refusal code {code!r} means another thing in {other}")
    _catalogues[owner] = dict(messages)
    return _catalogues[owner]


def is_code(text: str) -> bool:
    return bool(_CODE.match(text))


def template(code: str) -> str | None:
    for messages in _catalogues.values():
        if code in messages:
            return messages[code]
    return None


def english(code: str, params: Mapping[str, Any] | None = None) -> str | None:
    """The English text of a code with its parameters filled in."""
    text = template(code)
    if text is None:
        return None
    try:
        return text.format(**dict(params or {}))
    except (KeyError, IndexError, ValueError):
        return text


@dataclass(frozen=True)
class FieldError:
    """One broken rule of a form: the field (a dotted path, e.g.
    "child.pin"), the refusal's code and the parameters of its message."""

    field: str
    code: str
    params: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict:
        return {"field": self.field, "code": self.code, "params": dict(self.params)}


class FieldsRefused(Exception):
    """One or more fields break a rule; nothing was written. Each service
    refuses with its own subclass."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.code}" for e in self.errors))
