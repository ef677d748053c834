"""What callers ask the queue to do, as plain data (the use cases take
these; the API, the consumers and the importer build them)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class JoinQueue:
    pin: str
    surname: str
    name: str
    category: str
    language: str
    preferences: tuple[str, ...]
    patronymic: str | None = None
    birth_date: date | None = None
    queue_date: datetime | None = None     # kept as given by an import or the registration event
    application_id: str | None = None
    parent_id: str | None = None
    locale: str = "ru"


@dataclass(frozen=True)
class PublishPlaces:
    kindergarten: str
    cohort: int
    language: str
    count: int
    for_category: str | None = None


@dataclass(frozen=True)
class ImportReferral:
    """A live referral of a previous system, as it stands there."""
    referral_id: str               # its id there (kept as external_id)
    application_id: str
    kindergarten: str
    cohort: int
    language: str
    category: str
    for_category: str | None
    state: str                     # awaiting_confirmation | awaiting_enrolment
    issued_at: datetime
    deadline: datetime             # the end of the running window, kept exactly
    needs_confirmation: bool
    extended: bool = False         # the one extension is used
    confirmed_at: datetime | None = None
