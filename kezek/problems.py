"""One error shape for every service: RFC 9457 problem details
(`application/problem+json`), raised as exceptions and answered by the
handlers of `kezek.web`:

    {"type": "urn:kezek:problem:<code>", "title": ..., "status": 409,
     "code": "<code>", "detail": "<field>: <message>",
     "errors": [{"field": ..., "code": ..., "message": ..., "params": {...}}]}

A business refusal is a `DomainError`: a code with parameters and the field it
concerns; `kezek.refusals` holds the English text of each code for API
clients, and pages render the code in the reader's language.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kezek import refusals

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_OUTAGE = 5


class Problem(Exception):
    """An answer other than success, as RFC 9457 problem details. A kind of
    problem is a subclass declaring its `status`, `code` and `title` once, as
    class keywords; an instance may name the `field` it concerns and carry
    `params` for the message's text.

    Every kind is in `Problem.kinds` under its code, and a second kind with a
    code already taken is refused at import: a code names one type, whose
    title is the same whoever raises it (RFC 9457). `GENERAL` names the kind
    of each status, which `of_status` gives an error of the framework."""

    status = 400
    code = "bad_request"
    title = "Bad request"
    kinds: ClassVar[dict[str, type[Problem]]] = {}

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None, title: str | None = None,
                          **kw: Any):
        super().__init_subclass__(**kw)
        if status is not None:
            cls.status = status
        if title is not None:
            cls.title = title
        if code is not None:
            taken = Problem.kinds.get(code)
            if taken is not None:
                raise TypeError(f"problem code {code!r} is {taken.__qualname__}'s already")
            cls.code = code
            Problem.kinds[code] = cls

    def __init__(self, code: str | None = None, *, field: str | None = None, detail: str | None = None,
                 status: int | None = None, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, errors: list[dict] | None = None):
        self.code = code or type(self).code
        self.field = field
        self.params = dict(params or {})
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        self.detail = detail or self.text()
        self.extra_errors = errors
        super().__init__(self.detail)

    def text(self) -> str:
        message = refusals.english(self.code, self.params) or self.title
        return f"{self.field}: {message}" if self.field and not message.startswith(f"{self.field}:") else message

    def errors(self) -> list[dict]:
        if self.extra_errors is not None:
            return self.extra_errors
        if not self.field:
            return []
        return [{"field": self.field, "code": self.code, "message": self.detail, "params": self.params}]

    def body(self, instance: str | None = None) -> dict:
        out = {"type": f"urn:kezek:problem:{self.code}", "title": self.title, "status": self.status,
               "code": self.code, "detail": self.detail, "errors": self.errors()}
        if instance:
            out["instance"] = instance
        return out


Problem.kinds[Problem.code] = Problem


class DomainError(Problem, status=409, code="refused", title="Refused by the rules"):
    """A business refusal: a code (see kezek.refusals), the field, the
    parameters of its message. For code not yet converted, a plain English
    sentence is accepted as the first argument (its code is `refused`)."""

    def __init__(self, code_or_message: str = "refused", *, field: str | None = None,
                 status_code: int | None = None, params: Mapping[str, Any] | None = None, **kw):
        legacy_status = getattr(type(self), "status_code", None)    # subclasses that set status_code = 404
        if isinstance(legacy_status, int) and status_code is None:
            status_code = legacy_status
        if refusals.is_code(code_or_message):
            super().__init__(code_or_message, field=field, status=status_code, params=params, **kw)
        else:
            super().__init__("refused", field=field, status=status_code, params=params,
                             detail=code_or_message, **kw)

    @property
    def message(self) -> str:
        return self.detail

    @property
    def status_code(self) -> int:
        return self.status


class NotFound(Problem, status=404, code="not_found", title="Not found"):
    """No such record, or one the caller may not know of."""


class MethodNotAllowed(Problem, status=405, code="method_not_allowed", title="Method not allowed"):
    """The address exists, not with this HTTP method."""


class TooLarge(Problem, status=413, code="body_too_large", title="The request body is too large"):
    """Refused before it is read whole (kezek.web's body limit)."""


class UnsupportedMediaType(Problem, status=415, code="unsupported_media_type", title="Unsupported media type"):
    """A body in a format the route does not take."""


class Unauthenticated(Problem, status=401, code="unauthenticated", title="Sign-in or a service token is required"):
    """No caller: neither a signed-in person nor a valid service token."""


class Forbidden(Problem, status=403, code="forbidden", title="Not allowed for this role"):
    """A known caller whose role may not do this."""


class Internal(Problem, status=500, code="internal", title="Internal error"):
    """A bug: logged with the request id, which the answer names."""


class Unavailable(Problem, status=503, code="unavailable", title="Temporarily unavailable"):
    """A dependency (database, broker, Temporal) does not answer."""

    def __init__(self, *args, retry_after: int = RETRY_AFTER_OUTAGE, **kw):
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(*args, **kw)


class TooManyRequests(Problem, status=429, code="rate_limited", title="Too many requests"):
    """Over a rate limit; Retry-After says when to come back."""

    def __init__(self, retry_after: float, **kw):
        kw.setdefault("headers", {"Retry-After": str(max(1, int(retry_after + 0.999)))})
        super().__init__(**kw)


class FieldErrorModel(BaseModel):
    field: str
    code: str
    message: str
    params: dict[str, Any] = Field(default_factory=dict)


class ProblemModel(BaseModel):
    """RFC 9457 problem details, as every Kezek service answers errors."""

    type: str = Field(examples=["urn:kezek:problem:not_found"])
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldErrorModel] = Field(default_factory=list)
    instance: str | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemModel, "content": {PROBLEM_JSON: {}}, "description": text}
    for code, text in ((400, "Bad request"), (401, "Not signed in, or no valid service token"),
                       (403, "Not allowed for this role"), (404, "Not found (or outside the caller's scope)"),
                       (409, "Refused by the rules"), (413, "Body too large"),
                       (422, "Invalid input: each error names its field"),
                       (429, "Too many requests (see Retry-After)"),
                       (503, "A dependency is unavailable (see Retry-After)"))
}


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    return JSONResponse(problem.body(instance), status_code=problem.status, headers=problem.headers or None,
                        media_type=PROBLEM_JSON)


def field_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
        name = ".".join(loc) or "(body)"
        out.append({"field": name, "code": str(err.get("type", "invalid")),
                    "message": f"{name}: {err.get('msg', 'invalid')}", "params": {}})
    return out


class InvalidInput(Problem, status=422, code="invalid_input", title="Invalid input"):
    """A request its route's schema refuses; `errors` names each field."""


# The kind an answer of a status is when nothing more precise is known (an
# error of the framework, a page's error in the gateway): its code and title.
GENERAL: dict[int, type[Problem]] = {
    kind.status: kind for kind in (Problem, Unauthenticated, Forbidden, NotFound, MethodNotAllowed, DomainError,
                                   TooLarge, UnsupportedMediaType, InvalidInput, TooManyRequests, Internal,
                                   Unavailable)}


def of_status(status: int, detail: str | None = None, headers: Mapping[str, str] | None = None) -> Problem:
    """An HTTP error of the framework (no route, wrong method, a limit) as
    problem details of the general kind of its status: its code and title."""
    kind = GENERAL.get(status)
    problem = Problem(kind.code if kind else "http_error", status=status, detail=detail, headers=headers)
    problem.title = kind.title if kind else "Error"
    return problem
