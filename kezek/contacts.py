"""A parent's phone and e-mail address, checked by well-kept libraries:
`phonenumbers` (Google's libphonenumber metadata: which numbers are
Kyrgyz or Kazakh mobiles, in which local forms) and `email-validator`
(the syntax of RFC 5321/5322 addresses; no DNS lookup, nothing reaches the
network). Each refusal is a `ContactError` with a stable code, which a
service turns into its own field error (as kezek/pin.py does for PINs).

A phone is written once, in E.164 (`+996555123456`), whatever the parent
typed: the SMS provider, the rate limit per phone and the search by phone
all see one number.
"""
from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneNumberFormat, PhoneNumberType

__all__ = ["ContactError", "COUNTRIES", "phone_e164", "email_address"]

# A parent of either country may register in the other's deployment: a
# number is read first as Kyrgyz, then as Kazakh (their local forms do not
# overlap: 0XXX XXX XXX in Kyrgyzstan, 8 7XX XXX XX XX in Kazakhstan).
COUNTRIES = ("KG", "KZ")
# Digits and what people put between them; letters are refused (the library
# would read 1-800-FLOWERS as digits, and "ext." as an extension).
_PHONE_CHARACTERS = re.compile(r"^\+?[\d\s\-().]+$")
_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
MAX_PHONE_LENGTH = 40
MAX_EMAIL_LENGTH = 254


class ContactError(ValueError):
    """`code`: required, phone_format or email_format."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(detail or code)
        self.code = code


def phone_e164(raw: str | None, countries: tuple[str, ...] = COUNTRIES) -> str:
    """A mobile number of one of `countries` in E.164. Accepted as typed:
    +996 555 123 456, 996555123456, 00996 555 123456, 0555 12-34-56,
    555 123 456 (Kyrgyzstan); +7 (701) 123-45-67, 8 701 123 45 67,
    8 10 996 ... (Kazakhstan's international prefix), 701 123 4567.
    Refused: landlines, other countries' numbers (+7 9XX is Russia), wrong
    lengths, extensions."""
    text = (raw or "").strip()
    if not text:
        raise ContactError("required")
    if len(text) > MAX_PHONE_LENGTH or not _PHONE_CHARACTERS.match(text):
        raise ContactError("phone_format", "not a phone number")
    for region in countries:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if (phonenumbers.is_valid_number(number) and number.extension is None
                and phonenumbers.region_code_for_number(number) in countries
                and phonenumbers.number_type(number) in _MOBILE):
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    raise ContactError("phone_format", f"not a mobile number of {', '.join(countries)}")


def email_address(raw: str | None) -> str:
    """The address as it will be written to: the domain in lower case (and
    in ASCII, an internationalised domain as IDNA), the local part as
    typed. Refused: bad syntax, an address over 254 characters, a domain without a dot or of a special use
    (localhost, .local, .invalid ...), non-ASCII local parts (the mail
    relay is not assumed to speak SMTPUTF8)."""
    text = (raw or "").strip()
    if not text:
        raise ContactError("required")
    if len(text) > MAX_EMAIL_LENGTH:
        raise ContactError("email_format", "longer than 254 characters")
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ContactError("email_format", str(exc)) from None
    return checked.ascii_email or checked.normalized
