"""What the portal says about a refused field: the field's label and the
rule it broke, both as gettext msgids (translated in locale/*.po)."""
from __future__ import annotations

from collections.abc import Callable


def N_(message: str) -> str:
    """Marks a msgid for extraction; translated where it is shown."""
    return message


FIELD_LABELS = {
    "child.pin": N_("Child's personal identification number (PIN)"),
    "child.surname": N_("Child's surname"),
    "child.name": N_("Child's name"),
    "child.patronymic": N_("Child's patronymic"),
    "child.birth_date": N_("Date of birth"),
    "child": N_("Child's data"),
    "parent.role": N_("Who you are to the child"),
    "parent.surname": N_("Surname"),
    "parent.name": N_("Name"),
    "parent.patronymic": N_("Patronymic"),
    "parent.pin": N_("Your personal identification number (PIN)"),
    "parent.document_type": N_("Identity document"),
    "parent.document_number": N_("Document number"),
    "parent.document_issued_on": N_("Date of issue"),
    "parent.phone": N_("Phone"),
    "parent.email": N_("E-mail"),
    "parent": N_("Parent's data"),
    "address.region": N_("Region"),
    "address.district": N_("District"),
    "address.settlement": N_("Settlement"),
    "address.street": N_("Street"),
    "address.house": N_("House"),
    "address.flat": N_("Flat"),
    "code": N_("Confirmation code"),
    "category": N_("Category"),
    "language": N_("Language of instruction"),
    "preferences": N_("Kindergartens"),
    "notification": N_("Notification"),
    "preferences.0": N_("Kindergarten, first choice"),
    "agreement": N_("User agreement"),
    "draft": N_("Application"),
    "token": N_("Activation link"),
    "password": N_("Password"),
    "password2": N_("Password again"),
    "email": N_("E-mail"),
    "login": N_("Login (e-mail)"),
    "session": N_("Session"),
    "state": N_("Tunduk sign-in"),
    "pin": N_("Your personal identification number (PIN)"),
    "provider": N_("Tunduk sign-in"),
    "referral": N_("Direction"),
    "application": N_("Application"),
    "application_id": N_("Application"),
    "request": N_("Request"),
}

ERRORS = {
    "required": N_("this field is required."),
    "too_long": N_("too long: at most %(max)s characters (you entered %(length)s)."),
    "pin_format": N_("must have %(length)s digits."),
    "pin_sex_digit": N_("must start with 1 (female) or 2 (male)."),
    "pin_impossible_date": N_("digits 2 to 9 must be a real date of birth (DDMMYYYY)."),
    "pin_future_date": N_("the date of birth in it is in the future."),
    "iin_check_digit": N_("the check digit does not match; check the number."),
    "child_too_old": N_("the child is %(years)s years old or older and goes to school, not to the kindergarten queue."),
    "child_already_registered": N_("this child is already in the queue. A child can be registered only once."),
    "birth_date_contradicts_pin": N_("does not match the date in the PIN."),
    "date_format": N_("enter a date as YYYY-MM-DD."),
    "date_in_future": N_("cannot be in the future."),
    "name_format": N_("use letters only (a hyphen, space or apostrophe between words is fine)."),
    "choice": N_("choose one of the options."),
    "document_number_id_card": N_("an ID card number looks like ID1234567."),
    "document_number_passport": N_("a passport number looks like AN1234567."),
    "document_number_other": N_("use 5 to 20 letters or digits."),
    "document_number_id_card_kz": N_("an identity card number has 9 digits, for example 012345678."),
    "document_number_passport_kz": N_("a passport number looks like N12345678."),
    "iin_century_digit": N_("the 7th digit (century and sex) must be 1 to 6."),
    "parent_too_young": N_("the person who applies must be at least 14 years old."),
    "parent_pin_is_child_pin": N_("this is the child's PIN; enter your own."),
    "house_format": N_("enter the house number, for example 12 or 12A."),
    "flat_format": N_("enter the flat number."),
    "phone_format": N_("enter a mobile number starting with +996 or +7."),
    "email_format": N_("enter an e-mail address such as name@example.kg."),
    "address_unknown_region": N_("choose a region from the list."),
    "address_unknown_district": N_("choose a district of the chosen region."),
    "address_unknown_settlement": N_("choose a settlement of the chosen district."),
    "address_unknown_street": N_("this street is not in the address registry. Check the official name of the street at a public service centre or the State Registration Service: the registry may know it under another name."),
    "code_resend_too_soon": N_("a code was just sent; you can ask for a new one in %(seconds)s seconds."),
    "code_too_many_sends": N_("too many codes were sent; try again in an hour."),
    "code_not_requested": N_("press \"Get code\" first."),
    "code_format": N_("the code has %(length)s digits."),
    "code_expired": N_("the code has expired (codes are valid for 10 minutes). Ask for a new one."),
    "code_wrong": N_("the code is wrong. Attempts left: %(left)s."),
    "code_too_many_attempts": N_("too many wrong attempts. Ask for a new code."),
    "too_many_preferences": N_("choose at most %(max)s kindergartens."),
    "duplicate_preference": N_("the same kindergarten is chosen twice."),
    "kindergarten_unknown": N_("kindergarten %(kindergarten)s is not in the register of kindergartens; "
                               "choose one from the list."),
    "agreement_required": N_("tick the box to accept the user agreement."),
    "step_not_done": N_("fill in this step first."),
    "draft_already_submitted": N_("this application has already been submitted."),
    "activation_invalid": N_("the link is invalid, already used or expired. Ask for a new one."),
    "password_too_short": N_("use at least %(min)s characters."),
    "password_too_weak": N_("this password is too easy to guess."),
    "password_mismatch": N_("the two passwords differ."),
    "login_failed": N_("wrong login or password."),
    "login_throttled": N_("too many wrong passwords from this device; try again in %(seconds)s seconds. "
                          "The account is not locked."),
    "session_invalid": N_("please log in again."),
    "sso_unavailable": N_("sign-in through Tunduk is not available now."),
    "sso_failed": N_("sign-in through Tunduk failed; try again."),
    "sso_no_application": N_("no application was submitted with your PIN. Submit an application first."),
    # The queue's refusals a parent's act can meet (services/queue refusals).
    "pin_taken": N_("this child is already in the queue. A child can be registered only once."),
    "entry_holds_referral": N_("the child holds a direction: cancel the direction first."),
    "entry_enrolled": N_("the child is already enrolled in a kindergarten."),
    "entry_unknown": N_("this application is not in the queue."),
    # Why an erasure is refused: the legal reason to keep the records (services/queue/domain/erasure.py).
    "erasure_in_queue": N_("the child is in the queue: its data keeps the place and the queue date. Remove the "
                           "application from the queue first, then ask again."),
    "erasure_holds_referral": N_("the child holds a direction: the kindergarten keeps the place for it in its records "
                                 "until the direction ends."),
    "erasure_enrolled": N_("the child is enrolled: the kindergarten must keep the enrolment record while the child "
                           "attends and for the period the law sets after it leaves."),
    "erasure_within_retention": N_("the record of a child who had a place must be kept until %(until)s; it is "
                                   "anonymised then without a request."),
    "erasure_not_closed": N_("the application is still being processed; nothing can be erased yet."),
    # The referral workflow's refusals of a parent's act (workflows/rules.py).
    "referral_closed": N_("this direction is no longer open."),
    # Not a refusal: the allocation has issued the direction and its workflow
    # is not started yet (workflows.client.ReferralNotStarted, a 503).
    "referral_not_started": N_("this direction was issued moments ago and is still being set up; nothing was "
                               "changed, try again in %(seconds)s seconds."),
    "window_ended": N_("the time for this has run out."),
    "already_extended": N_("the direction has already been extended once."),
    "not_extension_day": N_("an extension may be asked for only on the last working day of the confirmation "
                            "window."),
    "extend_no_confirmation_window": N_("only the time for confirming a privilege can be extended."),
    "extend_already_confirmed": N_("only the time for confirming a privilege can be extended."),
    "not_found": N_("not found."),
    "forbidden": N_("this is not allowed for you."),
    "rate_limited": N_("too many requests; wait a minute and try again."),
    "unavailable": N_("the service is temporarily unavailable; try again later."),
    "refused": N_("the request was refused."),
}


# In Kazakhstan the personal number is the IIN (12 digits).
FIELD_LABELS_KZ = {
    "child.pin": N_("Child's individual identification number (IIN)"),
    "parent.pin": N_("Your individual identification number (IIN)"),
    "pin": N_("Your individual identification number (IIN)"),
}


def describe(error: dict, translate: Callable[[str], str], country: str = "KG") -> dict:
    """One field error from a service, in the parent's language:
    {"field", "label", "message", "text"} where text is "Label: message"."""
    field = str(error.get("field") or "request")
    code = str(error.get("code") or "")
    params = error.get("params") or {}
    labels = {**FIELD_LABELS, **FIELD_LABELS_KZ} if country == "KZ" else FIELD_LABELS
    label = translate(labels.get(field) or labels.get(field.split(".")[0]) or labels["request"])
    if code in ERRORS:
        try:
            message = translate(ERRORS[code]) % params
        except (KeyError, TypeError, ValueError):
            message = translate(ERRORS[code])
    else:
        # A service without codes (e.g. a queue refusal): its own words.
        message = str(error.get("message") or translate(ERRORS["refused"]))
    return {"field": field, "code": code, "label": label, "message": message, "text": f"{label}: {message}"}
