"""The trust boundary's core (kezek/trust.py): service tokens, who may vouch
for whom, and permissions declared as data and checked by one dependency."""
from __future__ import annotations

import json
import time

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from joserfc import jwt

from kezek import trust
from kezek.trust import (
    DISTRICT, PUBLIC, Access, ServiceKeys, Unauthenticated, allow, parent, parent_principal,
    declared_routes, service_principal, services, staff, staff_principal,
)
from kezek.web import create_service_app

KEYS = ServiceKeys.derived("test-secret")


def test_a_service_token_names_the_caller_and_the_actor_it_vouches_for():
    token = KEYS.sign("gateway", "queue", parent_principal("42"))
    p = KEYS.verify(token, "queue")
    assert (p.actor, p.role, p.via, p.family) == ("parent:42", "parent", "gateway", "42")


def test_a_service_acting_for_itself_is_service_colon_name():
    p = KEYS.verify(KEYS.sign("notifications", "queue"), "queue")
    assert p == service_principal("notifications") and p.service == "notifications"


def test_a_token_made_for_another_service_is_refused():
    token = KEYS.sign("gateway", "registration", parent_principal("42"))
    with pytest.raises(Unauthenticated, match="another service"):
        KEYS.verify(token, "queue")


def test_an_expired_token_is_refused():
    token = KEYS.sign("gateway", "queue", seconds=-120)
    with pytest.raises(Unauthenticated, match="expired"):
        KEYS.verify(token, "queue")


def test_only_the_gateway_may_vouch_for_a_parent():
    token = KEYS.sign("notifications", "queue", parent_principal("42"))
    with pytest.raises(Unauthenticated, match="may not act for a parent"):
        KEYS.verify(token, "queue")


def test_only_the_staff_pages_may_vouch_for_staff():
    assert KEYS.verify(KEYS.sign("verification", "queue", staff_principal(7, "admin")), "queue").role == "admin"
    with pytest.raises(Unauthenticated):
        KEYS.verify(KEYS.sign("gateway", "queue", staff_principal(7, "admin")), "queue")


def _forge(caller_key: str, claims: dict) -> str:
    key = KEYS.signing[caller_key]
    now = int(time.time())
    base = {"aud": "queue", "iat": now, "nbf": now, "exp": now + 60, "jti": "x"}
    return jwt.encode({"alg": "Ed25519", "kid": key.kid}, {**base, **claims}, key, algorithms=["Ed25519"])


def test_a_service_cannot_sign_in_the_name_of_another():
    token = _forge("notifications", {"iss": "gateway", "sub": "parent:1", "role": "parent", "family": "1"})
    with pytest.raises(Unauthenticated, match="issuer does not own its key"):
        KEYS.verify(token, "queue")


def test_a_service_cannot_claim_to_be_another_service():
    token = _forge("notifications", {"iss": "notifications", "sub": "service:queue", "role": "service"})
    with pytest.raises(Unauthenticated, match="only as itself"):
        KEYS.verify(token, "queue")


def test_a_parent_token_must_name_the_family_it_acts_for():
    token = _forge("gateway", {"iss": "gateway", "sub": "parent:1", "role": "parent", "family": "2"})
    with pytest.raises(Unauthenticated, match="names the family"):
        KEYS.verify(token, "queue")


def test_a_token_signed_with_a_key_of_another_deployment_is_refused():
    other = ServiceKeys.derived("another-secret")
    with pytest.raises(Unauthenticated):
        KEYS.verify(other.sign("gateway", "queue"), "queue")


def test_keys_from_a_folder_verify_across_a_rotation(tmp_path):
    trust.generate_folder(tmp_path)
    before = ServiceKeys.from_folder(tmp_path)
    old_token = before.sign("gateway", "queue")
    trust.generate_folder(tmp_path, ["gateway"])          # a new gateway key; the old one stays public
    after = ServiceKeys.from_folder(tmp_path)
    assert after.verify(old_token, "queue").service == "gateway"
    new_token = after.sign("gateway", "queue")
    assert after.verify(new_token, "queue").service == "gateway"
    assert json.loads((tmp_path / "jwks.json").read_text())["keys"][-1]["kezek_caller"] == "gateway"


def test_a_private_key_missing_from_the_public_set_is_refused_at_start(tmp_path):
    trust.generate_folder(tmp_path, ["queue"])
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": []}))
    with pytest.raises(ValueError, match="not in jwks.json"):
        ServiceKeys.from_folder(tmp_path)


def test_the_keys_command_writes_a_folder_a_service_can_load(tmp_path):
    from kezek.commands.keys import main

    assert main(["generate", str(tmp_path / "k")]) == 0
    keys = ServiceKeys.from_folder(tmp_path / "k")
    assert set(keys.signing) == set(trust.CALLERS)


# ------------------------------------------------------------ the guard

def make_app():
    app = create_service_app("queue", authenticate=trust.service_token_authenticator(KEYS, "queue"))
    r = APIRouter()

    @r.get("/entries/{family}")
    def entry(family: str, access: Access = allow(parent(), staff("caseworker", scope=DISTRICT),
                                                  services("registration"))):
        access.check(family=family, district="Bishkek/Leninsky")
        return {"actor": access.actor}

    @r.get("/public", dependencies=[PUBLIC])
    def public():
        return {"ok": True}

    @r.get("/undeclared")
    def undeclared():
        return {"oops": True}

    app.include_router(r)
    return app


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def test_an_anonymous_call_to_a_guarded_route_is_401_with_a_problem():
    r = TestClient(make_app()).get("/entries/1")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "unauthenticated"


def test_a_role_without_a_grant_is_403():
    token = KEYS.sign("verification", "queue", staff_principal(1, "commission"))
    r = TestClient(make_app()).get("/entries/1", headers=bearer(token))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_a_service_not_named_by_the_grant_is_403():
    r = TestClient(make_app()).get("/entries/1", headers=bearer(KEYS.sign("notifications", "queue")))
    assert r.status_code == 403


def test_a_parent_reaches_their_own_family_and_the_audit_actor_is_verified():
    token = KEYS.sign("gateway", "queue", parent_principal("1"))
    r = TestClient(make_app()).get("/entries/1", headers={**bearer(token), "x-actor": "admin:forged"})
    assert r.status_code == 200 and r.json() == {"actor": "parent:1"}


def test_another_familys_record_is_not_found_not_forbidden():
    token = KEYS.sign("gateway", "queue", parent_principal("1"))
    r = TestClient(make_app()).get("/entries/2", headers=bearer(token))
    assert r.status_code == 404


def test_a_caseworker_reaches_only_their_district():
    app = TestClient(make_app())
    mine = KEYS.sign("verification", "queue", staff_principal(5, "caseworker", district="Bishkek/Leninsky"))
    theirs = KEYS.sign("verification", "queue", staff_principal(6, "caseworker", district="Osh/Central"))
    assert app.get("/entries/9", headers=bearer(mine)).status_code == 200
    assert app.get("/entries/9", headers=bearer(theirs)).status_code == 404


def test_a_caseworker_without_a_district_holds_no_district_grant():
    token = KEYS.sign("verification", "queue", staff_principal(5, "caseworker"))
    assert TestClient(make_app()).get("/entries/9", headers=bearer(token)).status_code == 403


def test_a_public_route_needs_no_token_and_a_bad_token_is_still_refused():
    app = TestClient(make_app())
    assert app.get("/public").status_code == 200
    assert app.get("/health").status_code == 200
    assert app.get("/entries/1", headers=bearer("not-a-token")).status_code == 401


def test_every_route_declares_its_permission_or_is_found_out():
    found = {path: permission for path, _methods, permission in declared_routes(make_app())}
    assert found["/undeclared"] is None
    assert found["/public"].public and found["/health"].public
    assert found["/entries/{family}"].describe() == "parent@family, caseworker@district, service:registration"


def test_the_openapi_declares_the_bearer_scheme_on_guarded_routes():
    spec = make_app().openapi()
    scheme = spec["components"]["securitySchemes"]["ServiceToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and scheme["bearerFormat"] == "JWT"
    assert spec["paths"]["/entries/{family}"]["get"]["security"] == [{"ServiceToken": []}]
    # A public route asks for nothing (no placeholder scheme in "Authorize").
    assert "security" not in spec["paths"]["/public"]["get"]
    assert set(spec["components"]["securitySchemes"]) == {"ServiceToken"}
