"""Abuse limits of registration (DOMAIN.md section 7: they protect a family
without letting a stranger lock it out). Pure rules, standard library only;
the use cases load the counts and save what these functions return.

- E-mail codes: besides the limits of one draft (`domain.issue_code`), one
  address gets a code at most once a minute and `codes_per_address_per_hour`
  an hour, whatever the draft, and one client (the address the request came
  from) asks for at most `codes_per_client_per_hour` codes an hour: eight new
  drafts cannot send eight codes to one mailbox.
- Sign-in (the shared rule: kezek/throttle.py): wrong passwords slow the
  guesser, never lock the account. They are counted per login and client (a guesser's own attempts), per client
  across logins (one client trying many accounts), and per login across
  clients (many clients trying one account). After the free ones each
  further attempt waits twice as long as the one before, up to
  LONGEST_WAIT. The count per login across clients does not slow a client
  the owner has signed in from before: the right password from the owner's
  usual computer or phone is heard at once. The owner is told by e-mail when
  wrong passwords start to be slowed (at most once a day).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kezek import throttle
from services.registration.domain import CODE_RESEND_AFTER, FieldError


@dataclass(frozen=True)
class Limits:
    codes_per_address_per_hour: int = 5
    codes_per_client_per_hour: int = 30


# ------------------------------------------------------------- e-mail codes

def code_send_refusal(to_address: list[datetime], from_client: list[datetime], now: datetime,
                      limits: Limits, field_: str = "parent.email") -> FieldError | None:
    """The refusal of one more code, given the send times of the last hour
    to this address (any draft) and from this client; None: it may go."""
    hour = timedelta(hours=1)
    to_address = [t for t in to_address if now - t < hour]
    from_client = [t for t in from_client if now - t < hour]
    if to_address and now - max(to_address) < CODE_RESEND_AFTER:
        wait = int((CODE_RESEND_AFTER - (now - max(to_address))).total_seconds()) + 1
        return FieldError(field_, "code_resend_too_soon", (("seconds", str(wait)),))
    for sends, allowed in ((to_address, limits.codes_per_address_per_hour),
                           (from_client, limits.codes_per_client_per_hour)):
        if len(sends) >= allowed:
            wait = int((min(sends) + hour - now).total_seconds()) + 1
            return FieldError(field_, "code_too_many_sends", (("seconds", str(wait)),))
    return None


# ---------------------------------------------------------------- sign-in

FREE_PER_LOGIN_AND_CLIENT = 3
FREE_PER_CLIENT = 20          # a public service centre or an office shares one address
FREE_PER_LOGIN = 10           # from clients the owner never signed in from
LONGEST_WAIT = throttle.LONGEST_WAIT
FAILURES_FORGOTTEN_AFTER = throttle.FORGOTTEN_AFTER
NOTICE_EVERY = timedelta(days=1)
Failures = throttle.Failures
wait_after = throttle.wait_after


@dataclass(frozen=True)
class SignInCounts:
    login_and_client: Failures = Failures()
    client: Failures = Failures()
    login: Failures = Failures()


def sign_in_wait(counts: SignInCounts, now: datetime, *, usual_client: bool) -> timedelta:
    """How long from `now` until the next attempt is heard (zero: now).
    `usual_client`: the owner signed in from this client before."""
    waits = [throttle.wait(counts.login_and_client, FREE_PER_LOGIN_AND_CLIENT, now),
             throttle.wait(counts.client, FREE_PER_CLIENT, now)]
    if not usual_client:
        waits.append(throttle.wait(counts.login, FREE_PER_LOGIN, now))
    return max(waits)


def notice_due(login: Failures, noticed_at: datetime | None, now: datetime) -> bool:
    """Tell the owner once wrong passwords for the account start to be
    slowed, at most once every NOTICE_EVERY."""
    if login.current(now) < FREE_PER_LOGIN_AND_CLIENT:
        return False
    return noticed_at is None or now - noticed_at >= NOTICE_EVERY
