"""The queue's rules (DOMAIN.md section 3), one test per rule."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest

from services.queue.domain import (
    DEFAULT_POLICY, Applicant, Category, DomainError, PlaceKey, Policy, UnknownCategory, allocate,
    allocate_ranked, birth_date_from_pin, explain_position, explain_positions, latest_eligible_birth_date,
    mask_name, position, rank_key, reached_min_age, replay,
)

P = DEFAULT_POLICY
ON = date(2027, 3, 1)


def child(cid, *, cat="general", qd="2026-01-10T10:00", born="2024-01-15", lang="ru", prefs=("sun",)):
    return Applicant(cid, date.fromisoformat(born), cat, datetime.fromisoformat(qd), lang, tuple(prefs))


def open_places(*items):
    """("sun", 2024, "ru", n) -> {(PlaceKey, None): n}"""
    return {(PlaceKey(kg, cohort, lang), None): n for kg, cohort, lang, n in items}


# ----------------------------------------------------------------- ranking

def test_extraordinary_right_ranks_before_privilege_before_general():
    g = child("g", cat="general", qd="2020-01-01T00:00")
    p = child("p", cat="privileged", qd="2026-01-01T00:00")
    e = child("e", cat="extraordinary", qd="2026-06-01T00:00")
    assert sorted([g, p, e], key=lambda a: rank_key(a, P)) == [e, p, g]


def test_within_a_category_the_earlier_queue_date_ranks_first():
    late = child("a", qd="2026-02-01T10:00")
    early = child("b", qd="2026-01-01T10:00")
    assert rank_key(early, P) < rank_key(late, P)


def test_same_queue_date_is_broken_by_child_id_stably():
    a = child("a", qd="2026-01-01T10:00")
    b = child("b", qd="2026-01-01T10:00")
    assert rank_key(a, P) < rank_key(b, P)
    assert allocate([b, a], open_places(("sun", 2024, "ru", 1)), ON, P)[0].child_id == "a"


def test_configured_privilege_category_ranks_by_its_rank():
    policy = P.replace(categories=P.categories + (Category("disabled_parent", 5, False),))
    d = child("d", cat="disabled_parent", qd="2026-09-01T00:00")
    p = child("p", cat="privileged", qd="2020-01-01T00:00")
    assert rank_key(d, policy) < rank_key(p, policy)


def test_unknown_category_is_refused_naming_it():
    with pytest.raises(UnknownCategory, match="veteran"):
        rank_key(child("x", cat="veteran"), P)


def test_rejected_privilege_ranks_in_general_queue_by_original_queue_date():
    # The service keeps the queue date and changes only the category.
    original = child("c", cat="extraordinary", qd="2025-05-05T09:00")
    rejected = Applicant(original.child_id, original.birth_date, "general", original.queue_date,
                         original.language, original.preferences)
    newer = child("n", qd="2025-06-01T09:00")
    older = child("o", qd="2025-01-01T09:00")
    ranked = sorted([newer, rejected, older], key=lambda a: rank_key(a, P))
    assert [a.child_id for a in ranked] == ["o", "c", "n"]


# ------------------------------------------------------------------- age

def test_minimum_age_is_two_full_years_on_the_day():
    assert not reached_min_age(date(2025, 3, 2), date(2027, 3, 1), P)
    assert reached_min_age(date(2025, 3, 1), date(2027, 3, 1), P)
    assert reached_min_age(date(2025, 2, 28), date(2027, 3, 1), P)


def test_child_born_on_29_february_turns_two_on_28_february():
    assert not reached_min_age(date(2024, 2, 29), date(2026, 2, 27), P)
    assert reached_min_age(date(2024, 2, 29), date(2026, 2, 28), P)


def test_eligible_birth_date_bound_agrees_with_the_age_rule():
    for on in (date(2026, 2, 28), date(2028, 2, 29), date(2027, 3, 1), date(2027, 12, 31)):
        bound = latest_eligible_birth_date(on, P)
        assert reached_min_age(bound, on, P)
        assert not reached_min_age(date.fromordinal(bound.toordinal() + 1), on, P)


def test_child_under_two_is_skipped_and_the_next_child_gets_the_place():
    young = child("young", qd="2025-01-01T00:00", born="2025-03-02")
    older = child("older", qd="2026-01-01T00:00", born="2025-01-01")
    got = allocate([young, older], open_places(("sun", 2025, "ru", 1)), ON, P)
    assert [a.child_id for a in got] == ["older"]


def test_minimum_age_is_policy():
    three = P.replace(min_age_years=3)
    assert not reached_min_age(date(2024, 3, 1), date(2027, 2, 28), three)
    assert reached_min_age(date(2024, 3, 1), date(2027, 3, 1), three)


# ------------------------------------------------------------ allocation

def test_highest_ranked_child_gets_the_place():
    a = child("a", qd="2026-01-02T00:00")
    b = child("b", qd="2026-01-01T00:00")
    got = allocate([a, b], open_places(("sun", 2024, "ru", 1)), ON, P)
    assert [(x.child_id, x.place) for x in got] == [("b", PlaceKey("sun", 2024, "ru"))]


def test_child_gets_its_best_preference_with_a_free_place():
    c = child("c", prefs=("moon", "sun", "star"))
    got = allocate([c], open_places(("sun", 2024, "ru", 1), ("star", 2024, "ru", 1)), ON, P)
    assert got[0].place.kindergarten == "sun" and got[0].preference_index == 1


def test_higher_ranked_child_takes_its_first_choice_even_if_lower_one_wanted_only_that():
    top = child("top", qd="2026-01-01T00:00", prefs=("sun", "moon"))
    low = child("low", qd="2026-02-01T00:00", prefs=("sun",))
    got = allocate([top, low], open_places(("sun", 2024, "ru", 1), ("moon", 2024, "ru", 1)), ON, P)
    assert [(a.child_id, a.place.kindergarten) for a in got] == [("top", "sun")]


def test_place_goes_only_to_a_child_of_its_cohort():
    other_year = child("y23", born="2023-05-05", qd="2020-01-01T00:00")
    mine = child("y24", born="2024-01-15")
    got = allocate([other_year, mine], open_places(("sun", 2024, "ru", 1)), ON, P)
    assert [a.child_id for a in got] == ["y24"]


def test_place_goes_only_to_a_child_of_its_language():
    ky = child("ky", lang="ky", qd="2020-01-01T00:00")
    ru = child("ru", lang="ru")
    got = allocate([ky, ru], open_places(("sun", 2024, "ru", 1)), ON, P)
    assert [a.child_id for a in got] == ["ru"]


def test_place_reserved_for_a_category_goes_only_to_that_category():
    g = child("g", cat="general", qd="2020-01-01T00:00")
    free = {(PlaceKey("sun", 2024, "ru"), "privileged"): 1}
    assert allocate([g], free, ON, P) == []
    p = child("p", cat="privileged", qd="2026-06-01T00:00")
    assert [a.child_id for a in allocate([g, p], free, ON, P)] == ["p"]


def test_child_takes_a_place_reserved_for_its_category_before_an_open_one():
    p = child("p", cat="privileged")
    key = PlaceKey("sun", 2024, "ru")
    got = allocate([p], {(key, None): 1, (key, "privileged"): 1}, ON, P)
    assert got[0].for_category == "privileged"


def test_preference_order_beats_reserved_pools():
    p = child("p", cat="privileged", prefs=("sun", "moon"))
    free = {(PlaceKey("sun", 2024, "ru"), None): 1, (PlaceKey("moon", 2024, "ru"), "privileged"): 1}
    got = allocate([p], free, ON, P)
    assert got[0].place.kindergarten == "sun" and got[0].for_category is None


def test_allocation_is_deterministic_whatever_the_input_order():
    kids = [child(f"c{i}", qd=f"2026-01-{1 + i % 5:02d}T10:00", prefs=("sun", "moon")[: 1 + i % 2])
            for i in range(12)]
    free = open_places(("sun", 2024, "ru", 3), ("moon", 2024, "ru", 2))
    first = allocate(kids, free, ON, P)
    assert allocate(list(reversed(kids)), free, ON, P) == first


def test_allocation_does_not_change_the_free_places_given():
    free = open_places(("sun", 2024, "ru", 1))
    allocate([child("a")], free, ON, P)
    assert free == open_places(("sun", 2024, "ru", 1))


def test_each_allocation_records_the_inputs_that_decided_it():
    c = child("c", prefs=("moon", "sun"))
    got = allocate([c], open_places(("sun", 2024, "ru", 2)), ON, P)[0]
    assert got.inputs["rank"] == [100, "2026-01-10T10:00:00", "c"]
    assert got.inputs["free_seen"] == [{"kindergarten": "moon", "reserved": 0, "open": 0},
                                       {"kindergarten": "sun", "reserved": 0, "open": 2}]
    assert got.inputs["on"] == "2027-03-01" and got.inputs["taken_from"] == "open"


def test_a_child_listed_twice_is_refused():
    with pytest.raises(DomainError, match="twice"):
        allocate([child("a"), child("a", qd="2026-03-01T00:00")], open_places(("sun", 2024, "ru", 5)), ON, P)


def test_ranked_stream_out_of_order_is_refused():
    late, early = child("a", qd="2026-02-01T00:00"), child("b", qd="2026-01-01T00:00")
    with pytest.raises(DomainError, match="rank order"):
        list(allocate_ranked([late, early], open_places(("sun", 2024, "ru", 5)), ON, P))


def test_ranked_stream_stops_once_every_place_is_taken():
    def stream():
        yield child("a", qd="2026-01-01T00:00")
        raise AssertionError("read past the last free place")
    assert len(list(allocate_ranked(stream(), open_places(("sun", 2024, "ru", 1)), ON, P))) == 1


def test_replay_of_recorded_inputs_matches_and_detects_a_tampered_record():
    kids = [child(f"c{i}", qd=f"2026-01-{1 + i:02d}T10:00") for i in range(5)]
    free = open_places(("sun", 2024, "ru", 2))
    recorded = allocate(kids, free, ON, P)
    assert replay(recorded, kids, free, ON, P) == []
    assert replay(list(reversed(recorded)), kids, free, ON, P) == []
    tampered = [recorded[0], replace(recorded[1], child_id="c4")]
    assert replay(tampered, kids, free, ON, P) == [
        "child c1: recorded None, recomputed ('sun/2024/ru', None, 0)",
        "child c4: recorded ('sun/2024/ru', None, 0), recomputed None"]


# -------------------------------------------------------------- positions

def test_position_counts_children_of_the_cohort_who_list_the_first_preference():
    me = child("me", qd="2026-03-01T00:00", prefs=("sun", "moon"))
    ahead = child("a", qd="2026-01-01T00:00", prefs=("moon", "sun"))
    behind = child("b", qd="2026-04-01T00:00", prefs=("sun",))
    other_cohort = child("o", born="2023-01-01", qd="2020-01-01T00:00", prefs=("sun",))
    not_wanting = child("n", qd="2020-01-01T00:00", prefs=("star",))
    assert position("me", [me, ahead, behind, other_cohort, not_wanting], P) == 2
    assert position("b", [me, ahead, behind], P) == 3


def test_position_is_none_without_a_preference_left_or_outside_the_queue():
    assert position("me", [child("me", prefs=())], P) is None
    assert position("ghost", [child("me")], P) is None


def test_position_explanation_says_how_many_are_ahead_and_why():
    me = child("me", cat="general", qd="2026-03-01T10:00")
    kids = [
        me,
        child("e", cat="extraordinary", qd="2026-09-01T00:00"),
        child("p1", cat="privileged", qd="2026-09-01T00:00"),
        child("p2", cat="privileged", qd="2026-10-01T00:00"),
        child("g1", qd="2026-01-01T00:00"),
        child("a", qd="2026-03-01T10:00"),   # same moment, earlier id
        child("z", qd="2026-03-01T10:00"),   # same moment, later id: behind
    ]
    x = explain_position("me", kids, P)
    assert x.position == 6 and x.ahead == 5
    assert x.ahead_by_category == {"extraordinary": 1, "privileged": 2}
    assert x.ahead_same_category_earlier == 1 and x.ahead_same_moment == 1
    assert "2 in category privileged" in x.text() and "earlier queue date" in x.text()


def test_positions_are_given_for_every_preference():
    me = child("me", qd="2026-03-01T00:00", prefs=("sun", "moon"))
    kids = [me, child("a", qd="2026-01-01T00:00", prefs=("moon",))]
    assert [(x.kindergarten, x.position) for x in explain_positions("me", kids, P)] == [("sun", 1), ("moon", 2)]


# ----------------------------------------------------------------- policy

def test_policy_overrides_are_applied_and_unknown_ones_refused():
    assert P.replace(stoplist_days=14).stoplist_days == 14
    with pytest.raises(DomainError, match="policy.stoplist_dayz"):
        P.replace(stoplist_dayz=3)


def test_policy_refuses_negative_deadlines_naming_the_field():
    with pytest.raises(DomainError, match="policy.enrol_working_days"):
        P.replace(enrol_working_days=-1)


def test_policy_requires_the_general_category_last():
    with pytest.raises(DomainError, match="general"):
        Policy(categories=(Category("extraordinary", 0, True),))
    with pytest.raises(DomainError, match="after 'general'"):
        Policy(categories=(Category("general", 10), Category("late", 20)))


def test_policy_round_trips_through_a_dict():
    policy = P.replace(categories=P.categories + (Category("large_family", 20),), stoplist_days=7)
    assert Policy.from_dict(policy.to_dict()) == policy


def test_only_extraordinary_right_needs_confirmation_by_default():
    assert [c.code for c in P.categories if c.needs_confirmation] == ["extraordinary"]


# ------------------------------------------------------------ small rules

def test_public_queue_masks_names_to_initials():
    assert mask_name("Asanov", "Aibek", "Talantovich") == "A***** A. T."
    assert mask_name("Li", "Dana") == "L* D."


def test_kyrgyz_pin_gives_the_birth_date():
    assert birth_date_from_pin("21506202400011") == date(2024, 6, 15)


@pytest.mark.parametrize("pin", ["31506202400011", "2150620240001", "23102202400011", "2150620240001x"])
def test_malformed_or_impossible_kyrgyz_pin_is_refused(pin):
    with pytest.raises(DomainError, match="pin"):
        birth_date_from_pin(pin)


def test_kazakh_iin_gives_the_birth_date_and_checks_its_digit():
    iin = "240615500017"
    digits = [int(c) for c in iin[:11]]
    check = sum(d * w for d, w in zip(digits, range(1, 12))) % 11
    iin = iin[:11] + str(check if check != 10 else 0)
    if check != 10:
        assert birth_date_from_pin(iin, "KZ") == date(2024, 6, 15)
        bad = iin[:11] + str((int(iin[11]) + 1) % 10)
        with pytest.raises(DomainError, match="check digit"):
            birth_date_from_pin(bad, "KZ")
