"""The referral's rules (workflows/rules.py), without Temporal: windows,
extension, certificate validity, last day, stop-list, and which act is
allowed in which state."""
from __future__ import annotations

import ast
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kezek import calendar as kcal
from workflows import rules
from workflows.rules import DEFAULTS, Act, ReferralState as S, Standing

KG = kcal.calendar("KG")
KZ = kcal.calendar("KZ")
# Monday 1 March 2027, 10:00 in Bishkek; 8 March (Women's Day) and 9 March
# (Eid al-Fitr, estimated) are days off: the fifth working day is Wed 10 March.
ISSUED = datetime(2027, 3, 1, 10, 0, tzinfo=KG.tz)
FIRST_END = datetime(2027, 3, 11, 0, 0, tzinfo=KG.tz)


def standing(state=S.AWAITING_CONFIRMATION, **kw) -> Standing:
    base = dict(state=state, category="extraordinary", needs_confirmation=True, issued_at=ISSUED,
                deadline=FIRST_END, extension_day=date(2027, 3, 10))
    return Standing(**{**base, **kw})


# ------------------------------------------------------------------ windows


def test_privileged_referral_opens_with_the_confirmation_window_of_five_working_days():
    assert rules.first_state(True) is S.AWAITING_CONFIRMATION
    assert rules.first_deadline(KG, ISSUED, True, DEFAULTS) == FIRST_END


def test_general_referral_opens_with_the_enrolment_window():
    assert rules.first_state(False) is S.AWAITING_ENROLMENT
    policy = rules.Windows(confirm_working_days=1, enrol_working_days=5)
    assert rules.first_deadline(KG, ISSUED, False, policy) == FIRST_END


def test_enrolment_window_counts_from_the_confirmation_not_from_the_issue():
    confirmed = datetime(2027, 3, 10, 16, 0, tzinfo=KG.tz)   # Wednesday
    # Thu 11, Fri 12, Mon 15, Tue 16, Wed 17.
    assert rules.enrolment_deadline(KG, confirmed, DEFAULTS) == datetime(2027, 3, 18, tzinfo=KG.tz)


def test_window_length_follows_the_policy():
    short = rules.Windows(confirm_working_days=1)
    assert rules.first_deadline(KG, ISSUED, True, short) == datetime(2027, 3, 3, tzinfo=KG.tz)


def test_extension_day_is_the_last_working_day_of_the_confirmation_window():
    assert rules.extension_day(KG, ISSUED, DEFAULTS) == date(2027, 3, 10)


def test_extension_day_of_a_moved_window_is_its_last_working_day_before_the_end():
    # A window recorded by the old portal to end on Monday 15 March 00:00:
    # its last working day is Friday 12 March.
    assert rules.extension_day_before(KG, datetime(2027, 3, 15, tzinfo=KG.tz)) == date(2027, 3, 12)


@settings(max_examples=400, deadline=None)
@given(moment=st.datetimes(min_value=datetime(2025, 12, 1), max_value=datetime(2028, 12, 31)),
       country=st.sampled_from(["KG", "KZ"]), days=st.integers(1, 15))
def test_a_new_referrals_extension_day_is_the_last_working_day_before_its_deadline(moment, country, days):
    """What the workflow names for a referral it issued (extension_day, from
    the moment of issue) is what anyone holding only the window's end reckons
    (extension_day_before, as the cabinet does from the queue's record)."""
    cal = kcal.calendar(country)
    issued = moment.replace(tzinfo=cal.tz)
    policy = rules.Windows(confirm_working_days=days)
    deadline = rules.first_deadline(cal, issued, True, policy)
    assert rules.extension_day_before(cal, deadline) == rules.extension_day(cal, issued, policy)


def test_the_two_extension_days_agree_for_every_hour_of_issue_through_the_holidays():
    for cal in (KG, KZ):
        moment = datetime(2026, 12, 20, tzinfo=cal.tz)
        while moment < datetime(2027, 5, 15, tzinfo=cal.tz):    # New Year, Women's Day, Nauryz, Eid, 1 and 9 May
            deadline = rules.first_deadline(cal, moment, True, DEFAULTS)
            assert rules.extension_day_before(cal, deadline) == rules.extension_day(cal, moment, DEFAULTS), moment
            moment += timedelta(hours=5)


def test_extension_adds_thirty_calendar_days_to_the_same_local_time():
    assert rules.extended_deadline(FIRST_END, DEFAULTS) == datetime(2027, 4, 10, tzinfo=KG.tz)


def test_stoplist_ends_ten_calendar_days_after_the_window_ended():
    assert rules.stoplist_end(FIRST_END, DEFAULTS) == datetime(2027, 3, 21, tzinfo=KG.tz)
    assert rules.stoplist_end(FIRST_END, rules.Windows(stoplist_days=14)) == datetime(2027, 3, 25, tzinfo=KG.tz)


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)), st.integers(0, 30))
def test_window_ends_at_midnight_after_a_working_day(day, n):
    opened = datetime.combine(day, datetime.min.time(), tzinfo=KG.tz) + timedelta(hours=15)
    end = rules.first_deadline(KG, opened, True, rules.Windows(confirm_working_days=n))
    assert end.time() == datetime.min.time() and end.date() > day
    last = rules.last_day(end)
    assert n == 0 or KG.is_working_day(last)
    assert KG.working_days_between(day + timedelta(days=1), last) == n


# ------------------------------------------------------------- certificates


def test_certificate_issued_on_d_is_in_date_up_to_and_including_d_plus_ten():
    issued = date(2027, 2, 21)
    assert rules.certificate_valid_until(issued) == date(2027, 3, 3)
    assert rules.certificate_in_date(issued, date(2027, 3, 3))
    assert not rules.certificate_in_date(issued, date(2027, 3, 4))
    assert not rules.certificate_in_date(issued, date(2027, 2, 20))   # not yet issued


def test_confirming_with_an_out_of_date_certificate_requests_a_fresh_one():
    assert rules.certificate_out_of_date(date(2027, 2, 21), date(2027, 3, 3), 10) is None
    assert rules.certificate_out_of_date(date(2027, 2, 21), date(2027, 3, 4), 10) == (
        "the certificate issued on 2027-02-21 was valid up to and including 2027-03-03; a fresh one is needed")


@given(st.dates(), st.integers(0, 366), st.integers(-400, 400))
def test_certificate_validity_agrees_with_its_last_day(issued, days, offset):
    try:
        today = issued + timedelta(days=offset)
    except OverflowError:
        return
    until = rules.certificate_valid_until(issued, days) if issued <= date.max - timedelta(days=days) else None
    if until is None:
        return
    assert rules.certificate_in_date(issued, today, days) == (issued <= today <= until)
    assert (rules.certificate_out_of_date(issued, today, days) is None) == (today <= until)


# ------------------------------------------------------------- what a parent sees


def test_last_day_of_a_window_ending_at_midnight_is_the_day_before():
    assert rules.last_day(FIRST_END) == date(2027, 3, 10)
    assert rules.last_day(datetime(2027, 3, 10, 18, 30, tzinfo=KG.tz)) == date(2027, 3, 10)


def test_days_left_counts_calendar_days_after_today():
    assert rules.days_left(FIRST_END, date(2027, 3, 10)) == 0
    assert rules.days_left(FIRST_END, date(2027, 3, 7)) == 3
    assert rules.days_left(FIRST_END, date(2027, 3, 11)) == -1


def test_working_days_left_skip_weekends_and_holidays_and_today():
    # From Friday 5 March: (6-7 weekend, 8-9 days off) Wed 10 is the only one left.
    assert rules.working_days_left(KG, FIRST_END, date(2027, 3, 5)) == 1
    assert rules.working_days_left(KG, FIRST_END, date(2027, 3, 10)) == 0
    assert rules.working_days_left(KG, FIRST_END, date(2027, 3, 1)) == 5


def test_reminder_is_at_nine_on_the_morning_two_working_days_before_the_end():
    # Two working days left: Fri 5 March and Wed 10 March.
    assert rules.reminder_at(KG, FIRST_END, 2) == datetime(2027, 3, 5, 9, 0, tzinfo=KG.tz)
    assert rules.reminder_at(KG, FIRST_END, 1) == datetime(2027, 3, 10, 9, 0, tzinfo=KG.tz)
    assert rules.reminder_at(KG, FIRST_END, 0) is None


# ----------------------------------------------------------- the state table


def test_every_transition_leaves_a_live_state_or_the_stoplist():
    for (state, act), to in rules.TRANSITIONS.items():
        assert state in rules.LIVE_STATES or (state, act, to) == (S.PAUSED, Act.LIFT_STOPLIST, S.RESUMED)


def test_closed_states_allow_no_act():
    for state in rules.CLOSED_STATES - {S.PAUSED}:
        for act in Act:
            with pytest.raises(ValueError):
                rules.after(state, act)


def test_a_person_may_act_only_where_the_table_allows():
    people = [Act.CONFIRM, Act.REJECT, Act.EXTEND, Act.CANCEL, Act.ENROL]
    on_extension_day = datetime(2027, 3, 10, 12, 0, tzinfo=KG.tz)
    for state in S:
        for act in people:
            r = standing(state, closed_at=FIRST_END if state in rules.CLOSED_STATES else None)
            allowed = rules.refusal(act, r, on_extension_day, date(2027, 3, 5)) is None
            assert allowed == ((state, act) in rules.TRANSITIONS), (state, act)


def test_the_clock_acts_are_not_a_persons():
    assert rules.refusal(Act.EXPIRE, standing(), ISSUED + timedelta(hours=1)) is not None


def test_extension_refused_before_the_last_working_day():
    why = rules.refusal(Act.EXTEND, standing(), datetime(2027, 3, 5, 12, 0, tzinfo=KG.tz))
    assert why == ("an extension may be asked for only on the last working day of the confirmation window, "
                   "2027-03-10, not on 2027-03-05")


def test_extension_refused_a_second_time():
    why = rules.refusal(Act.EXTEND, standing(extended=True), datetime(2027, 3, 10, 9, tzinfo=KG.tz))
    assert why == "the referral has already been extended once"


def test_extension_refused_in_the_enrolment_window_of_a_general_referral():
    r = standing(S.AWAITING_ENROLMENT, category="general", needs_confirmation=False, extension_day=None)
    assert rules.refusal(Act.EXTEND, r, ISSUED + timedelta(hours=1)) == (
        "only the confirmation window can be extended, and category 'general' has no confirmation window")


def test_enrolment_refused_before_the_privilege_is_confirmed():
    assert rules.refusal(Act.ENROL, standing(), ISSUED + timedelta(hours=1)).startswith(
        "enrolment before the privilege is confirmed is refused")


def test_general_category_has_no_privilege_to_reject():
    r = standing(S.AWAITING_ENROLMENT, category="general", needs_confirmation=False)
    assert rules.refusal(Act.REJECT, r, ISSUED + timedelta(hours=1)) == "category 'general' has no privilege to reject"


def test_privilege_found_false_may_be_rejected_after_confirmation():
    assert rules.refusal(Act.REJECT, standing(S.AWAITING_ENROLMENT), ISSUED + timedelta(hours=1)) is None


def test_certificate_issued_in_the_future_is_refused():
    why = rules.refusal(Act.CONFIRM, standing(), ISSUED + timedelta(hours=1), date(2027, 3, 2))
    assert why == "the certificate's issue date 2027-03-02 is in the future"


def test_no_act_after_the_window_ended():
    why = rules.refusal(Act.CANCEL, standing(), FIRST_END)
    assert why == "cannot cancel the referral: the window ended at 2027-03-11T00:00:00"


def test_no_act_before_the_referral_was_issued():
    assert rules.refusal(Act.CANCEL, standing(), ISSUED - timedelta(minutes=1)) == (
        "acted_at 2027-03-01T09:59:00 is before the referral was issued")


def test_an_expired_referral_names_the_stoplist_end_in_its_refusal():
    r = standing(S.PAUSED, deadline=None, closed_at=FIRST_END, stoplist_until=datetime(2027, 3, 21, tzinfo=KG.tz))
    assert rules.closed_refusal(Act.ENROL, r) == (
        "cannot enrol the child: the referral expired at 2027-03-11T00:00:00; the child is on the stop-list "
        "until 2027-03-21T00:00:00")


# ---------------------------------------------------------------- the facts


def test_each_fact_names_the_state_it_leaves():
    assert rules.state_after_fact("referral.expired.v1") is S.PAUSED
    assert rules.state_after_fact("referral.privilege_confirmed") is S.AWAITING_ENROLMENT
    assert rules.state_after_fact("referral.extended.v1") is S.AWAITING_CONFIRMATION
    assert rules.state_after_fact("referral.issued.v1") is None


def test_the_facts_agree_with_the_table():
    by_act = {Act.CONFIRM: "referral.privilege_confirmed", Act.REJECT: "referral.privilege_rejected",
              Act.CANCEL: "referral.cancelled", Act.ENROL: "referral.enrolled", Act.EXPIRE: "referral.expired",
              Act.EXTEND: "referral.extended"}
    for (state, act), to in rules.TRANSITIONS.items():
        if act in by_act:
            assert rules.state_after_fact(by_act[act]) is to
    for outcome, act in (("expired", Act.EXPIRE), ("cancelled", Act.CANCEL), ("privilege_rejected", Act.REJECT)):
        assert rules.STATE_AFTER_RETURN[outcome] is rules.after(S.AWAITING_ENROLMENT, act)


# ------------------------------------------------------------------- purity


def test_rules_module_imports_only_the_standard_library_and_the_core():
    tree = ast.parse(Path(rules.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "enum", "typing", "kezek"}
