"""The queue's rules (DOMAIN.md sections 3 and 6), pure functions and
dataclasses, no I/O; besides the standard library only the shared pure rules
(kezek.pin, kezek.categories, kezek.refusals, workflows.rules): the queue's
use cases, the scenario runner, the import and the benchmark all decide
with this code.

- policy.py      categories, minimum age, windows, stop-list: what an administrator may change
- ranking.py     who comes first, who is old enough
- allocation.py  serial dictatorship over one ranking; replay of a recorded run
- positions.py   where a waiting child stands, and why
- entries.py     what a new entry must meet; the masked name of the public queue
- imports.py     what a referral moved from the old portal must meet
- pin.py         the birth date a personal number encodes
- commands.py    what callers ask for, as data
- refusals.py    every refusal: a code, its parameters, the field, an English text

The names below are the package's vocabulary, for callers outside the queue.
"""
from services.queue.domain.allocation import Allocation, FreePlaces, allocate, allocate_ranked, groups_of, replay
from services.queue.domain.commands import ImportReferral, JoinQueue, PublishPlaces
from services.queue.domain.entries import MAX_PREFERENCES, mask_name
from services.queue.domain.pin import birth_date_from_pin
from services.queue.domain.policy import DEFAULT_CATEGORIES, DEFAULT_POLICY, EXTRAORDINARY, GENERAL, Category, Policy
from services.queue.domain.positions import PositionExplanation, explain_position, explain_positions, position
from services.queue.domain.ranking import (Applicant, PlaceKey, latest_eligible_birth_date, min_age_date,
                                           rank_key, reached_min_age)
from services.queue.domain.refusals import DomainError, Invalid, NotFound, Refused, UnknownCategory

__all__ = [
    "Allocation", "FreePlaces", "allocate", "allocate_ranked", "groups_of", "replay",
    "ImportReferral", "JoinQueue", "PublishPlaces", "MAX_PREFERENCES", "mask_name", "birth_date_from_pin",
    "DEFAULT_CATEGORIES", "DEFAULT_POLICY", "EXTRAORDINARY", "GENERAL", "Category", "Policy",
    "PositionExplanation", "explain_position", "explain_positions", "position",
    "Applicant", "PlaceKey", "latest_eligible_birth_date", "min_age_date", "rank_key", "reached_min_age",
    "DomainError", "Invalid", "NotFound", "Refused", "UnknownCategory",
]
