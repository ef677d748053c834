"""The registration rules of DOMAIN.md section 2 (the Balalyk parent flow).

Pure functions and dataclasses: the standard library and the core's rules
(kezek/pin.py, kezek/contacts.py) only. Every refusal is a
`FieldError`: the field it concerns and a stable code; the gateway turns the
code into a sentence in the parent's language (see its gettext catalogs).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable

from kezek import categories as kcat
from kezek import lengths
from kezek import contacts as kcontacts
from kezek import pin as kpin
from kezek.refusals import FieldError, FieldsRefused

# --- errors -----------------------------------------------------------------


class RegistrationRefused(FieldsRefused):
    """One or more fields of the application break a rule; nothing was written."""


def _err(field_: str, code: str, **params: object) -> FieldError:
    return FieldError(field_, code, tuple((k, str(v)) for k, v in params.items()))


def _refuse_if(errors: list[FieldError]) -> None:
    if errors:
        raise RegistrationRefused(errors)


# --- personal identification numbers ---------------------------------------
# The rules of the numbers are the core's (kezek/pin.py); here a refusal
# becomes a field error.

PersonalNumber = kpin.PersonalNumber


def parse_personal_number(raw: str, country: str, today: date, field_: str = "pin") -> PersonalNumber:
    """The child's or parent's PIN (KG) or IIN (KZ) as typed (spaces and
    dashes allowed); refused naming `field_`."""
    _refuse_if_too_long(field_, raw)
    try:
        return kpin.parse(kpin.digits_only(raw), "KZ" if country == "KZ" else "KG", today)
    except kpin.PinError as e:
        raise RegistrationRefused([_err(field_, e.code, **e.params)]) from None


def too_long(field_: str, raw: str | None) -> FieldError | None:
    """A text longer than the limit the pages state (kezek/lengths.py): the
    refusal names the limit."""
    if lengths.too_long(field_, raw):
        return _err(field_, "too_long", max=lengths.limit(field_), length=len(raw or ""))
    return None


def _refuse_if_too_long(field_: str, raw: str | None) -> None:
    if (long := too_long(field_, raw)) is not None:
        raise RegistrationRefused([long])


def age_in_full_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# --- contacts ----------------------------------------------------------------

# The rules are the core's (kezek/contacts.py: phonenumbers and
# email-validator); here a refusal becomes a field error.

def normalize_phone(raw: str, field_: str = "phone") -> str:
    """A Kyrgyz (+996) or Kazakh (+7) mobile number in E.164, from any of
    the forms people write it in (+996 555 123 456, 0555 12-34-56,
    8 701 123 45 67 ...)."""
    _refuse_if_too_long(field_, raw)
    try:
        return kcontacts.phone_e164(raw)
    except kcontacts.ContactError as e:
        raise RegistrationRefused([_err(field_, e.code)]) from None


def normalize_email(raw: str, field_: str = "email") -> str:
    """The address with its domain in lower case; refused by its syntax only
    (no DNS lookup)."""
    _refuse_if_too_long(field_, (raw or "").strip())
    try:
        return kcontacts.email_address(raw)
    except kcontacts.ContactError as e:
        raise RegistrationRefused([_err(field_, e.code)]) from None


# --- the e-mail code ----------------------------------------------------------

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_AFTER = timedelta(seconds=60)
CODE_MAX_SENDS_PER_HOUR = 5


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(code: str, email: str, key: bytes) -> str:
    """Keyed hash: a 6-digit code has only a million values, so a plain hash
    in a leaked table would be reversed at once; HMAC with the server key is not."""
    return hmac.new(key, f"{email}\x00{code}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class EmailCode:
    email: str
    code_hash: str
    issued_at: datetime
    attempts: int = 0
    sends: tuple[datetime, ...] = ()     # send times within the last hour, for throttling
    verified_at: datetime | None = None

    @property
    def expires_at(self) -> datetime:
        return self.issued_at + CODE_TTL


def issue_code(previous: EmailCode | None, email: str, code_hash: str, now: datetime,
               field_: str = "email") -> EmailCode:
    """A fresh code replaces the previous one (and its attempts), unless the
    parent asks again too soon or too often."""
    sends: tuple[datetime, ...] = ()
    if previous is not None and previous.email == email:
        sends = tuple(t for t in previous.sends if now - t < timedelta(hours=1))
        if sends and now - max(sends) < CODE_RESEND_AFTER:
            wait = int((CODE_RESEND_AFTER - (now - max(sends))).total_seconds()) + 1
            raise RegistrationRefused([_err(field_, "code_resend_too_soon", seconds=wait)])
        if len(sends) >= CODE_MAX_SENDS_PER_HOUR:
            raise RegistrationRefused([_err(field_, "code_too_many_sends")])
    return EmailCode(email=email, code_hash=code_hash, issued_at=now, sends=sends + (now,))


def check_code(state: EmailCode | None, entered_hash: str, entered: str, now: datetime,
               field_: str = "code") -> EmailCode:
    """Returns the state after one attempt. A wrong code costs an attempt;
    the refusal carries how many are left. The caller saves the returned
    state even when it raises (see `CodeAttemptFailed`)."""
    if state is None:
        raise RegistrationRefused([_err(field_, "code_not_requested")])
    if state.verified_at is not None:
        return state
    if not re.fullmatch(r"\d{%d}" % CODE_DIGITS, (entered or "").strip()):
        raise RegistrationRefused([_err(field_, "code_format", length=CODE_DIGITS)])
    if state.attempts >= CODE_MAX_ATTEMPTS:
        raise RegistrationRefused([_err(field_, "code_too_many_attempts")])
    if now >= state.expires_at:
        raise RegistrationRefused([_err(field_, "code_expired")])
    if not hmac.compare_digest(state.code_hash, entered_hash):
        spent = EmailCode(**{**state.__dict__, "attempts": state.attempts + 1})
        left = CODE_MAX_ATTEMPTS - spent.attempts
        code = "code_wrong" if left else "code_too_many_attempts"
        raise CodeAttemptFailed(spent, [_err(field_, code, left=left)])
    return EmailCode(**{**state.__dict__, "verified_at": now})


class CodeAttemptFailed(RegistrationRefused):
    """A wrong code: the attempt counts, so the new state must be saved."""

    def __init__(self, state: EmailCode, errors: Iterable[FieldError]):
        super().__init__(errors)
        self.state = state


# --- the three steps of the application --------------------------------------

_NAME = re.compile(r"^[^\W\d_]+(?:[ '\-ʼ’][^\W\d_]+)*$")
ROLES = ("mother", "father", "representative")
DOCUMENT_TYPES = ("id_card", "passport", "other")
_DOCUMENT_NUMBER = {
    "id_card": re.compile(r"^ID\d{7}$"),      # KG ID card, e.g. ID1234567
    "passport": re.compile(r"^A[NC]\d{7}$"),  # KG passport, e.g. AN1234567
    "other": re.compile(r"^[A-Z0-9]{5,20}$"),
}
# Kazakhstan: an identity card has 9 digits, a passport N and 8 digits.
_DOCUMENT_NUMBER_KZ = {**_DOCUMENT_NUMBER, "id_card": re.compile(r"^\d{9}$"), "passport": re.compile(r"^N\d{8}$")}
LANGUAGES = ("ky", "ru", "kk", "en")
INSTRUCTION_LANGUAGES = ("ky", "ru", "kk", "uz", "en")
# "voucher": the voucher programme (state financing of a place in a private
# kindergarten), decided by the district commission in the verification service.
DEFAULT_CATEGORIES = kcat.KNOWN
MAX_CHILD_AGE_YEARS = 7      # preschool: older children go to school, not the queue
MAX_PREFERENCES = 3


def check_name(raw: str | None, field_: str, errors: list[FieldError], required: bool = True) -> str | None:
    s = " ".join((raw or "").split())
    if not s:
        if required:
            errors.append(_err(field_, "required"))
        return None
    if (long := too_long(field_, s)) is not None:
        errors.append(long)
        return None
    if not _NAME.match(s):
        errors.append(_err(field_, "name_format"))
        return None
    return s


@dataclass(frozen=True)
class ChildStep:
    pin: str
    surname: str
    name: str
    patronymic: str | None
    birth_date: date
    sex: str | None


def _child_identity(data: dict, country: str, today: date, errors: list[FieldError]):
    """The child's PIN and names by the rules of step 1; what breaks one goes to `errors`."""
    pn: PersonalNumber | None = None
    try:
        pn = parse_personal_number(data.get("pin", ""), country, today, "child.pin")
    except RegistrationRefused as e:
        errors.extend(e.errors)
    return (pn, check_name(data.get("surname"), "child.surname", errors),
            check_name(data.get("name"), "child.name", errors),
            check_name(data.get("patronymic"), "child.patronymic", errors, required=False))


def validate_child(data: dict, country: str, today: date) -> ChildStep:
    """Step 1. The birth date comes from the PIN (KG); for a Kazakh IIN the
    decoded date is a hint that the parent may correct."""
    errors: list[FieldError] = []
    pn, surname, name, patronymic = _child_identity(data, country, today, errors)
    born = pn.birth_date if pn else None
    given = data.get("birth_date")
    if given:
        try:
            given_date = given if isinstance(given, date) else date.fromisoformat(str(given))
        except ValueError:
            errors.append(_err("child.birth_date", "date_format"))
            given_date = None
        if given_date is not None and pn is not None:
            if country == "KG" and given_date != pn.birth_date:
                errors.append(_err("child.birth_date", "birth_date_contradicts_pin"))
            elif country == "KZ":
                born = given_date
    if born is None and pn is not None:
        errors.append(_err("child.birth_date", "required"))
    if born is not None:
        if born > today:
            errors.append(_err("child.birth_date", "date_in_future"))
        elif age_in_full_years(born, today) >= MAX_CHILD_AGE_YEARS:
            errors.append(_err("child.pin", "child_too_old", years=MAX_CHILD_AGE_YEARS))
    _refuse_if(errors)
    assert pn is not None and born is not None and surname and name
    return ChildStep(pn.number, surname, name, patronymic, born, pn.sex)


def validate_imported_child(data: dict, country: str, today: date) -> ChildStep:
    """A child whose application a previous system kept and the queue has
    already taken in: PIN, names and birth date by the rules of step 1, but
    not the age limit (the queue keeps such a child with its queue date)."""
    errors: list[FieldError] = []
    pn, surname, name, patronymic = _child_identity(data, country, today, errors)
    given = data.get("birth_date")
    born = given if isinstance(given, date) else None
    if given and born is None:
        try:
            born = date.fromisoformat(str(given))
        except ValueError:
            errors.append(_err("child.birth_date", "date_format"))
    if born is None and not given:
        born = pn.birth_date if pn else None
        if born is None and pn is not None:
            errors.append(_err("child.birth_date", "required"))
    if born is not None and pn is not None:
        if country == "KG" and born != pn.birth_date:
            errors.append(_err("child.birth_date", "birth_date_contradicts_pin"))
        elif born > today:
            errors.append(_err("child.birth_date", "date_in_future"))
    _refuse_if(errors)
    assert pn is not None and born is not None and surname and name
    return ChildStep(pn.number, surname, name, patronymic, born, pn.sex)


@dataclass(frozen=True)
class Address:
    region: str        # territory codes from the address registry
    district: str
    settlement: str
    street: str
    house: str
    flat: str | None = None


@dataclass(frozen=True)
class ParentStep:
    role: str
    surname: str
    name: str
    patronymic: str | None
    pin: str
    document_type: str
    document_number: str
    document_issued_on: date
    address: Address
    phone: str
    email: str


def validate_parent(data: dict, country: str, today: date, child_pin: str | None = None) -> ParentStep:
    """Step 2 without the address registry (the service checks the address
    against it) and without the e-mail code (a separate rule, see above)."""
    errors: list[FieldError] = []
    role = data.get("role") or ""
    if role not in ROLES:
        errors.append(_err("parent.role", "required" if not role else "choice", choices=",".join(ROLES)))
    surname = check_name(data.get("surname"), "parent.surname", errors)
    name = check_name(data.get("name"), "parent.name", errors)
    patronymic = check_name(data.get("patronymic"), "parent.patronymic", errors, required=False)
    pin = None
    try:
        pn = parse_personal_number(data.get("pin", ""), country, today, "parent.pin")
        pin = pn.number
        if pn.birth_date and age_in_full_years(pn.birth_date, today) < 14:
            errors.append(_err("parent.pin", "parent_too_young"))
        if child_pin and pin == child_pin:
            errors.append(_err("parent.pin", "parent_pin_is_child_pin"))
    except RegistrationRefused as e:
        errors.extend(e.errors)
    doc_type = data.get("document_type") or ""
    doc_number = re.sub(r"\s", "", data.get("document_number") or "").upper()
    if doc_type not in DOCUMENT_TYPES:
        errors.append(_err("parent.document_type", "required" if not doc_type else "choice"))
    elif not doc_number:
        errors.append(_err("parent.document_number", "required"))
    elif (long := too_long("parent.document_number", doc_number)) is not None:
        errors.append(long)
    elif country == "KZ" and not _DOCUMENT_NUMBER_KZ[doc_type].match(doc_number):
        errors.append(_err("parent.document_number", f"document_number_{doc_type}"
                           + ("_kz" if doc_type != "other" else "")))
    elif country != "KZ" and not _DOCUMENT_NUMBER[doc_type].match(doc_number):
        errors.append(_err("parent.document_number", f"document_number_{doc_type}"))
    issued: date | None = None
    raw_issued = data.get("document_issued_on")
    if not raw_issued:
        errors.append(_err("parent.document_issued_on", "required"))
    else:
        try:
            issued = raw_issued if isinstance(raw_issued, date) else date.fromisoformat(str(raw_issued))
            if issued > today:
                errors.append(_err("parent.document_issued_on", "date_in_future"))
        except ValueError:
            errors.append(_err("parent.document_issued_on", "date_format"))
    address = None
    a = data.get("address") or {}
    for part in ("region", "district", "settlement", "street", "house"):
        if not str(a.get(part) or "").strip():
            errors.append(_err(f"address.{part}", "required"))
    for part in ("street", "house", "flat"):
        if (long := too_long(f"address.{part}", str(a.get(part) or "").strip())) is not None:
            errors.append(long)
    house = str(a.get("house") or "").strip()
    if house and not lengths.too_long("address.house", house) and not re.fullmatch(r"[0-9A-Za-zА-Яа-яЁё/\-]{1,10}", house):
        errors.append(_err("address.house", "house_format"))
    flat = str(a.get("flat") or "").strip() or None
    if flat and not lengths.too_long("address.flat", flat) and not re.fullmatch(r"[0-9A-Za-zА-Яа-я\-]{1,6}", flat):
        errors.append(_err("address.flat", "flat_format"))
    if not any(e.field.startswith("address.") for e in errors):
        address = Address(str(a["region"]).strip(), str(a["district"]).strip(),
                          str(a["settlement"]).strip(), str(a["street"]).strip(), house, flat)
    phone = email = None
    try:
        phone = normalize_phone(data.get("phone", ""), "parent.phone")
    except RegistrationRefused as e:
        errors.extend(e.errors)
    try:
        email = normalize_email(data.get("email", ""), "parent.email")
    except RegistrationRefused as e:
        errors.extend(e.errors)
    _refuse_if(errors)
    assert surname and name and pin and issued and address and phone and email
    return ParentStep(role, surname, name, patronymic, pin, doc_type, doc_number, issued,
                      address, phone, email)


@dataclass(frozen=True)
class ImportedAccount:
    """A parent's account moved from a previous system: no password; the
    parent activates it with a link asked for by e-mail."""
    surname: str
    name: str
    patronymic: str | None
    pin: str
    phone: str
    email: str


def validate_imported_account(data: dict, country: str, today: date) -> ImportedAccount:
    """The parent's own data as the old portal kept it (no identity document
    or address there): names, PIN, phone and e-mail by the rules of step 2."""
    errors: list[FieldError] = []
    surname = check_name(data.get("surname"), "parent.surname", errors)
    name = check_name(data.get("name"), "parent.name", errors)
    patronymic = check_name(data.get("patronymic"), "parent.patronymic", errors, required=False)
    pin = phone = email = None
    for field_, parse in (("pin", lambda raw: parse_personal_number(raw, country, today, "parent.pin").number),
                          ("phone", lambda raw: normalize_phone(raw, "parent.phone")),
                          ("email", lambda raw: normalize_email(raw, "parent.email"))):
        try:
            value = parse(str(data.get(field_) or ""))
        except RegistrationRefused as e:
            errors.extend(e.errors)
            continue
        if field_ == "pin":
            pin = value
        elif field_ == "phone":
            phone = value
        else:
            email = value
    _refuse_if(errors)
    assert surname and name and pin and phone and email
    return ImportedAccount(surname, name, patronymic, pin, phone, email)


@dataclass(frozen=True)
class ConfirmStep:
    category: str
    language: str                  # language of instruction wanted
    preferences: tuple[str, ...]   # kindergarten ids, best first
    agreement: bool


def validate_confirmation(data: dict, categories: Iterable[str] = DEFAULT_CATEGORIES) -> ConfirmStep:
    """Step 3: category, language of instruction, kindergartens in order of
    preference, and the accepted user agreement."""
    errors: list[FieldError] = []
    categories = tuple(categories)
    category = data.get("category") or ""
    if category not in categories:
        errors.append(_err("category", "required" if not category else "choice"))
    language = data.get("language") or ""
    if language not in INSTRUCTION_LANGUAGES:
        errors.append(_err("language", "required" if not language else "choice"))
    prefs = tuple(p.strip() for p in (data.get("preferences") or []) if p and p.strip())
    if not prefs:
        errors.append(_err("preferences", "required"))
    elif len(prefs) > MAX_PREFERENCES:
        errors.append(_err("preferences", "too_many_preferences", max=MAX_PREFERENCES))
    elif len(set(prefs)) != len(prefs):
        errors.append(_err("preferences", "duplicate_preference"))
    if data.get("agreement") not in (True, "true", "on", "1", 1):
        errors.append(_err("agreement", "agreement_required"))
    _refuse_if(errors)
    return ConfirmStep(category, language, prefs, True)


# --- drafts --------------------------------------------------------------------

STEPS = ("child", "parent", "contacts", "confirm")


@dataclass
class Draft:
    """The application being filled in; saved after every step so that a
    closed browser loses nothing."""
    child: dict = field(default_factory=dict)
    parent: dict = field(default_factory=dict)
    email_verified: str | None = None     # the e-mail address the code proved

    def next_step(self) -> str:
        if not self.child:
            return "child"
        if not self.parent:
            return "parent"
        if self.email_verified != self.parent.get("email"):
            return "contacts"
        return "confirm"

    def may_open(self, step: str) -> bool:
        return STEPS.index(step) <= STEPS.index(self.next_step())


# --- accounts ------------------------------------------------------------------

ACTIVATION_TTL = timedelta(days=3)
SESSION_TTL = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10
ACTIVATION_RESEND_AFTER = timedelta(seconds=60)
ACTIVATION_MAX_PER_HOUR = 5


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens are long random strings, so a plain SHA-256 is enough to keep a
    leaked table useless."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_new_password(password: str, login: str, field_: str = "password") -> None:
    p = password or ""
    if not p:
        raise RegistrationRefused([_err(field_, "required")])
    if len(p) < MIN_PASSWORD_LENGTH:
        raise RegistrationRefused([_err(field_, "password_too_short", min=MIN_PASSWORD_LENGTH)])
    _refuse_if_too_long(field_, p)
    if p.lower() in (login or "").lower() or len(set(p)) < 4:
        raise RegistrationRefused([_err(field_, "password_too_weak")])


def activation_link_allowed(issued: Iterable[datetime], now: datetime) -> bool:
    """A new activation link for an account at most once a minute and
    ACTIVATION_MAX_PER_HOUR times an hour (counting the one sent on
    submission): asking for links must not flood a parent's mailbox."""
    recent = [t for t in issued if now - t < timedelta(hours=1)]
    return len(recent) < ACTIVATION_MAX_PER_HOUR and all(now - t >= ACTIVATION_RESEND_AFTER for t in recent)
