"""Single sign-on through the national identity provider (Tunduk ESI): the
core's OpenID Connect relying party (kezek/oidc.py, Authlib: code flow with
PKCE, state, nonce, the ID token checked against the provider's keys), and
the person it vouches for as registration reads them: the PIN from a
configurable claim, the names."""
from __future__ import annotations

from dataclasses import dataclass

from kezek.oidc import OidcError, RelyingParty, new_verifier

__all__ = ["OidcError", "OidcIdentity", "OidcProvider", "new_verifier"]


@dataclass(frozen=True)
class OidcIdentity:
    sub: str
    pin: str | None
    given_name: str | None
    family_name: str | None


class OidcProvider(RelyingParty):
    def __init__(self, issuer: str, client_id: str, client_secret: str, *,
                 pin_claim: str = "pin", scope: str = "openid profile", timeout: float = 10.0):
        super().__init__(issuer, client_id, client_secret, scope=scope, timeout=timeout)
        self.pin_claim = pin_claim

    def exchange(self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str) -> OidcIdentity:
        who = self.finish(code=code, code_verifier=code_verifier, redirect_uri=redirect_uri, nonce=nonce)
        pin = who.claims.get(self.pin_claim)
        return OidcIdentity(sub=who.sub, pin=str(pin) if pin is not None else None,
                            given_name=who.claims.get("given_name"), family_name=who.claims.get("family_name"))
