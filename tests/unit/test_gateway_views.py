"""The cabinet reads the queue service's own shapes (its application view,
position explanations and live referral) as well as the list shapes."""
from __future__ import annotations

from services.gateway import views
from services.gateway.charts import position_chart
from services.gateway.geo import distance_m, nearest

NAMES = {"kg-1": "Kindergarten No 1"}


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


def test_extend_is_offered_only_on_the_extension_day_the_workflow_names():
    live = {"id": 8, "kindergarten": "kg-1", "status": "live", "state": "awaiting_confirmation"}
    status = {"state": "awaiting_confirmation", "window": "confirmation", "extension_day": "2027-03-08",
              "extended": False, "deadline": "2027-03-09T00:00:00+06:00"}
    assert views.referral(live, NAMES, status, "2027-03-07")["actions"] == ["cancel"]
    on_the_day = views.referral(live, NAMES, status, "2027-03-08")
    assert on_the_day["actions"] == ["cancel", "extend"] and on_the_day["stage"] == "confirmation"
    assert views.referral(live, NAMES, {**status, "extended": True}, "2027-03-08")["actions"] == ["cancel"]
    assert views.referral(live, NAMES, None, "2027-03-08")["actions"] == ["cancel"]   # no answer: no extension
    ended = views.referral({"id": "r2", "status": "ended", "state": "expired"}, NAMES)
    assert ended["actions"] == []


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
