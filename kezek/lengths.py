"""How long a text a person types may be: one table, read by the services
that check it (a longer one is refused with `too_long`, naming the limit)
and by the pages, whose inputs carry it as `maxlength`, so the form and the
server never disagree."""
from __future__ import annotations

NAME = 60            # a surname, a name or a patronymic
EMAIL = 254          # RFC 5321's longest path
PIN = 16             # 14 digits (KG) or 12 (KZ), with a space or dash here and there

MAX_LENGTH: dict[str, int] = {
    "child.pin": PIN, "child.surname": NAME, "child.name": NAME, "child.patronymic": NAME,
    "parent.surname": NAME, "parent.name": NAME, "parent.patronymic": NAME, "parent.pin": PIN,
    "parent.document_number": 20, "parent.phone": 20, "parent.email": EMAIL,
    "address.street": 100, "address.house": 10, "address.flat": 6,
    "code": 6, "email": EMAIL, "login": EMAIL, "password": 128, "password2": 128,
}


def limit(field: str) -> int | None:
    return MAX_LENGTH.get(field)


def too_long(field: str, value: str | None) -> bool:
    most = MAX_LENGTH.get(field)
    return most is not None and len(value or "") > most
