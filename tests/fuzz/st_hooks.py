"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz.st_hooks): each request
carries the credentials of a caller its route grants, read from the JSON file
named by KEZEK_FUZZ_AUTH ({"GET /api/v1/x/{id}": "Bearer ...", "*": ...});
without that file, requests go anonymous."""
from __future__ import annotations

import json
import os

import schemathesis

_AUTH: dict[str, str] | None = None


def _auth() -> dict[str, str]:
    global _AUTH
    if _AUTH is None:
        path = os.environ.get("KEZEK_FUZZ_AUTH")
        _AUTH = json.loads(open(path).read()) if path else {}
    return _AUTH


@schemathesis.hook
def before_call(ctx, case, kwargs):
    auth = _auth()
    value = auth.get(f"{case.operation.method.upper()} {case.operation.path}") or auth.get("*")
    if value:
        case.headers = dict(case.headers or {})
        name, _, secret = value.partition("=")
        if name == "cookie":
            case.cookies = {**(case.cookies or {}), **json.loads(secret)}
        else:
            case.headers["Authorization"] = value
