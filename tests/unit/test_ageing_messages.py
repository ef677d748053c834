"""What the parent and the public stream hear when a child reaches school
age and leaves the queue (DOMAIN.md section 3)."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from kezek.events import schema_for
from services.gateway.public.projection import Child, Pseudonyms, project
from services.notifications.domain import LOCALES, RULES, Channel, Kind
from services.notifications.rendering import Renderer, template_values

TZ = ZoneInfo("Asia/Bishkek")
NOW = datetime(2027, 3, 1, 18, tzinfo=UTC)
# The sentence each message says when the child goes back to (or stays in) the queue.
BACK_IN_QUEUE = {
    Kind.REFERRAL_EXPIRED: {"en": "stays in the queue", "ru": "остаётся в очереди", "ky": "кезекте калат",
                            "kk": "кезекте қалады"},
    Kind.PRIVILEGE_REJECTED: {"en": "back in the general queue", "ru": "возвращено в общую очередь",
                              "ky": "жалпы кезекке кайтарылды", "kk": "жалпы кезекке қайтарылды"},
}
SCHOOL_AGE = {"en": "school age", "ru": "школьного возраста", "ky": "мектеп курагына", "kk": "мектеп жасына"}


def values(**data):
    return template_values({"referral_id": "r1", "application_id": "a1", "kindergarten_name": "Sun", **data},
                           occurred_at=NOW, tz=TZ, cabinet_url="https://kezek.kg/cabinet")


@pytest.fixture(scope="module")
def renderer():
    return Renderer(TZ)


def test_the_parent_is_told_by_email_and_in_the_cabinet_not_by_sms():
    assert RULES["application.aged_out.v1"].kind is Kind.AGED_OUT
    assert set(RULES["application.aged_out.v1"].channels) == {Channel.EMAIL, Channel.INAPP}


@pytest.mark.parametrize("locale", LOCALES)
def test_the_aged_out_message_says_school_age_in_the_parents_language(renderer, locale):
    out = renderer.render(Kind.AGED_OUT, locale, Channel.EMAIL, values(school_age_years=7, aged_out=True))
    assert SCHOOL_AGE[locale] in out.body and "7" in out.body


@pytest.mark.parametrize("kind", list(BACK_IN_QUEUE))
@pytest.mark.parametrize("locale", LOCALES)
def test_a_referral_ended_after_the_birthday_does_not_promise_the_queue(renderer, kind, locale):
    usual = renderer.render(kind, locale, Channel.EMAIL, values())
    aged = renderer.render(kind, locale, Channel.EMAIL, values(aged_out=True))
    assert BACK_IN_QUEUE[kind][locale] in usual.body
    assert BACK_IN_QUEUE[kind][locale] not in aged.body and SCHOOL_AGE[locale] in aged.body


def test_the_public_stream_carries_the_pseudonym_cohort_and_category_only():
    names = Pseudonyms(b"k")
    child = Child(names.child("KG", "21505202012345"), 2020, "general", "41711100000000", "ru")

    class Lookup:
        def child(self, application_id):
            return child if application_id == "a1" else None

    out = project("application.aged_out.v1", {
        "application_id": "a1", "parent_id": "p1", "cohort": 2020, "category": "general",
        "aged_out_at": NOW.isoformat(), "school_age_years": 7}, Lookup(), names)
    [fact] = out.facts
    assert fact.type == "public.application.aged_out.v1"
    assert fact.data == {"child_ref": child.child_ref, "cohort": 2020, "category": "general",
                         "district": "41711100000000"}
    jsonschema.validate(fact.data, schema_for(fact.type))
