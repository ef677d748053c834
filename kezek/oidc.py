"""An OpenID Connect relying party on Authlib: the authorization code flow
with PKCE (S256), state and nonce, and the ID token checked against the
provider's published keys (signature, issuer, audience, expiry, nonce,
azp and at_hash where present). Parents sign in through Tunduk with it
(services/registration/oidc.py); staff single sign-on can use the same
client with its own issuer, client and claims.

The caller keeps each sign-in's `state`, `nonce` and PKCE verifier between
the two halves (in a table: several replicas answer the callback), passes
them to `authorize_url` and gets them back to `finish`. Keys are fetched
once and again when a token names a key id the set lacks (the provider
rotated its keys). Every transport must be https, except loopback in tests
and development (Authlib's rule).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

with warnings.catch_warnings():
    # Authlib would rather speak httpx2; Kezek's one HTTP client is httpx,
    # which Authlib still supports.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

__all__ = ["OidcError", "SignIn", "RelyingParty", "new_verifier"]

# Asymmetric signatures only: "none" and HMAC with a public key are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
LEEWAY_SECONDS = 30


class OidcError(Exception):
    """The provider refused, or its answer does not prove who the person is."""


@dataclass(frozen=True)
class SignIn:
    """What the verified ID token says: `sub` and every claim."""
    sub: str
    claims: dict[str, Any]


def new_verifier() -> str:
    """A PKCE code verifier (RFC 7636: 43-128 unreserved characters)."""
    return generate_token(64)


class RelyingParty:
    def __init__(self, issuer: str, client_id: str, client_secret: str, *,
                 scope: str = "openid profile", timeout: float = 10.0):
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.timeout = timeout
        self._metadata: OpenIDProviderMetadata | None = None
        self._keys: KeySet | None = None

    def _client(self, redirect_uri: str) -> OAuth2Client:
        return OAuth2Client(self.client_id, self.client_secret, scope=self.scope, redirect_uri=redirect_uri,
                            code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic",
                            timeout=self.timeout)

    # ------------------------------------------------------------ the provider

    def metadata(self) -> OpenIDProviderMetadata:
        """The discovery document, checked for what this client relies on."""
        if self._metadata is None:
            try:
                r = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=self.timeout)
                r.raise_for_status()
                meta = OpenIDProviderMetadata(r.json())
                meta.validate_issuer()
                meta.validate_authorization_endpoint()
                meta.validate_token_endpoint()
                meta.validate_jwks_uri()
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcError(f"discovery document refused: {exc}") from exc
            if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
                raise OidcError("issuer in the discovery document does not match")
            if not meta.get("jwks_uri") or not meta.get("token_endpoint"):
                raise OidcError("the discovery document names no jwks_uri or token_endpoint")
            self._metadata = meta
        return self._metadata

    def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            try:
                r = httpx.get(self.metadata()["jwks_uri"], timeout=self.timeout)
                r.raise_for_status()
                self._keys = KeySet.import_key_set(r.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                raise OidcError(f"the provider's keys cannot be read: {exc}") from exc
        return self._keys

    def _algorithms(self) -> list[str]:
        offered = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        return [a for a in offered if a in ALGORITHMS]

    # ------------------------------------------------------------ the flow

    def authorize_url(self, *, state: str, nonce: str, code_verifier: str, redirect_uri: str) -> str:
        """Where the browser goes to sign in (code flow, S256 challenge of the verifier)."""
        url, _ = self._client(redirect_uri).create_authorization_url(
            self.metadata()["authorization_endpoint"], state=state, nonce=nonce, code_verifier=code_verifier)
        return url

    def finish(self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str) -> SignIn:
        """Exchanges the code (with the verifier) and checks the ID token."""
        try:
            with self._client(redirect_uri) as client:
                token = client.fetch_token(self.metadata()["token_endpoint"], grant_type="authorization_code",
                                           code=code, code_verifier=code_verifier)
        except (OAuthError, httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"token endpoint refused: {exc}") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise OidcError("no id_token in the token response")
        claims = self.verify(id_token, nonce=nonce, access_token=token.get("access_token"))
        return SignIn(sub=str(claims["sub"]), claims=dict(claims))

    def verify(self, id_token: str, *, nonce: str, access_token: str | None = None) -> CodeIDToken:
        """The ID token's claims, once its signature and claims hold (OIDC Core 3.1.3.7)."""
        registry = JWSRegistry(algorithms=self._algorithms())
        try:
            try:
                decoded = jwt.decode(id_token, self._key_set(), registry=registry)
            except InvalidKeyIdError:
                decoded = jwt.decode(id_token, self._key_set(refresh=True), registry=registry)  # keys rotated
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                options={"iss": {"essential": True, "value": self.issuer},
                         "aud": {"essential": True, "value": self.client_id},
                         "nonce": {"essential": True}},
                params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token})
            claims.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"id_token refused: {exc}") from exc
        return claims
