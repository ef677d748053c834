"""Registration's refusals as RFC 9457 problem details (kezek.problems): the
codes with their English text for API clients (the portal shows its own
translations, services/gateway/locale), and the handlers that answer them."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from kezek.contracts.registration import step_fields
from kezek.problems import InvalidInput, Problem, TooManyRequests, Unauthenticated, field_errors, problem_response
from services.registration import domain as d
from services.registration.service import NotFound, Unauthorized

# Registration's wording of each code, for API clients. Codes are shared
# with other services (a PIN's come from kezek/pin.py; the queue refuses an
# unknown kindergarten too) whose wording differs, so these stay out of the
# process-wide catalogue of kezek.refusals, which holds one text per code.
MESSAGES = {
    "required": "is required", "too_long": "is too long: at most {max} characters",
    "pin_format": "must have {length} digits",
    "pin_sex_digit": "must start with 1 (female) or 2 (male)",
    "pin_impossible_date": "does not contain a real birth date",
    "pin_future_date": "contains a birth date in the future",
    "iin_check_digit": "check digit does not match", "child_too_old": "the child is {years} or older",
    "child_already_registered": "this child is already registered in the queue",
    "birth_date_contradicts_pin": "does not match the PIN", "date_format": "must be a date (YYYY-MM-DD)",
    "date_in_future": "cannot be in the future", "name_format": "must contain letters only",
    "choice": "is not one of the allowed values", "document_number_id_card": "must look like ID1234567",
    "document_number_passport": "must look like AN1234567",
    "document_number_other": "must be 5-20 letters or digits",
    "document_number_id_card_kz": "must have 9 digits", "document_number_passport_kz": "must look like N12345678",
    "iin_century_digit": "the 7th digit must be 1 to 6", "parent_too_young": "is too young",
    "parent_pin_is_child_pin": "is the child's PIN", "house_format": "is not a house number",
    "flat_format": "is not a flat number", "phone_format": "must be a +996 or +7 mobile number",
    "email_format": "is not an e-mail address",
    "address_unknown_region": "is not in the address registry",
    "address_unknown_district": "is not a district of the chosen region",
    "address_unknown_settlement": "is not a settlement of the chosen district",
    "address_unknown_street": "is not in the address registry; check the street's official name at a "
                              "public service centre",
    "code_resend_too_soon": "wait {seconds} s before asking for a new code",
    "code_too_many_sends": "too many codes asked for; try again later",
    "code_not_requested": "ask for a code first", "code_format": "must be {length} digits",
    "code_expired": "has expired; ask for a new one", "code_wrong": "is wrong; {left} attempts left",
    "code_too_many_attempts": "too many wrong attempts; ask for a new code",
    "too_many_preferences": "at most {max}", "duplicate_preference": "lists a kindergarten twice",
    "kindergarten_unknown": "kindergarten {kindergarten} is not in the register",
    "agreement_required": "the user agreement must be accepted", "step_not_done": "finish this step first",
    "draft_already_submitted": "this application was already submitted",
    "activation_invalid": "the link is invalid, used or expired",
    "password_too_short": "must have at least {min} characters", "password_too_weak": "is too easy to guess",
    "login_failed": "wrong login or password",
    "login_throttled": "too many wrong passwords from here; try again in {seconds} s",
    "session_invalid": "sign in again",
    "sso_unavailable": "single sign-on is not configured", "sso_failed": "single sign-on failed",
    "sso_no_application": "no application was submitted with your PIN; apply first",
    "id_too_long": "is longer than 36 characters", "account_id_taken": "is taken by another account",
    "email_taken": "belongs to another account", "application_id_taken": "is taken by another application",
    "account_unknown": "is not an account",
}

THROTTLE_CODES = {"code_resend_too_soon", "code_too_many_sends", "code_too_many_attempts"}
CONFLICT_CODES = {"child_already_registered", "draft_already_submitted"}



def describe(e: d.FieldError) -> dict:
    params = dict(e.params)
    try:
        text = MESSAGES.get(e.code, e.code).format(**params)
    except (KeyError, IndexError, ValueError):
        text = MESSAGES.get(e.code, e.code)
    return {"field": e.field, "code": e.code, "params": params, "message": f"{e.field}: {text}"}


def refused(exc: d.RegistrationRefused) -> Problem:
    errors = [describe(e) for e in exc.errors]
    codes = {e.code for e in exc.errors}
    status = 429 if codes & THROTTLE_CODES else 409 if codes & CONFLICT_CODES else 422
    first = exc.errors[0]
    detail = "; ".join(e["message"] for e in errors)
    if status == 429:
        seconds = int(dict(first.params).get("seconds", 60))
        return TooManyRequests(seconds, detail=detail, errors=errors)
    problem = Problem(first.code, status=status, detail=detail, errors=errors, field=first.field)
    problem.title = "Invalid input" if status == 422 else "Refused by the rules"
    return problem


def install(app: FastAPI) -> None:
    @app.exception_handler(d.RegistrationRefused)
    async def registration_refused(request: Request, exc: d.RegistrationRefused):
        return problem_response(refused(exc), request.url.path)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        p = Problem("not_found", status=404, field=str(exc))
        p.title = "Not found"
        return problem_response(p, request.url.path)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized):
        field = "session" if exc.code == "session_invalid" else "login"
        params = {"seconds": exc.retry_after} if exc.retry_after else {}
        text = f"{field}: " + MESSAGES[exc.code].format(**params)
        if exc.retry_after:
            p: Problem = TooManyRequests(exc.retry_after, code=exc.code, field=field, params=params, detail=text)
        else:
            p = Unauthenticated(exc.code, field=field, headers={"WWW-Authenticate": "Bearer"}, detail=text)
        return problem_response(p, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError):
        errors = step_fields(getattr(request.scope.get("route"), "path", ""), field_errors(exc))
        problem = InvalidInput(detail="; ".join(e["message"] for e in errors), errors=errors)
        return problem_response(problem, request.url.path)
