"""Single sign-on through the national identity provider (Tunduk ESI), against
a small OpenID Connect provider that the test starts on a local port: the
authorization code flow with PKCE, the ID token checked by its signature,
issuer, audience, expiry, nonce and algorithm, keys fetched again when the
provider rotates them, and the account found by the parent PIN the provider
vouches for (the relying party is kezek/oidc.py, on Authlib)."""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from kezek.infra.procs import free_port, wait_until
from tests.fakes.gateway import Stack

CLIENT_ID, CLIENT_SECRET = "kezek-portal", "s3cret"
PARENT_PIN = "11203199000123"


class LocalOidcProvider:
    """Just enough of an OpenID provider: discovery, authorize (the person is
    already signed in as `person`), token with PKCE, JWKS. `tamper` breaks
    one property of the next ID tokens, for the refusal tests."""

    def __init__(self):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.person = {"sub": "tunduk-0001", "pin": PARENT_PIN, "given_name": "Айгүл"}
        self.tamper: str | None = None
        self.jwks_fetched = 0
        self.codes: dict[str, dict] = {}
        self.app = self._app()

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"]}

        @app.get("/jwks")
        def jwks():
            self.jwks_fetched += 1
            return {"keys": [self.key.as_dict(private=False)]}

        @app.get("/authorize")
        def authorize(request: Request):
            q = request.query_params
            if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code" \
                    or q.get("code_challenge_method") != "S256":
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"redirect_uri": q["redirect_uri"], "challenge": q["code_challenge"],
                                "nonce": q["nonce"], "person": dict(self.person)}
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}",
                                    status_code=302)

        @app.post("/token")
        def token(grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(),
                  code_verifier: str = Form(), authorization: str = Header("")):
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            grant = self.codes.pop(code, None)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
            if authorization != expected or grant is None or grant_type != "authorization_code" \
                    or grant["redirect_uri"] != redirect_uri or grant["challenge"] != challenge:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                      "nonce": grant["nonce"], **grant["person"]}
            key, alg = self.key, "RS256"
            if self.tamper == "nonce":
                claims["nonce"] = "someone-elses"
            elif self.tamper == "aud":
                claims["aud"] = "another-client"
            elif self.tamper == "expired":
                claims["iat"], claims["exp"] = now - 3600, now - 1800
            elif self.tamper == "key":
                key = self.other_key
            elif self.tamper == "iss":
                claims["iss"] = "https://impostor.example"
            elif self.tamper == "hmac":       # signed with a secret anyone may hold: the client's own
                key, alg = OctKey.import_key(CLIENT_SECRET.encode()), "HS256"
            header = {"alg": alg, "kid": key.kid or "k1"}
            id_token = jwt.encode(header, claims, key, algorithms=[alg])
            return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": id_token}

        return app

    def start(self):
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "local OpenID provider")
        return self

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def provider():
    p = LocalOidcProvider().start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, provider, monkeypatch_module):
    monkeypatch_module.setenv("KEZEK_TUNDUK_ISSUER", provider.issuer)
    monkeypatch_module.setenv("KEZEK_TUNDUK_CLIENT_ID", CLIENT_ID)
    monkeypatch_module.setenv("KEZEK_TUNDUK_CLIENT_SECRET", CLIENT_SECRET)
    s = Stack(tmp_path_factory.mktemp("oidc"), rate_limit_per_minute=100_000)
    with TestClient(s.gateway, base_url="https://testserver") as c:
        t = c.post("/api/v1/drafts", json={}).json()["draft"]
        c.put(f"/api/v1/drafts/{t}/child", json={"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"})
        r = c.put(f"/api/v1/drafts/{t}/parent", json={
            "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": PARENT_PIN,
            "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
            "address": {"region": "41711000000000", "district": "41711210000000",
                        "settlement": "41711000000001", "street": "Киевская", "house": "1"},
            "phone": "+996555123456", "email": "sso@example.kg"})
        assert r.status_code == 200, r.text
        c.post(f"/api/v1/drafts/{t}/email-code")
        c.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": s.last_code("sso@example.kg")})
        r = c.post(f"/api/v1/drafts/{t}/submit", json={"category": "general", "language": "ky",
                                                        "preferences": ["bsk-12"], "agreement": True})
        assert r.status_code == 201, r.text
    return s


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def sign_in(c: TestClient):
    """The browser's part: portal -> provider -> portal callback."""
    r = c.get("/login/tunduk", follow_redirects=False)
    assert r.status_code == 303
    authorize = r.headers["location"]
    q = parse_qs(urlparse(authorize).query)
    assert q["code_challenge_method"] == ["S256"] and q["nonce"] and q["state"]
    back = httpx.get(authorize, follow_redirects=False)
    assert back.status_code == 302
    callback = urlparse(back.headers["location"])
    assert callback.path == "/login/tunduk/callback"
    return c.get(f"{callback.path}?{callback.query}", follow_redirects=False)


def test_tunduk_sign_in_opens_the_cabinet_of_the_parent_with_that_pin(stack, provider):
    provider.tamper = None
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        r = sign_in(c)
        assert r.status_code == 303 and r.headers["location"] == "/cabinet"
        assert "HttpOnly" in r.headers["set-cookie"]
        page = c.get("/cabinet")
        assert page.status_code == 200 and "Асанов Айбек" in page.text


@pytest.mark.parametrize("tamper", ["nonce", "aud", "expired", "key", "iss", "hmac"])
def test_an_id_token_that_does_not_prove_the_person_is_refused(stack, provider, tamper):
    provider.tamper = tamper
    try:
        with TestClient(stack.gateway, base_url="https://testserver") as c:
            c.cookies.set("kezek_lang", "ru")
            r = sign_in(c)
            assert r.status_code == 422
            assert "Вход через Тундук: вход через Тундук не удался" in r.text
            assert c.get("/cabinet").url.path == "/login"
    finally:
        provider.tamper = None


def test_keys_the_provider_rotated_are_fetched_again_and_sign_in_goes_on(stack, provider):
    old = provider.key
    provider.key = RSAKey.generate_key(2048, parameters={"kid": "k2", "use": "sig", "alg": "RS256"})
    fetched = provider.jwks_fetched
    try:
        with TestClient(stack.gateway, base_url="https://testserver") as c:
            r = sign_in(c)
            assert r.status_code == 303 and r.headers["location"] == "/cabinet"
        assert provider.jwks_fetched == fetched + 1
    finally:
        provider.key = old


def test_a_person_without_an_application_is_told_to_apply_first(stack, provider):
    provider.person = {"sub": "tunduk-0002", "pin": "21203198800999"}
    try:
        with TestClient(stack.gateway, base_url="https://testserver") as c:
            c.cookies.set("kezek_lang", "ky")
            r = sign_in(c)
            assert r.status_code == 422 and "Адегенде арыз бериңиз" in r.text
    finally:
        provider.person = {"sub": "tunduk-0001", "pin": PARENT_PIN, "given_name": "Айгүл"}


def test_a_callback_from_another_browser_is_refused(stack, provider):
    with TestClient(stack.gateway, base_url="https://testserver") as mine, \
            TestClient(stack.gateway, base_url="https://testserver") as attacker:
        r = attacker.get("/login/tunduk", follow_redirects=False)
        back = urlparse(httpx.get(r.headers["location"], follow_redirects=False).headers["location"])
        # The victim's browser is made to open the attacker's callback.
        r = mine.get(f"{back.path}?{back.query}", follow_redirects=False)
        assert r.status_code == 400 and "kezek_session" not in r.headers.get("set-cookie", "")


def test_a_state_is_used_once(stack, provider):
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        r = c.get("/login/tunduk", follow_redirects=False)
        back = urlparse(httpx.get(r.headers["location"], follow_redirects=False).headers["location"])
        assert c.get(f"{back.path}?{back.query}", follow_redirects=False).status_code == 303
        replay = c.get(f"{back.path}?{back.query}", follow_redirects=False)
        assert replay.status_code in (400, 422)
