"""The notification rules of services/notifications/domain.py."""
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import (
    DEFAULT_RETRY, RULES, URGENT_RETRY, Channel, InvalidPhone, Kind, Outcome, RateLimit, Recipient,
    Status, after_attempt, backoff, choose_locale, expired, may_move, next_sms_slot,
    normalize_phone, plan_messages, reached_top_ten, release_at, schedule, sms_size, sms_text,
)
from workflows.rules import last_day

BISHKEK = ZoneInfo("Asia/Bishkek")  # UTC+6
ALMATY = ZoneInfo("Asia/Almaty")    # UTC+5
PARENT = Recipient(parent_id="p1", email="a@example.kg", phone="+996700123456", locale="ky")


def local(y, mo, d, h, mi=0, tz=BISHKEK):
    return datetime(y, mo, d, h, mi, tzinfo=tz)


# ------------------------------------------------------------ what is sent where

def test_referral_issued_goes_by_sms_email_and_inapp_in_the_parents_language():
    planned = plan_messages("referral.issued.v1", PARENT, datetime.now(UTC))
    assert {(m.channel, m.address) for m in planned} == {
        (Channel.SMS, "+996700123456"), (Channel.EMAIL, "a@example.kg"), (Channel.INAPP, "p1")}
    assert {m.kind for m in planned} == {Kind.REFERRAL_ISSUED}
    assert {m.locale for m in planned} == {"ky"}


def test_email_code_goes_by_email_only_and_is_urgent_and_expires():
    now = datetime(2027, 3, 1, 20, tzinfo=UTC)
    [msg] = plan_messages("registration.email_code_issued.v1", PARENT, now)
    assert msg.channel is Channel.EMAIL and msg.urgent
    assert msg.expires_at == now + timedelta(minutes=10)


def test_a_channel_without_an_address_is_skipped():
    no_phone = Recipient(parent_id="p1", email="a@example.kg", locale="ru")
    assert {m.channel for m in plan_messages("referral.expired.v1", no_phone, datetime.now(UTC))} == {
        Channel.EMAIL, Channel.INAPP}


def test_unknown_event_types_produce_no_message():
    assert plan_messages("place.published.v1", PARENT, datetime.now(UTC)) == []


def test_every_step_a_parent_must_know_about_has_a_rule():
    assert {r.kind for r in RULES.values()} == set(Kind)


def test_deadline_related_steps_reach_the_parent_by_sms():
    sms_kinds = {r.kind for r in RULES.values() if Channel.SMS in r.channels}
    assert {Kind.REFERRAL_ISSUED, Kind.PRIVILEGE_CONFIRMED, Kind.PRIVILEGE_REJECTED,
            Kind.DEADLINE_NEAR, Kind.REFERRAL_EXPIRED} <= sms_kinds


@pytest.mark.parametrize("given_, expected", [
    ("ky", "ky"), ("ru-KG", "ru"), ("KK", "kk"), ("kz", "kk"), ("en_US", "en"),
    ("uz", "ru"), (None, "ru"), ("", "ru")])
def test_unknown_languages_fall_back_to_russian_and_variants_are_normalised(given_, expected):
    assert choose_locale(given_) == expected


def test_top_ten_is_announced_once_when_first_entered():
    assert reached_top_ten(11, 10, already_told=False)
    assert reached_top_ten(None, 3, already_told=False)
    assert not reached_top_ten(12, 11, already_told=False)
    assert not reached_top_ten(9, 8, already_told=False)
    assert not reached_top_ten(11, 10, already_told=True)


def test_a_window_ending_at_midnight_is_shown_as_the_day_before():
    assert str(last_day(local(2027, 3, 11, 0))) == "2027-03-10"
    assert str(last_day(local(2027, 3, 11, 18))) == "2027-03-11"


# ------------------------------------------------------------ quiet hours

@pytest.mark.parametrize("due, released", [
    (local(2027, 3, 1, 22, 0), local(2027, 3, 2, 8, 0)),
    (local(2027, 3, 1, 23, 59), local(2027, 3, 2, 8, 0)),
    (local(2027, 3, 2, 0, 30), local(2027, 3, 2, 8, 0)),
    (local(2027, 3, 2, 7, 59), local(2027, 3, 2, 8, 0)),
    (local(2027, 3, 2, 8, 0), local(2027, 3, 2, 8, 0)),
    (local(2027, 3, 2, 21, 59), local(2027, 3, 2, 21, 59)),
])
def test_sms_due_in_quiet_hours_is_held_until_eight_local_time(due, released):
    assert release_at(Channel.SMS, due.astimezone(UTC), BISHKEK) == released


def test_quiet_hours_follow_the_local_time_zone():
    due = datetime(2027, 3, 1, 16, 30, tzinfo=UTC)  # 22:30 in Bishkek, 21:30 in Almaty
    assert release_at(Channel.SMS, due, BISHKEK) == local(2027, 3, 2, 8)
    assert release_at(Channel.SMS, due, ALMATY) == due


def test_email_and_inapp_are_never_held_by_quiet_hours():
    due = local(2027, 3, 1, 23).astimezone(UTC)
    assert release_at(Channel.EMAIL, due, BISHKEK) == due
    assert release_at(Channel.INAPP, due, BISHKEK) == due


def test_email_code_is_never_delayed():
    due = local(2027, 3, 1, 23, 30).astimezone(UTC)
    [msg] = plan_messages("registration.email_code_issued.v1", PARENT, due)
    assert schedule(msg.channel, due, BISHKEK, urgent=msg.urgent,
                    sms_sent_at=[due] * 50) == due


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_a_released_sms_never_falls_in_quiet_hours_nor_before_it_was_due(due):
    at = release_at(Channel.SMS, due, BISHKEK)
    assert at >= due
    assert not (at.astimezone(BISHKEK).hour >= 22 or at.astimezone(BISHKEK).hour < 8)
    assert at - due <= timedelta(hours=10)


# ------------------------------------------------------------ rate limit

def test_sixth_sms_in_an_hour_to_one_phone_waits_for_the_oldest_to_leave_the_window():
    now = datetime(2027, 3, 1, 6, tzinfo=UTC)
    sent = [now - timedelta(minutes=m) for m in (50, 40, 30, 20, 10)]
    assert next_sms_slot(sent, now) == now + timedelta(minutes=10)
    assert next_sms_slot(sent[1:], now) == now


def test_daily_sms_limit_defers_to_the_next_free_slot():
    now = datetime(2027, 3, 1, 12, tzinfo=UTC)
    sent = [now - timedelta(hours=2 + h) for h in range(20)]
    assert next_sms_slot(sent, now, [RateLimit(20, timedelta(days=1))]) == sent[-1] + timedelta(days=1)


def test_a_rate_limited_sms_is_not_released_into_quiet_hours():
    # Limit frees the phone at 21:55 + 10 min = 22:05 local: the SMS waits for 08:00.
    now = local(2027, 3, 1, 21, 55).astimezone(UTC)
    sent = [now - timedelta(minutes=m) for m in (50, 40, 30, 20, 10)]
    assert schedule(Channel.SMS, now, BISHKEK, sms_sent_at=sent) == local(2027, 3, 2, 8)


@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=40),
       st.integers(min_value=0, max_value=3000))
def test_sending_at_the_computed_slot_keeps_every_window_within_its_limit(offsets, now_min):
    base = datetime(2027, 3, 1, tzinfo=UTC)
    limits = [RateLimit(5, timedelta(hours=1)), RateLimit(20, timedelta(days=1))]
    sent = []
    for off in sorted(offsets):  # a history that itself obeyed the limits
        t = next_sms_slot(sent, base + timedelta(minutes=off), limits)
        sent.append(t)
    now = max([base + timedelta(minutes=now_min), *sent])
    slot = next_sms_slot(sent, now, limits)
    assert slot >= now
    for lim in limits:
        assert sum(1 for t in [*sent, slot] if slot - lim.window < t <= slot) <= lim.max_count


# ------------------------------------------------------------ retries

def test_transient_failure_is_retried_after_a_growing_backoff():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    waits = [after_attempt(Outcome.TRANSIENT, n, now, DEFAULT_RETRY, "m1").next_attempt_at - now
             for n in range(DEFAULT_RETRY.max_attempts - 1)]
    assert waits == sorted(waits)
    assert waits[0] >= timedelta(seconds=27) and waits[-1] <= timedelta(hours=6.6)


def test_backoff_jitter_is_bounded_and_reproducible_per_message():
    a = backoff(DEFAULT_RETRY, 1, "m1")
    assert a == backoff(DEFAULT_RETRY, 1, "m1")
    assert timedelta(seconds=27) <= a <= timedelta(seconds=33)
    assert len({backoff(DEFAULT_RETRY, 1, f"m{i}") for i in range(20)}) > 10


def test_message_is_dead_lettered_after_the_last_try():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    last = after_attempt(Outcome.TRANSIENT, DEFAULT_RETRY.max_attempts - 1, now, DEFAULT_RETRY, "m1")
    assert last.status is Status.FAILED and last.dead_letter
    assert last.attempts == DEFAULT_RETRY.max_attempts


def test_permanent_failure_is_dead_lettered_at_once():
    r = after_attempt(Outcome.PERMANENT, 0, datetime.now(UTC), DEFAULT_RETRY, "m1")
    assert r.status is Status.FAILED and r.dead_letter and r.attempts == 1


def test_no_retry_is_scheduled_past_the_messages_expiry():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    r = after_attempt(Outcome.TRANSIENT, 4, now, URGENT_RETRY, "m1", expires_at=now + timedelta(seconds=10))
    assert r.status is Status.FAILED and r.dead_letter


def test_an_expired_message_is_not_sent():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    assert expired(now, now) and not expired(now + timedelta(seconds=1), now) and not expired(None, now)


def test_urgent_messages_retry_within_seconds():
    assert URGENT_RETRY.delays[0] <= timedelta(seconds=5)
    assert sum(URGENT_RETRY.delays, timedelta()) < timedelta(minutes=10)


def test_accepted_sends_are_sent_and_receipts_are_delivered():
    now = datetime.now(UTC)
    assert after_attempt(Outcome.SENT, 0, now, DEFAULT_RETRY, "m").status is Status.SENT
    assert after_attempt(Outcome.DELIVERED, 2, now, DEFAULT_RETRY, "m").status is Status.DELIVERED


def test_statuses_only_move_forward_and_final_ones_stay():
    assert may_move(Status.QUEUED, Status.SENDING)
    assert may_move(Status.SENDING, Status.SENT)
    assert may_move(Status.SENDING, Status.DELIVERED)  # a receipt overtaking our record
    assert may_move(Status.SENT, Status.DELIVERED)
    assert may_move(Status.SENT, Status.FAILED)        # a receipt saying undeliverable
    assert may_move(Status.SENDING, Status.QUEUED)     # a retry
    assert not may_move(Status.DELIVERED, Status.SENT)
    assert not may_move(Status.DELIVERED, Status.FAILED)
    assert not may_move(Status.FAILED, Status.QUEUED)
    assert not may_move(Status.SENT, Status.QUEUED)


# ------------------------------------------------------------ SMS segments

@pytest.mark.parametrize("text, encoding, units, segments", [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),          # extension characters take two septets
    ("€" * 81, "GSM-7", 162, 2),
    ("ж" * 70, "UCS-2", 70, 1),
    ("ж" * 71, "UCS-2", 71, 2),
    ("ж" * 134, "UCS-2", 134, 2),
    ("ж" * 135, "UCS-2", 135, 3),
    ("Өң" + "a" * 68, "UCS-2", 70, 1),    # one Kyrgyz letter makes the whole text UCS-2
    ("", "GSM-7", 0, 0),
])
def test_sms_segments_are_160_153_for_gsm7_and_70_67_for_ucs2(text, encoding, units, segments):
    size = sms_size(text)
    assert (size.encoding, size.units, size.segments) == (encoding, units, segments)


def test_an_escape_pair_is_never_split_between_segments():
    # 152 plain septets then a two-septet '€': it cannot start in segment one.
    assert sms_size("a" * 152 + "€" + "a" * 152).segments == 3


def test_a_surrogate_pair_is_never_split_between_segments():
    assert sms_size("ж" * 66 + "😀" + "ж" * 66).segments == 3


def test_typographic_quotes_are_made_plain_when_that_keeps_english_in_gsm7():
    text = "Your referral to «Sun» — bring documents by 11 March…"
    out = sms_text(text)
    assert sms_size(out).encoding == "GSM-7" and '"Sun" - bring' in out


def test_cyrillic_sms_keeps_its_punctuation_and_loses_extra_whitespace():
    assert sms_text("Жолдомо  «Күн»\n бакчасына") == "Жолдомо «Күн» бакчасына"


@pytest.mark.parametrize("raw, e164", [
    ("+996 700 123 456", "+996700123456"), ("0700123456", "+996700123456"),
    ("+7 (701) 234-56-78", "+77012345678"), ("87012345678", "+77012345678")])
def test_phones_are_normalised_to_e164_so_each_has_one_rate_limit_bucket(raw, e164):
    assert normalize_phone(raw) == e164


def test_a_phone_outside_kyrgyzstan_and_kazakhstan_is_refused():
    with pytest.raises(InvalidPhone):
        normalize_phone("+1 202 555 0100")


def test_only_a_failed_message_that_held_no_secret_and_has_not_expired_may_be_sent_again():
    from services.notifications.domain import why_not_again

    now = datetime(2027, 3, 1, 5, tzinfo=UTC)
    assert why_not_again(Status.FAILED, "referral_issued", None, now) is None
    assert why_not_again(Status.FAILED, "referral_issued", now + timedelta(hours=1), now) is None
    assert why_not_again(Status.SENT, "referral_issued", None, now) == "retry_not_failed"
    assert why_not_again(Status.FAILED, "email_code", None, now) == "retry_secret_gone"
    assert why_not_again(Status.FAILED, "deadline_near", now, now) == "retry_expired"
