"""The rules of the Department's verification work (services/verification/domain.py)."""
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.verification import domain as d

TODAY = date(2027, 3, 10)


def codes(exc: d.Refused) -> set[tuple[str, str]]:
    return {(e.field, e.code) for e in exc.errors}


# ------------------------------------------------------------ certificates


def test_certificate_issued_on_day_d_is_in_date_up_to_and_including_d_plus_10():
    issued = date(2027, 3, 1)
    assert d.certificate_valid_until(issued) == date(2027, 3, 11)
    assert d.certificate_in_date(issued, date(2027, 3, 1))
    assert d.certificate_in_date(issued, date(2027, 3, 11))
    assert not d.certificate_in_date(issued, date(2027, 3, 12))


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)), st.integers(0, 40))
def test_certificate_in_date_exactly_on_the_eleven_days_from_its_issue(issued, offset):
    assert d.certificate_in_date(issued, issued + timedelta(days=offset)) == (offset <= 10)


def test_certificate_issued_in_the_future_is_never_in_date():
    assert not d.certificate_in_date(TODAY + timedelta(days=1), TODAY)


def test_certificate_validity_follows_the_policy_days():
    assert d.certificate_in_date(date(2027, 3, 1), date(2027, 3, 15), valid_days=14)
    assert not d.certificate_in_date(date(2027, 3, 1), date(2027, 3, 16), valid_days=14)


def test_certificate_needs_organisation_number_and_issue_date_each_named():
    with pytest.raises(d.Refused) as e:
        d.validate_certificate(" ", "", "", TODAY)
    assert codes(e.value) == {("organisation", "required"), ("number", "required"), ("issued_on", "required")}


def test_certificate_issue_date_in_the_future_is_refused():
    with pytest.raises(d.Refused) as e:
        d.validate_certificate("Military unit 1234", "17/3", "2027-03-11", TODAY)
    assert codes(e.value) == {("issued_on", "date_in_future")}


def test_certificate_issue_date_must_be_a_date():
    with pytest.raises(d.Refused) as e:
        d.validate_certificate("Unit", "1", "31.02.2027", TODAY)
    assert codes(e.value) == {("issued_on", "date_format")}


def test_certificate_accepts_iso_and_dotted_dates_and_normalises_spaces():
    c = d.validate_certificate("  Military   unit 1234 ", " 17/3 ", "01.03.2027", TODAY)
    assert c == d.CertificateData("Military unit 1234", "17/3", date(2027, 3, 1))
    assert d.validate_certificate("U", "1", "2027-03-01", TODAY).issued_on == date(2027, 3, 1)


# -------------------------------------------------------------------- scans


def test_scan_type_is_recognised_by_its_first_bytes():
    assert d.check_scan(b"%PDF-1.7\n...").kind == "pdf"
    assert d.check_scan(b"\xff\xd8\xff\xe0rest").content_type == "image/jpeg"
    assert d.check_scan(b"\x89PNG\r\n\x1a\nrest").kind == "png"


def test_scan_of_another_type_is_refused_whatever_its_name():
    for data in (b"MZ\x90\x00 an executable", b"<html><script>", b"GIF89a"):
        with pytest.raises(d.Refused) as e:
            d.check_scan(data)
        assert codes(e.value) == {("scan", "scan_type")}


def test_scan_larger_than_the_limit_is_refused_with_the_limit_in_megabytes():
    with pytest.raises(d.Refused) as e:
        d.check_scan(b"%PDF-" + b"0" * 100, max_bytes=100)
    assert codes(e.value) == {("scan", "scan_too_large")}
    with pytest.raises(d.Refused) as e:
        d.check_scan(b"%PDF-" + b"0" * d.MAX_SCAN_BYTES)
    assert dict(e.value.errors[0].params) == {"max_mb": "5"}


def test_scan_is_required():
    with pytest.raises(d.Refused) as e:
        d.check_scan(b"")
    assert codes(e.value) == {("scan", "required")}


# --------------------------------------------------------------- the case

IN_DATE = d.Certificate(TODAY - timedelta(days=10))
OUT_OF_DATE = d.Certificate(TODAY - timedelta(days=11))


def test_confirming_needs_a_recorded_certificate():
    with pytest.raises(d.Refused) as e:
        d.check_action(d.Action.CONFIRM, d.OPEN_STATE, None, TODAY)
    assert codes(e.value) == {("certificate", "certificate_missing")}


def test_confirming_with_an_out_of_date_certificate_is_refused_with_its_last_day():
    d.check_action(d.Action.CONFIRM, d.OPEN_STATE, IN_DATE, TODAY)
    with pytest.raises(d.Refused) as e:
        d.check_action(d.Action.CONFIRM, d.OPEN_STATE, OUT_OF_DATE, TODAY)
    assert codes(e.value) == {("certificate", "certificate_out_of_date")}
    assert dict(e.value.errors[0].params)["until"] == "2027-03-09"


def test_fresh_certificate_is_asked_for_only_when_the_recorded_one_is_out_of_date():
    d.check_action(d.Action.REQUEST_CERTIFICATE, d.OPEN_STATE, OUT_OF_DATE, TODAY)
    with pytest.raises(d.Refused) as e:
        d.check_action(d.Action.REQUEST_CERTIFICATE, d.OPEN_STATE, IN_DATE, TODAY)
    assert codes(e.value) == {("certificate", "certificate_in_date")}
    with pytest.raises(d.Refused):
        d.check_action(d.Action.REQUEST_CERTIFICATE, d.OPEN_STATE, None, TODAY)


def test_rejecting_needs_a_reason_but_no_certificate():
    d.check_action(d.Action.REJECT, d.OPEN_STATE, None, TODAY, reason="not an employee of a special body")
    with pytest.raises(d.Refused) as e:
        d.check_action(d.Action.REJECT, d.OPEN_STATE, None, TODAY, reason="  ")
    assert codes(e.value) == {("reason", "required")}
    with pytest.raises(d.Refused) as e:
        d.check_action(d.Action.REJECT, d.OPEN_STATE, None, TODAY, reason="x" * 501)
    assert codes(e.value) == {("reason", "too_long")}


def test_no_act_on_a_referral_whose_confirmation_window_is_over():
    for action in d.Action:
        with pytest.raises(d.Refused) as e:
            d.check_action(action, "awaiting_enrolment", IN_DATE, TODAY, reason="r")
        assert codes(e.value) == {("case", "case_closed")}


# ------------------------------------------------------------ roles, scope


def test_a_caseworker_sees_only_their_own_district():
    assert d.sees_district("caseworker", "41711210000000", "41711210000000")
    assert not d.sees_district("caseworker", "41711210000000", "41711220000000")
    assert not d.sees_district("caseworker", "41711210000000", None)
    assert not d.sees_district("supervisor", "", "")


def test_an_administrator_sees_every_district_but_decides_nothing():
    assert d.sees_district("admin", "", "41711220000000")
    assert not d.can("admin", d.Permission.CASE_ACT)
    assert not d.can("admin", d.Permission.VOUCHER_DECIDE)
    assert d.can("admin", d.Permission.AUDIT_SEARCH)


def test_only_supervisors_resolve_abuse_and_search_the_audit_log_of_a_district():
    assert d.can("supervisor", d.Permission.ABUSE_RESOLVE)
    assert not d.can("caseworker", d.Permission.ABUSE_RESOLVE)
    assert not d.can("caseworker", d.Permission.AUDIT_SEARCH)
    assert not d.can("commission", d.Permission.CASE_VIEW)
    assert d.can("commission", d.Permission.VOUCHER_DECIDE)
    assert not d.can("caseworker", d.Permission.VOUCHER_VIEW)


def test_staff_account_needs_a_district_unless_administrator_and_a_long_password():
    with pytest.raises(d.Refused) as e:
        d.validate_staff("Bad Login", "", "clerk", "", "short")
    assert codes(e.value) == {("login", "login_format"), ("full_name", "required"), ("role", "choice"),
                              ("password", "password_too_short")}
    with pytest.raises(d.Refused) as e:
        d.validate_staff("aida", "Aida", "caseworker", "", "long enough pw")
    assert codes(e.value) == {("district", "required")}
    d.validate_staff("root", "Admin", "admin", "", "long enough pw")


def test_sign_in_waits_grow_after_the_free_wrong_passwords_and_never_exceed_the_longest():
    assert [d.wait_after(n, 3).total_seconds() for n in range(1, 8)] == [0, 0, 0, 2, 4, 8, 16]
    assert d.wait_after(40, 3) == d.LONGEST_WAIT == d.wait_after(10_000, 3)


def test_a_sign_in_wait_runs_from_the_last_wrong_password_and_then_ends():
    now = datetime(2027, 3, 10, 9, tzinfo=UTC)
    f = d.Failures()
    for _ in range(5):
        f = d.one_more_failure(f, now)
    assert f.count == 5 and d.sign_in_wait(f, 3, now) == timedelta(seconds=4)
    assert d.sign_in_wait(f, 3, now + timedelta(seconds=3)) == timedelta(seconds=1)
    assert d.sign_in_wait(f, 3, now + timedelta(seconds=4)) == timedelta(0)      # no lock: heard again


def test_wrong_passwords_of_a_day_ago_are_forgotten():
    now = datetime(2027, 3, 10, 9, tzinfo=UTC)
    old = d.Failures(50, now - d.FAILURES_FORGOTTEN_AFTER)
    assert d.sign_in_wait(old, 3, now) == timedelta(0)
    assert d.one_more_failure(old, now) == d.Failures(1, now)


# -------------------------------------------------------------------- abuse

T0 = datetime(2027, 1, 10, 9, tzinfo=UTC)


def ref(rid, day, outcome=None, closed_day=None, privileged=True, app="a1"):
    return d.PastReferral(rid, app, privileged, T0 + timedelta(days=day), outcome,
                          T0 + timedelta(days=closed_day) if closed_day is not None else None)


def test_abuse_is_flagged_after_two_privileged_referrals_cancelled_and_a_third_taken():
    history = [ref("r1", 0, "cancelled", 3), ref("r2", 10, "cancelled", 12, app="a2"), ref("r3", 20, app="a2")]
    finding = d.detect_abuse(history, T0 + timedelta(days=20))
    assert finding is not None
    assert finding.cycles == 2
    assert finding.referral_ids == ("r1", "r2", "r3")
    assert finding.applications == 2       # re-registered between the cycles


def test_one_cancellation_is_not_a_pattern():
    history = [ref("r1", 0, "cancelled", 3), ref("r2", 10)]
    assert d.detect_abuse(history, T0 + timedelta(days=10)) is None


def test_cancelling_without_taking_another_referral_is_not_a_cycle():
    history = [ref("r1", 0, "cancelled", 3), ref("r2", 10, "cancelled", 12)]
    assert d.detect_abuse(history, T0 + timedelta(days=12)) is None


def test_general_category_referrals_do_not_count():
    history = [ref("r1", 0, "cancelled", 3, privileged=False), ref("r2", 10, "cancelled", 12, privileged=False),
               ref("r3", 20, privileged=False)]
    assert d.detect_abuse(history, T0 + timedelta(days=20)) is None


def test_cycles_older_than_the_window_do_not_count():
    history = [ref("r1", 0, "cancelled", 3), ref("r2", 10, "cancelled", 12), ref("r3", 400)]
    assert d.detect_abuse(history, T0 + timedelta(days=400)) is None


def test_abuse_thresholds_are_policy_data():
    history = [ref("r1", 0, "cancelled", 3), ref("r2", 10)]
    policy = d.AbusePolicy.from_dict({"min_cycles": 1})
    assert d.detect_abuse(history, T0 + timedelta(days=10), policy).cycles == 1
    expired = [ref("r1", 0, "expired", 5), ref("r2", 10, "expired", 15), ref("r3", 30)]
    assert d.detect_abuse(expired, T0 + timedelta(days=30)) is None
    assert d.detect_abuse(expired, T0 + timedelta(days=30),
                          d.AbusePolicy.from_dict({"outcomes": ["cancelled", "expired"]})) is not None
    with pytest.raises(ValueError):
        d.AbusePolicy.from_dict({"min_cycle": 2})


# ----------------------------------------------------------------- vouchers

REQUIRED = list(d.VoucherPolicy().required_documents)


def test_voucher_approval_needs_a_benefit_type_and_every_required_document():
    with pytest.raises(d.Refused) as e:
        d.validate_voucher_decision("approved", "", REQUIRED[:2], "")
    assert codes(e.value) == {("benefit_type", "required"), ("documents", "documents_missing")}
    ok = d.validate_voucher_decision("approved", "full", REQUIRED, "")
    assert ok.decision is d.VoucherDecisionKind.APPROVED and ok.benefit_type == "full"


def test_voucher_rejection_needs_a_reason_and_carries_no_benefit():
    with pytest.raises(d.Refused) as e:
        d.validate_voucher_decision("rejected", "full", [], " ")
    assert codes(e.value) == {("reason", "required")}
    no = d.validate_voucher_decision("rejected", "full", [], "income above the threshold")
    assert no.benefit_type is None


def test_voucher_decision_members_must_be_commission_members_of_the_district():
    with pytest.raises(d.Refused) as e:
        d.validate_voucher_decision("approved", "full", REQUIRED, "", members=["stranger"], known_members=["m1"])
    assert codes(e.value) == {("members", "choice")}
    assert d.validate_voucher_decision("approved", "partial", REQUIRED, "", ["m1"], ["m1"]).members == ("m1",)


def test_audit_query_refuses_bad_dates_naming_the_field():
    with pytest.raises(d.Refused) as e:
        d.parse_audit_query({"date_from": "yesterday", "date_to": ""})
    assert codes(e.value) == {("date_from", "date_format")}
    with pytest.raises(d.Refused) as e:
        d.parse_audit_query({"date_from": "2027-03-10", "date_to": "2027-03-01"})
    assert codes(e.value) == {("date_to", "date_before_start")}
