"""The cabinet reads the queue service's own shapes (its application view,
position explanations and live referral) as well as the list shapes."""
from __future__ import annotations

from datetime import datetime

from kezek import calendar as kcal
from services.gateway import referrals, views
from services.gateway.charts import position_chart
from services.gateway.geo import distance_m, nearest

NAMES = {"kg-1": "Kindergarten No 1"}
KG, KZ = kcal.calendar("KG"), kcal.calendar("KZ")


def test_queue_position_explanations_become_ahead_counts():
    p = views.position({"kindergarten": "kg-1", "position": 5, "ahead": 4,
                        "ahead_by_category": {"extraordinary": 1, "privileged": 1},
                        "ahead_same_category_earlier": 2, "ahead_same_moment": 0}, NAMES)
    assert p == {"kindergarten_id": "kg-1", "kindergarten_name": "Kindergarten No 1", "position": 5,
                 "ahead": {"higher_category": 2, "earlier_queue_date": 2}, "explanation": None}


def test_a_live_referral_of_the_application_view_is_listed_with_cancel_only():
    raw = {"id": "a1", "status": "referred", "category": "general", "queue_date": "2026-01-10T10:00:00+06:00",
           "referral": {"id": 7, "kindergarten": "kg-1", "status": "live", "state": "awaiting_enrolment",
                        "issued_at": "2027-03-01T10:00:00+06:00", "deadline": "2027-03-09T00:00:00+06:00"}}
    r = views.referral(views.live_referral(raw), NAMES)
    assert r["referral_id"] == "7" and r["status"] == "awaiting_enrolment" and r["actions"] == ["cancel"]
    assert r["kindergarten_name"] == "Kindergarten No 1"


# The queue's record of a privileged referral (its application view's
# `referral`), its confirmation window ending Thursday 11 March 2027 at 00:00
# in Bishkek, kept in UTC: the last working day, the extension day, is
# Wednesday 10 March (8 and 9 March are days off).
CONFIRMING = {"id": 8, "kindergarten": "kg-1", "status": "live", "state": "awaiting_confirmation",
              "issued_at": "2027-03-01T04:00:00Z", "deadline": "2027-03-10T18:00:00Z", "needs_confirmation": True,
              "extended": False}
CONFIRMING_END = datetime.fromisoformat(CONFIRMING["deadline"])


def test_extend_is_offered_only_on_the_last_working_day_of_the_confirmation_window():
    status = referrals.standing(KG, CONFIRMING)
    assert views.referral(CONFIRMING, NAMES, status, "2027-03-09")["actions"] == ["cancel"]
    on_the_day = views.referral(CONFIRMING, NAMES, status, "2027-03-10")
    assert on_the_day["actions"] == ["cancel", "extend"] and on_the_day["stage"] == "confirmation"
    assert on_the_day["deadline"] == "2027-03-11T00:00:00+06:00"
    assert views.referral(CONFIRMING, NAMES, status, "2027-03-11")["actions"] == ["cancel"]
    extended = {**CONFIRMING, "extended": True, "deadline": "2027-04-09T18:00:00Z"}
    assert views.referral(extended, NAMES, referrals.standing(KG, extended), "2027-03-10")["actions"] == ["cancel"]
    ended = views.referral({"id": "r2", "status": "ended", "state": "expired"}, NAMES)
    assert ended["actions"] == []


def test_a_referrals_standing_is_read_from_the_queues_record_in_the_countrys_time():
    assert referrals.standing(KG, CONFIRMING) == {
        "state": "awaiting_confirmation", "window": "confirmation", "deadline": "2027-03-11T00:00:00+06:00",
        "extended": False, "extension_day": "2027-03-10"}
    # A window ending on Monday 00:00: its last working day is the Friday.
    monday = referrals.standing(KG, {**CONFIRMING, "deadline": "2027-03-14T18:00:00Z"})
    assert monday["deadline"] == "2027-03-15T00:00:00+06:00" and monday["extension_day"] == "2027-03-12"
    # No extension once extended, nor outside the confirmation window.
    assert referrals.standing(KG, {**CONFIRMING, "extended": True})["extension_day"] is None
    enrolling = referrals.standing(KG, {**CONFIRMING, "state": "awaiting_enrolment"})
    assert enrolling["window"] == "enrolment" and enrolling["extension_day"] is None
    assert referrals.standing(KG, {**CONFIRMING, "state": "enrolled"})["window"] is None
    # Kazakhstan's calendar and offset, when the gateway serves Kazakhstan.
    kz = referrals.standing(KZ, CONFIRMING)
    assert kz["deadline"] == CONFIRMING_END.astimezone(KZ.tz).isoformat()
    assert kz["extension_day"] == KZ.last_working_day_before(CONFIRMING_END).isoformat()


def test_chart_puts_the_best_position_at_the_top():
    chart = position_chart([{"at": "2026-01-01T00:00:00+00:00", "position": 9},
                            {"at": "2026-03-01T00:00:00+00:00", "position": 3}])
    first, last = chart["dots"]
    assert last["y"] < first["y"] and first["x"] < last["x"]
    assert position_chart([]) is None


def test_nearest_kindergartens_are_sorted_and_limited_to_the_area():
    home = (42.8746, 74.6030)
    kgs = [{"id": "far", "lat": 40.53, "lon": 72.79}, {"id": "b", "lat": 42.88, "lon": 74.61},
           {"id": "a", "lat": 42.875, "lon": 74.604}, {"id": "nowhere"}]
    assert [k["id"] for k in nearest(kgs, *home)] == ["a", "b"]
    assert 290_000 < distance_m(*home, 40.53, 72.79) < 320_000
