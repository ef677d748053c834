"""Single sign-on through the national identity provider (Tunduk ESI), as an
OpenID Connect relying party: authorization code flow with PKCE, ID token
checked against the provider's published keys (issuer, audience, expiry,
nonce). The person's PIN is read from a configurable claim."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import jwt


class OidcError(Exception):
    """The provider refused, or its answer does not prove who the person is."""


@dataclass(frozen=True)
class OidcIdentity:
    sub: str
    pin: str | None
    given_name: str | None
    family_name: str | None


def new_pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OidcProvider:
    def __init__(self, issuer: str, client_id: str, client_secret: str, *,
                 pin_claim: str = "pin", scope: str = "openid profile", timeout: float = 10.0):
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.pin_claim = pin_claim
        self.scope = scope
        self.timeout = timeout
        self._metadata: dict | None = None
        self._jwks: jwt.PyJWKSet | None = None

    def metadata(self) -> dict:
        if self._metadata is None:
            r = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=self.timeout)
            r.raise_for_status()
            meta = r.json()
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError("issuer in the discovery document does not match")
            self._metadata = meta
        return self._metadata

    def _keys(self, refresh: bool = False) -> jwt.PyJWKSet:
        if self._jwks is None or refresh:
            r = httpx.get(self.metadata()["jwks_uri"], timeout=self.timeout)
            r.raise_for_status()
            self._jwks = jwt.PyJWKSet.from_dict(r.json())
        return self._jwks

    def authorize_url(self, *, state: str, nonce: str, code_challenge: str, redirect_uri: str) -> str:
        query = {
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": self.scope, "state": state, "nonce": nonce,
            "code_challenge": code_challenge, "code_challenge_method": "S256",
        }
        return f"{self.metadata()['authorization_endpoint']}?{urlencode(query)}"

    def exchange(self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str) -> OidcIdentity:
        r = httpx.post(self.metadata()["token_endpoint"], data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }, auth=(self.client_id, self.client_secret), timeout=self.timeout)
        if r.status_code != 200:
            raise OidcError(f"token endpoint answered {r.status_code}")
        id_token = r.json().get("id_token")
        if not id_token:
            raise OidcError("no id_token in the token response")
        claims = self._verify(id_token)
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("nonce mismatch")
        return OidcIdentity(sub=str(claims["sub"]), pin=claims.get(self.pin_claim),
                            given_name=claims.get("given_name"), family_name=claims.get("family_name"))

    def _verify(self, id_token: str) -> dict:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError as exc:
            raise OidcError(f"malformed id_token: {exc}") from exc
        keys = self._keys()
        if kid not in {k.key_id for k in keys.keys}:
            keys = self._keys(refresh=True)   # the provider rotated its keys
        try:
            key = keys[kid]
            return jwt.decode(id_token, key=key.key, algorithms=["RS256", "ES256"],
                              audience=self.client_id, issuer=self.issuer, leeway=30,
                              options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except (KeyError, jwt.PyJWTError) as exc:
            raise OidcError(f"id_token refused: {exc}") from exc


def now_epoch() -> int:
    return int(time.time())
