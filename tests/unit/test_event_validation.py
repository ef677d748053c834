"""Events are checked against their schema by a compiled validator, and the
reference validator decides whatever it doubts or cannot read
(kezek/events: validate_data, new_event): the same events pass, the same are
refused with the same words."""
from __future__ import annotations

import pytest

import kezek.events as events
from kezek.events import InvalidEvent, new_event, validate_data

ISSUED = {"referral_id": "r1", "application_id": "a1", "kindergarten_id": "k1", "deadline": "2027-03-08T18:00:00Z"}


class Unreadable:
    def is_valid(self, data):
        raise ValueError("unsupported type")


@pytest.fixture
def compiled_cannot_read(monkeypatch):
    monkeypatch.setattr(events, "_compiled", lambda event_type: Unreadable())


def test_data_the_compiled_validator_cannot_read_is_decided_by_the_reference_validator(compiled_cannot_read):
    validate_data("referral.issued.v1", ISSUED)
    with pytest.raises(InvalidEvent, match="referral.issued.v1: data at deadline"):
        validate_data("referral.issued.v1", {**ISSUED, "deadline": 5})


def test_an_event_is_refused_with_the_reference_validators_words():
    with pytest.raises(InvalidEvent, match="referral.issued.v1: data at \\(root\\): 'deadline' is a required property"):
        new_event("referral.issued.v1", "referral:r1", {k: v for k, v in ISSUED.items() if k != "deadline"},
                  source="queue")
    assert new_event("referral.issued.v1", "referral:r1", ISSUED, source="queue").data == ISSUED
