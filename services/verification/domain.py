"""The rules of the staff pages (DOMAIN.md sections 1, 4 and 7): who may see
and do what (caseworkers, supervisors, the voucher commission, kindergarten
staff, district officers, administrators, operators), when a certificate is
in date, which scans are accepted, what a caseworker may do with a case, the
abuse pattern, the voucher commission's decisions, and what a kindergarten's
or a district office's form must hold. Standard library, the referral's
rules and the core's refusal catalogue only, no I/O.

Refusals carry a field and a stable code; the pages translate the code into
the caseworker's language (templates/_messages.html), never this module.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from kezek import refusals, throttle
from kezek.refusals import FieldError, FieldsRefused

from workflows.rules import DEFAULTS, certificate_in_date, certificate_valid_until

# ------------------------------------------------------------------ errors


class Refused(FieldsRefused):
    """One or more fields of a caseworker's form break a rule; nothing was written."""


# The English text of every refusal this service gives, by code (the core's
# catalogue, kezek.refusals): for logs and the command line. The pages say
# each code in the reader's language (templates/_messages.html).
TEXTS: dict[str, str] = {
    "required": "is required",
    "too_long": "is too long (at most {max} characters)",
    "choice": "is not one of the allowed values",
    "date_format": "must be a date, for example 01.03.2027",
    "date_in_future": "cannot be in the future",
    "date_too_old": "is more than a year ago",
    "date_before_start": "is before the start date",
    "scan_type": "must be a PDF, JPEG or PNG file",
    "scan_too_large": "is larger than {max_mb} MB",
    "certificate_missing": "record the certificate first",
    "certificate_out_of_date": "is out of date (it was valid up to and including {until}); ask for a fresh one",
    "certificate_in_date": "is in date (valid up to and including {until}); confirm or reject instead",
    "case_closed": "is no longer waiting for confirmation ({state})",
    "documents_missing": "not all required documents are checked",
    "already_decided": "has already been decided",
    "login_failed": "wrong login or password",
    "login_throttled": "too many wrong passwords from this computer; try again in {seconds} seconds",
    "invalid_characters": "contains characters that are not allowed",
    "csrf": "has expired; open the page again",
    "login_format": "3 to 40 small Latin letters, digits, dots, dashes or underscores",
    "login_taken": "is taken",
    "password_too_short": "must have at least {min} characters",
    # kindergartens and district offices (issue 19)
    "kindergarten_unknown": "no kindergarten {kindergarten!r}",
    "district_unknown": "no district {district!r} in the register of kindergartens",
    "scope_unchecked": "the queue did not answer, so the scope cannot be checked ({detail})",
    "number_range": "must be a whole number from {min} to {max}",
    "time_format": "must be a time, for example 09:30",
    "moment_in_past": "is in the past",
    "id_taken": "is taken",
    "kindergarten_id_format": "2 to 100 Latin letters, digits, dots, dashes or underscores",
    "coordinate": "must be a number from {min} to {max}",
    "month_format": "month must be YYYY-MM",
}
refusals.catalogue("verification", TEXTS)


def err(field_: str, code: str, **params: object) -> FieldError:
    return FieldError(field_, code, tuple((k, str(v)) for k, v in params.items()))


def _raise_if(errors: list[FieldError]) -> None:
    if errors:
        raise Refused(errors)


# ------------------------------------------------------------ roles, scope


class Role(StrEnum):
    CASEWORKER = "caseworker"
    SUPERVISOR = "supervisor"      # district supervisor
    COMMISSION = "commission"      # member of the district voucher commission
    KINDERGARTEN = "kindergarten"  # the head or admissions clerk of one kindergarten
    DISTRICT = "district"          # a district education officer: the district's kindergartens
    ADMIN = "admin"
    OPERATOR = "operator"          # runs the system: reads the audit log, decides nothing


class Permission(StrEnum):
    WORKLIST = "worklist"          # see the referrals waiting for confirmation
    CASE_VIEW = "case.view"        # open a case (personal data, the scan)
    CASE_ACT = "case.act"          # record a certificate; confirm, reject, ask for a fresh one
    ABUSE_VIEW = "abuse.view"
    ABUSE_RESOLVE = "abuse.resolve"  # revoke a privilege found false, or dismiss the flag
    VOUCHER_VIEW = "voucher.view"
    VOUCHER_DECIDE = "voucher.decide"
    AUDIT_SEARCH = "audit.search"
    KG_VIEW = "kindergarten.view"          # a kindergarten's groups, referrals and children
    KG_PLACES = "kindergarten.places"      # publish and withdraw its free places, call off its scheduled ones
    KG_ENROL = "kindergarten.enrol"        # record an enrolment, a family declining in person, a child leaving
    DISTRICT_VIEW = "district.view"        # the district's kindergartens, publication schedule and figures
    DISTRICT_MANAGE = "district.manage"    # create, edit and close the district's kindergartens
    DISTRICT_SCHEDULE = "district.schedule"  # put places on the publication schedule, call them off
    CHILD_SEARCH = "child.search"          # find a child by PIN, saying why (kezek/looks.py)
    LOOKS_VIEW = "looks.view"              # who looked at a child's data


P = Permission
PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.CASEWORKER: frozenset({P.WORKLIST, P.CASE_VIEW, P.CASE_ACT, P.ABUSE_VIEW, P.CHILD_SEARCH}),
    Role.SUPERVISOR: frozenset({P.WORKLIST, P.CASE_VIEW, P.CASE_ACT, P.ABUSE_VIEW, P.ABUSE_RESOLVE,
                                P.AUDIT_SEARCH, P.DISTRICT_VIEW, P.CHILD_SEARCH, P.LOOKS_VIEW}),
    Role.COMMISSION: frozenset({P.VOUCHER_VIEW, P.VOUCHER_DECIDE}),
    # A kindergarten records what happens at its door: the places it has
    # free, the families who come (or decline), the children who leave.
    Role.KINDERGARTEN: frozenset({P.KG_VIEW, P.KG_PLACES, P.KG_ENROL}),
    # The district office runs the district's kindergartens and their
    # schedule; enrolments are the kindergartens' own acts.
    Role.DISTRICT: frozenset({P.KG_VIEW, P.KG_PLACES, P.DISTRICT_VIEW, P.DISTRICT_MANAGE, P.DISTRICT_SCHEDULE}),
    # Administrators oversee every district but decide nothing: decisions
    # belong to the district's caseworkers, supervisor and commission, the
    # kindergartens and the district office.
    Role.ADMIN: frozenset({P.WORKLIST, P.CASE_VIEW, P.ABUSE_VIEW, P.VOUCHER_VIEW, P.AUDIT_SEARCH, P.KG_VIEW,
                           P.DISTRICT_VIEW, P.CHILD_SEARCH, P.LOOKS_VIEW}),
    Role.OPERATOR: frozenset({P.AUDIT_SEARCH}),
}


# What only looks at personal data, as the audit trail tells looks from acts.
LOOKS = frozenset({"worklist.view", "case.view", "scan.view", "abuse.list", "abuse.view", "voucher.list",
                   "voucher.view", "voucher.print", "audit.search", "child.search", "child.looks"})


def can(role: Role | str, permission: Permission) -> bool:
    return permission in PERMISSIONS.get(Role(role), frozenset())


class Scope(StrEnum):
    """What part of the data a role reaches."""

    KINDERGARTEN = "kindergarten"  # the member of staff's own kindergarten
    DISTRICT = "district"      # the member of staff's own district
    ALL = "all"                # every district


SCOPES: Mapping[Role, Scope] = {Role.CASEWORKER: Scope.DISTRICT, Role.SUPERVISOR: Scope.DISTRICT,
                                Role.COMMISSION: Scope.DISTRICT, Role.KINDERGARTEN: Scope.KINDERGARTEN,
                                Role.DISTRICT: Scope.DISTRICT, Role.ADMIN: Scope.ALL, Role.OPERATOR: Scope.ALL}


def all_districts(role: Role | str) -> bool:
    return SCOPES[Role(role)] is Scope.ALL


def reaches(role: Role | str, own_kindergarten: str, own_district: str, kindergarten: str,
            district: str | None) -> bool:
    """Whether a kindergarten (of `district`) lies in the role's scope: its
    own kindergarten for a kindergarten's staff, its district's for a
    district's staff, every one for an administrator."""
    scope = SCOPES[Role(role)]
    if scope is Scope.ALL:
        return True
    if scope is Scope.KINDERGARTEN:
        return bool(own_kindergarten) and own_kindergarten == kindergarten
    return bool(own_district) and own_district == district


def sees_district(role: Role | str, own_district: str, district: str | None) -> bool:
    """A caseworker, supervisor or commission member works in one district
    and sees nothing of another; an administrator sees every district."""
    if all_districts(role):
        return True
    return bool(own_district) and district == own_district


# ------------------------------------------------------------ staff accounts

STAFF_LANGUAGES = ("ru", "ky", "kk")     # the staff pages' languages; Russian first
LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,39}$")
MIN_PASSWORD = 10
SESSION_TTL = timedelta(hours=9)      # one working day; a session never outlives it


def validate_staff(login: str, full_name: str, role: str, district: str, password: str,
                   kindergarten: str = "") -> None:
    """An account's own fields; whether its kindergarten or district exists
    is the queue's to say (usecases/staff.py asks it)."""
    errors: list[FieldError] = []
    if not LOGIN_RE.match(login or ""):
        errors.append(err("login", "login_format"))
    if not (full_name or "").strip() or len(full_name) > 200:
        errors.append(err("full_name", "required"))
    if role not in {r.value for r in Role}:
        errors.append(err("role", "choice"))
    elif SCOPES[Role(role)] is Scope.KINDERGARTEN:
        if not (kindergarten or "").strip():
            errors.append(err("kindergarten", "required"))
    elif not all_districts(role) and not (district or "").strip():
        errors.append(err("district", "required"))
    if len(password or "") < MIN_PASSWORD:
        errors.append(err("password", "password_too_short", min=MIN_PASSWORD))
    _raise_if(errors)


# Sign-in throttling: a guesser is slowed, nobody is locked out. Wrong
# passwords are counted per account and client (the guesser's own attempts)
# and per client across accounts (one client trying many accounts); after the
# free ones each further attempt waits twice as long as the one before, up to
# LONGEST_WAIT. After the wait the right password signs in: there is no lock
# that someone else's wrong passwords could put on an account. The owner is
# told of the wrong passwords at their next sign-in.
FREE_FAILURES = 3                 # per account and client
FREE_FAILURES_PER_CLIENT = 20     # per client, whatever the account (an office shares its address)
# The rule itself is the one every sign-in shares (kezek/throttle.py).
FIRST_WAIT = throttle.FIRST_WAIT
LONGEST_WAIT = throttle.LONGEST_WAIT
FAILURES_FORGOTTEN_AFTER = throttle.FORGOTTEN_AFTER
Failures = throttle.Failures
wait_after = throttle.wait_after
sign_in_wait = throttle.wait


def one_more_failure(f: Failures, now: datetime) -> Failures:
    return f.one_more(now)


# -------------------------------------------------------------- certificates

# The referral's rules (workflows/rules.py) say how long a certificate is in
# date and what a window's last day is; named here for this service's callers.
CERTIFICATE_VALID_DAYS = DEFAULTS.certificate_valid_days   # the policy may change it


@dataclass(frozen=True)
class CertificateData:
    organisation: str
    number: str
    issued_on: date


def parse_date(raw: str) -> date | None:
    raw = (raw or "").strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    return None


def validate_certificate(organisation: str, number: str, issued_on: str, today: date) -> CertificateData:
    """The certificate from the place of work: who issued it, its number, its
    issue date (which the law requires it to carry)."""
    errors: list[FieldError] = []
    org = " ".join((organisation or "").split())
    num = (number or "").strip()
    if not org:
        errors.append(err("organisation", "required"))
    elif len(org) > 200:
        errors.append(err("organisation", "too_long", max=200))
    if not num:
        errors.append(err("number", "required"))
    elif len(num) > 50:
        errors.append(err("number", "too_long", max=50))
    issued = None
    if not (issued_on or "").strip():
        errors.append(err("issued_on", "required"))
    else:
        issued = parse_date(issued_on)
        if issued is None:
            errors.append(err("issued_on", "date_format"))
        elif issued > today:
            errors.append(err("issued_on", "date_in_future"))
        elif issued < today - timedelta(days=366):
            errors.append(err("issued_on", "date_too_old"))
    _raise_if(errors)
    assert issued is not None
    return CertificateData(org, num, issued)


# --------------------------------------------------------------------- scans

MAX_SCAN_BYTES = 5 * 1024 * 1024

# Recognised by their first bytes, never by the name or the browser's type.
SCAN_TYPES: tuple[tuple[bytes, str, str], ...] = (
    (b"%PDF-", "pdf", "application/pdf"),
    (b"\xff\xd8\xff", "jpeg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
)


@dataclass(frozen=True)
class ScanKind:
    kind: str
    content_type: str


def check_scan(data: bytes, max_bytes: int = MAX_SCAN_BYTES) -> ScanKind:
    if not data:
        raise Refused([err("scan", "required")])
    if len(data) > max_bytes:
        raise Refused([err("scan", "scan_too_large", max_mb=_mb(max_bytes))])
    for magic, kind, content_type in SCAN_TYPES:
        if data.startswith(magic):
            return ScanKind(kind, content_type)
    raise Refused([err("scan", "scan_type")])


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g}"


# ---------------------------------------------------------------- the case


class Action(StrEnum):
    CONFIRM = "confirm"
    REJECT = "reject"
    REQUEST_CERTIFICATE = "request_certificate"


OPEN_STATE = "awaiting_confirmation"   # the referral's confirmation window is running
MAX_REASON = 500


@dataclass(frozen=True)
class Certificate:
    issued_on: date


def check_action(action: Action, state: str, certificate: Certificate | None, today: date,
                 reason: str = "", valid_days: int = CERTIFICATE_VALID_DAYS) -> None:
    """What the caseworker may do before the referral workflow is asked.
    Confirming needs a recorded certificate that is in date; asking for a
    fresh one needs a recorded certificate that is not; rejecting needs a
    reason. The workflow checks again (the window, the referral's state) and
    its refusal is shown as it gives it."""
    if state != OPEN_STATE:
        raise Refused([err("case", "case_closed", state=state)])
    if action is Action.REJECT:
        text = (reason or "").strip()
        if not text:
            raise Refused([err("reason", "required")])
        if len(text) > MAX_REASON:
            raise Refused([err("reason", "too_long", max=MAX_REASON)])
        return
    if certificate is None:
        raise Refused([err("certificate", "certificate_missing")])
    in_date = certificate_in_date(certificate.issued_on, today, valid_days)
    until = certificate_valid_until(certificate.issued_on, valid_days)
    if action is Action.CONFIRM and not in_date:
        raise Refused([err("certificate", "certificate_out_of_date", until=until.isoformat())])
    if action is Action.REQUEST_CERTIFICATE and in_date:
        raise Refused([err("certificate", "certificate_in_date", until=until.isoformat())])


# --------------------------------------------------------------------- abuse


@dataclass(frozen=True)
class AbusePolicy:
    """Thresholds of the rule; data an administrator may change."""

    min_cycles: int = 2            # privileged referrals given up, each followed by another one
    window_days: int = 365         # only cycles that ended within this many days count
    outcomes: tuple[str, ...] = ("cancelled",)   # how a referral may end to count as given up

    @classmethod
    def from_dict(cls, data: Mapping) -> "AbusePolicy":
        known = {"min_cycles", "window_days", "outcomes"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"abuse policy: unknown field(s) {', '.join(sorted(unknown))}")
        fields = dict(data)
        if "outcomes" in fields:
            fields["outcomes"] = tuple(fields["outcomes"])
        policy = cls(**fields)
        if policy.min_cycles < 1 or policy.window_days < 1:
            raise ValueError("abuse policy: min_cycles and window_days must be at least 1")
        return policy


@dataclass(frozen=True)
class PastReferral:
    referral_id: str
    application_id: str
    privileged: bool             # taken under a privilege category
    issued_at: datetime
    outcome: str | None = None   # cancelled, expired, privilege_rejected, enrolled; None while live
    closed_at: datetime | None = None


@dataclass(frozen=True)
class AbuseFinding:
    rule: str
    cycles: int
    referral_ids: tuple[str, ...]      # the referrals given up, then the one taken again
    applications: int                  # more than one: the child left the queue and joined again


ABUSE_RULE = "privileged_taken_cancelled_taken_again"


def detect_abuse(history: Iterable[PastReferral], now: datetime,
                 policy: AbusePolicy = AbusePolicy()) -> AbuseFinding | None:
    """DOMAIN.md section 4: a privileged applicant who takes a referral,
    cancels, re-queues and takes another, again and again. A cycle is a
    privileged referral that ended in one of the policy's outcomes within the
    window and after which the child took another privileged referral."""
    privileged = sorted((r for r in history if r.privileged), key=lambda r: (r.issued_at, r.referral_id))
    since = now - timedelta(days=policy.window_days)
    cycles = [
        r for i, r in enumerate(privileged)
        if r.outcome in policy.outcomes and r.closed_at is not None and r.closed_at >= since
        and any(later.issued_at >= r.closed_at for later in privileged[i + 1:])
    ]
    if len(cycles) < policy.min_cycles:
        return None
    taken_again = privileged[-1]
    ids = tuple(r.referral_id for r in cycles) + (
        (taken_again.referral_id,) if taken_again not in cycles else ())
    return AbuseFinding(ABUSE_RULE, len(cycles), ids, len({r.application_id for r in privileged}))


def validate_resolution(reason: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise Refused([err("reason", "required")])
    if len(text) > MAX_REASON:
        raise Refused([err("reason", "too_long", max=MAX_REASON)])
    return text


# ------------------------------------------------------------------ vouchers


@dataclass(frozen=True)
class VoucherPolicy:
    """The voucher programme's reference data (state financing of a place in
    a private kindergarten)."""

    categories: tuple[str, ...] = ("voucher",)     # application categories that are voucher applications
    benefit_types: tuple[str, ...] = ("full", "partial")
    documents: tuple[str, ...] = ("birth_certificate", "parent_identity", "residence",
                                  "kindergarten_agreement", "benefit_grounds")
    required_documents: tuple[str, ...] = ("birth_certificate", "parent_identity", "residence",
                                           "kindergarten_agreement")


class VoucherDecisionKind(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class VoucherDecision:
    decision: VoucherDecisionKind
    benefit_type: str | None
    documents: tuple[str, ...]
    reason: str
    members: tuple[str, ...]


def validate_voucher_decision(decision: str, benefit_type: str, documents: Iterable[str], reason: str,
                              members: Iterable[str] = (), known_members: Iterable[str] = (),
                              policy: VoucherPolicy = VoucherPolicy()) -> VoucherDecision:
    """Approving needs a benefit type and every required document checked;
    rejecting needs a reason. Members present must be commission members of
    the district."""
    errors: list[FieldError] = []
    docs = tuple(dict.fromkeys(documents))
    text = " ".join((reason or "").split())
    kind = None
    if decision not in {k.value for k in VoucherDecisionKind}:
        errors.append(err("decision", "required" if not decision else "choice"))
    else:
        kind = VoucherDecisionKind(decision)
    if any(d not in policy.documents for d in docs):
        errors.append(err("documents", "choice"))
    if kind is VoucherDecisionKind.APPROVED:
        if benefit_type not in policy.benefit_types:
            errors.append(err("benefit_type", "required" if not benefit_type else "choice"))
        missing = [d for d in policy.required_documents if d not in docs]
        if missing:
            errors.append(err("documents", "documents_missing", missing=",".join(missing)))
    if kind is VoucherDecisionKind.REJECTED and not text:
        errors.append(err("reason", "required"))
    if len(text) > MAX_REASON:
        errors.append(err("reason", "too_long", max=MAX_REASON))
    present = tuple(dict.fromkeys(members))
    known = set(known_members)
    if any(m not in known for m in present):
        errors.append(err("members", "choice"))
    _raise_if(errors)
    assert kind is not None
    return VoucherDecision(kind, benefit_type if kind is VoucherDecisionKind.APPROVED else None,
                           docs, text, present)


# ------------------------------------------------------------------- policy


@dataclass(frozen=True)
class VerificationPolicy:
    """Everything an administrator may set for the department's work (from
    the settings, see settings.py)."""

    country: str = "KG"
    certificate_valid_days: int = CERTIFICATE_VALID_DAYS
    max_scan_bytes: int = MAX_SCAN_BYTES
    abuse: AbusePolicy = AbusePolicy()
    vouchers: VoucherPolicy = VoucherPolicy()


# --------------------------------------------------------------------- audit


@dataclass(frozen=True)
class AuditQuery:
    actor: str = ""
    action: str = ""
    subject: str = ""
    date_from: date | None = None
    date_to: date | None = None
    limit: int = 200


def parse_audit_query(params: Mapping[str, str]) -> AuditQuery:
    errors: list[FieldError] = []
    dates: dict[str, date | None] = {}
    for name in ("date_from", "date_to"):
        raw = (params.get(name) or "").strip()
        dates[name] = parse_date(raw) if raw else None
        if raw and dates[name] is None:
            errors.append(err(name, "date_format"))
    if dates["date_from"] and dates["date_to"] and dates["date_from"] > dates["date_to"]:
        errors.append(err("date_to", "date_before_start"))
    _raise_if(errors)
    return AuditQuery(actor=(params.get("actor") or "").strip()[:40],
                      action=(params.get("action") or "").strip()[:40],
                      subject=(params.get("subject") or "").strip()[:100],
                      date_from=dates["date_from"], date_to=dates["date_to"])


# ------------------------------------------- kindergartens and district offices
# The forms of the kindergarten and district pages (issue 19). The rules of
# places, the schedule and closing are the queue's (services/queue/domain/);
# these only make sure a form says something the queue can be asked.

MONTH_RE = re.compile(r"^(19[7-9]|2[01]\d)\d-(0[1-9]|1[0-2])$")   # 1970-01 to 2199-12
KINDERGARTEN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,99}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,5}$")
# Languages a kindergarten may teach in, as the forms offer them.
TAUGHT_LANGUAGES = ("ky", "ru", "kk", "uz", "tg", "en")
MAX_PLACES = 10_000


def _whole(raw: str, name: str, low: int, high: int, errors: list[FieldError]) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        errors.append(err(name, "required"))
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        errors.append(err(name, "number_range", min=low, max=high))
        return None
    return int(raw)


def parse_time(raw: str) -> tuple[int, int] | None:
    try:
        moment = datetime.strptime((raw or "").strip(), "%H:%M")
    except ValueError:
        return None
    return moment.hour, moment.minute


@dataclass(frozen=True)
class PlacesForm:
    cohort: int
    language: str
    count: int
    for_category: str | None
    publish_on: date | None = None          # local date and time of a scheduled publication
    publish_time: tuple[int, int] | None = None


def validate_places(form: Mapping[str, str], this_year: int, *, languages: Iterable[str], categories: Iterable[str],
                    scheduled: bool = False, today: date | None = None) -> PlacesForm:
    """Places to publish (now or, `scheduled`, at a local date and time) or
    to withdraw: a preschool birth year, a language the kindergarten teaches
    in, a number of places, optionally the one category that may take them."""
    errors: list[FieldError] = []
    cohort = _whole(form.get("cohort", ""), "cohort", this_year - 8, this_year, errors)
    language = (form.get("language") or "").strip()
    taught = list(languages)
    if not language:
        errors.append(err("language", "required"))
    elif not LANGUAGE_RE.match(language) or (taught and language not in taught):
        errors.append(err("language", "choice"))
    count = _whole(form.get("count", ""), "count", 1, MAX_PLACES, errors)
    category = (form.get("for_category") or "").strip() or None
    if category is not None and category not in set(categories):
        errors.append(err("for_category", "choice"))
    on, at = None, None
    if scheduled:
        raw = (form.get("publish_on") or "").strip()
        on = parse_date(raw) if raw else None
        if not raw:
            errors.append(err("publish_on", "required"))
        elif on is None:
            errors.append(err("publish_on", "date_format"))
        elif today is not None and on < today:
            errors.append(err("publish_on", "moment_in_past"))
        at = parse_time(form.get("publish_time") or "")
        if at is None:
            errors.append(err("publish_time", "time_format"))
    _raise_if(errors)
    assert cohort is not None and count is not None
    return PlacesForm(cohort, language, count, category, on, at)


def validate_reason(raw: str, name: str = "reason", most: int = 200) -> str:
    reason = " ".join((raw or "").split())
    if len(reason) > most:
        raise Refused([err(name, "too_long", max=most)])
    return reason


def validate_kindergarten(form: Mapping[str, str], languages: Iterable[str], district: str, *,
                          new: bool) -> dict:
    """A kindergarten of the district: its id (when created), name, address,
    position on the map (optional) and the languages it teaches in."""
    errors: list[FieldError] = []
    out: dict = {"district": district}
    if new:
        kid = (form.get("id") or "").strip()
        if not KINDERGARTEN_ID_RE.match(kid):
            errors.append(err("id", "kindergarten_id_format"))
        out["id"] = kid
    name = " ".join((form.get("name") or "").split())
    if not name:
        errors.append(err("name", "required"))
    elif len(name) > 200:
        errors.append(err("name", "too_long", max=200))
    address = " ".join((form.get("address") or "").split())
    if len(address) > 200:
        errors.append(err("address", "too_long", max=200))
    out.update(name=name, address=address)
    for key, low, high in (("lat", -90, 90), ("lon", -180, 180)):
        raw = (form.get(key) or "").strip().replace(",", ".")
        if not raw:
            out[key] = None
            continue
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            errors.append(err(key, "coordinate", min=low, max=high))
        out[key] = value
    chosen = [lang for lang in languages if lang]
    if not chosen:
        errors.append(err("languages", "required"))
    elif any(lang not in TAUGHT_LANGUAGES for lang in chosen) or len(set(chosen)) != len(chosen):
        errors.append(err("languages", "choice"))
    out["languages"] = chosen
    _raise_if(errors)
    return out
