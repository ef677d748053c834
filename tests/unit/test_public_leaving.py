"""A child leaving its kindergarten on the public stream (issue 19): which
kindergarten freed a place, pseudonymously; the place itself as one more
free place of its group."""
from __future__ import annotations

from services.gateway.public.projection import Child, Pseudonyms, project

NAMES = Pseudonyms(b"test-pseudonym-key")


class Lookup:
    def child(self, application_id):
        return Child(NAMES.child("KG", "21505201912345"), 2019, "general", "41711210000000", "ky") \
            if application_id == "app-1" else None

    def referral(self, referral_id):
        return None

    def district_of(self, kindergarten_id):
        return "41711210000000"


def test_a_child_who_left_is_published_with_the_kindergarten_and_no_personal_data():
    [fact] = project("application.left.v1", {"application_id": "app-1", "parent_id": "p-9",
                                             "kindergarten_id": "bishkek-12", "referral_id": "77",
                                             "left_at": "2027-03-12T09:00:00+00:00", "reason": "moved to Osh"},
                     Lookup(), NAMES).facts
    assert fact.type == "public.application.left.v1"
    assert fact.data == {"child_ref": NAMES.child("KG", "21505201912345"), "cohort": 2019, "category": "general",
                         "district": "41711210000000", "kindergarten_id": "bishkek-12"}


def test_a_freed_place_is_one_more_free_place_of_its_group():
    [fact] = project("place.freed.v1", {"kindergarten_id": "bishkek-12", "cohort": 2023, "language": "ru",
                                        "for_category": None, "referral_id": "77", "free": 1}, Lookup(), NAMES).facts
    assert fact.type == "public.place.freed.v1"
    assert fact.data["count"] == 1 and fact.data["district"] == "41711210000000" and "referral_id" not in fact.data
