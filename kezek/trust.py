"""The trust boundary (DOMAIN.md section 7): who is calling, verified, and
what each route lets them do.

People reach Kezek only through the portal (parents) and the staff pages;
every other HTTP API is internal. An internal call carries a short-lived
service token: a JWT signed (Ed25519) with the calling service's key, whose
audience is the called service and whose subject is the verified actor the
caller acts for (`parent:<account>`, `staff:<id>`, or `service:<name>` when it
acts for itself). A service may vouch only for the people it verified itself
(`VOUCHERS`): the gateway for parents, the staff pages for staff, the `kezek`
command line for an administrator at the console. Nothing a caller merely
asserts (a header, a form field) ever names the actor.

Each route declares its permission as data, with `allow(...)` or `PUBLIC`:

    router = APIRouter(dependencies=[...])          # or per route:
    @router.get("/queue-entries/{id}")
    def entry(id: str, access: Access = allow(parent(), staff("caseworker", DISTRICT))):
        found = load(id)
        access.check(family=found.parent_id, district=found.district)   # 404 outside the scope
        ...

`allow` is the one dependency that checks it: the app's authenticator
(`app.state.authenticate`, set by `kezek.web.create_service_app`) turns the
request into a `Principal`, the first grant the principal holds decides, and
the route gets an `Access` that applies the grant's scope to the resource it
loads. A route without `allow` or `PUBLIC` fails `tests/unit/test_trust_walk.py`.
"""
from __future__ import annotations

import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from fastapi.security.base import SecurityBase
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from kezek.settings import SERVICES, Settings
from kezek.problems import Forbidden, NotFound, Unauthenticated

ALG = "Ed25519"
TOKEN_SECONDS = 60
CLOCK_SKEW_SECONDS = 30

# Who a signed caller may be: the five services and the operator's console.
CALLERS = (*SERVICES, "cli")

PARENT = "parent"
STAFF_ROLES = ("caseworker", "supervisor", "commission", "admin", "kindergarten", "district", "operator")
SERVICE = "service"
CLOCK = "clock"
ANONYMOUS_ROLE = "anonymous"

# Which caller may vouch for which role of person. A service always acts for
# itself; it acts for a person only when it verified that person itself.
VOUCHERS: dict[str, frozenset[str]] = {
    "gateway": frozenset({PARENT}),
    "verification": frozenset(STAFF_ROLES),
    "cli": frozenset({"admin"}),
}

# Scopes: which part of the data a grant reaches.
ANY = "any"
FAMILY = "family"              # a parent: their own children
KINDERGARTEN = "kindergarten"  # kindergarten staff: their kindergarten
DISTRICT = "district"          # caseworkers, supervisors, officers: their district
SCOPES = (ANY, FAMILY, KINDERGARTEN, DISTRICT)


# ---------------------------------------------------------------- principals

@dataclass(frozen=True)
class Principal:
    """A verified actor. `actor` is what the audit trail records."""

    actor: str
    role: str
    via: str | None = None            # the service that vouched for a person
    family: str | None = None         # a parent's account id
    kindergarten: str | None = None
    district: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.role != ANONYMOUS_ROLE

    @property
    def service(self) -> str | None:
        return self.actor.partition(":")[2] if self.role == SERVICE else None

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sub": self.actor, "role": self.role}
        for name in ("family", "kindergarten", "district"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


ANONYMOUS = Principal(actor="anonymous", role=ANONYMOUS_ROLE)
THE_CLOCK = Principal(actor="clock", role=CLOCK)


def service_principal(name: str) -> Principal:
    """A service acting for itself: its consumers, jobs and activities."""
    return Principal(actor=f"service:{name}", role=SERVICE)


def parent_principal(account_id: str | int) -> Principal:
    return Principal(actor=f"parent:{account_id}", role=PARENT, family=str(account_id))


def staff_principal(staff_id: str | int, role: str, *, district: str | None = None,
                    kindergarten: str | None = None) -> Principal:
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}")
    return Principal(actor=f"staff:{staff_id}", role=role, district=district or None,
                     kindergarten=kindergarten or None)


# -------------------------------------------------------------------- errors

class OutOfScope(NotFound):
    """Another family's, kindergarten's or district's record: not disclosed,
    so answered as one that does not exist."""


# -------------------------------------------------------------------- grants

@dataclass(frozen=True)
class Grant:
    """One role that may use a route, the scope it reaches, and (for a
    service acting for itself) which services."""

    role: str
    scope: str = ANY
    services: frozenset[str] = frozenset()

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}")
        if self.role not in (PARENT, SERVICE, *STAFF_ROLES):
            raise ValueError(f"unknown role {self.role!r}")

    def holds(self, p: Principal) -> bool:
        if p.role != self.role:
            return False
        if self.role == SERVICE:
            return p.service in self.services
        if self.scope == FAMILY:
            return p.family is not None
        if self.scope == KINDERGARTEN:
            return p.kindergarten is not None
        if self.scope == DISTRICT:
            return p.district is not None
        return True

    def describe(self) -> str:
        if self.role == SERVICE:
            return "service:" + "|".join(sorted(self.services))
        return self.role if self.scope == ANY else f"{self.role}@{self.scope}"


def parent() -> Grant:
    """A parent, for their own family's records."""
    return Grant(PARENT, FAMILY)


def staff(*roles: str, scope: str = ANY) -> tuple[Grant, ...]:
    return tuple(Grant(r, scope) for r in roles)


def services(*names: str) -> Grant:
    unknown = set(names) - set(CALLERS)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}")
    return Grant(SERVICE, ANY, frozenset(names))


@dataclass(frozen=True)
class Access:
    """What the route may do for this principal: the grant that matched."""

    principal: Principal
    grant: Grant | None             # None on a public route

    @property
    def actor(self) -> str:
        return self.principal.actor

    def check(self, *, family: str | None = None, kindergarten: str | None = None,
              district: str | None = None) -> None:
        """Raises OutOfScope unless the record lies within the grant's scope.
        Pass what the record belongs to; a record outside is 'not found'."""
        if self.grant is None or self.grant.scope == ANY:
            return
        p, scope = self.principal, self.grant.scope
        mine = {FAMILY: (p.family, family), KINDERGARTEN: (p.kindergarten, kindergarten),
                DISTRICT: (p.district, district)}[scope]
        if mine[1] is None or str(mine[0]) != str(mine[1]):
            raise OutOfScope(field=scope)

    def within(self, scope: str) -> str | None:
        """For lists: the value to filter by under this grant's scope, or
        None when the grant reaches everything."""
        if self.grant is None or self.grant.scope == ANY:
            return None
        if self.grant.scope != scope:
            raise Forbidden(detail=f"this list cannot be filtered by {self.grant.scope}")
        return getattr(self.principal, scope)


# ---------------------------------------------------------------- the guard

Authenticate = Callable[[Request], "Principal | None | Awaitable[Principal | None]"]

# How the OpenAPI documents say a caller proves itself (Swagger UI's
# "Authorize"). Internal APIs take a service token; the gateway's JSON API
# declares the parent's session token instead (services/gateway/jsonapi.py).
BEARER = HTTPBearer(
    auto_error=False, scheme_name="ServiceToken", bearerFormat="JWT",
    description="A service token: a JWT signed (EdDSA) by the calling service's key for this service (`aud`), "
                "valid for a minute, naming the verified actor in `sub` (`parent:<account>`, `staff:<id>`, "
                "`service:<name>`); made by kezek/client.py.")


class Permission:
    """The dependency `allow(...)` and `PUBLIC` declare. Tests find it on
    every route (`permission_of`)."""

    def __init__(self, grants: Iterable[Grant], *, public: bool = False, scheme: SecurityBase | None = None):
        self.grants = tuple(grants)
        self.public = public
        if not public and not self.grants:
            raise ValueError("a non-public route needs at least one grant")
        if public:
            # No security requirement in the OpenAPI document: nothing to show.
            async def dependency(request: Request) -> Access:
                return await self.decide(request)
        else:
            async def dependency(request: Request, _credentials=Depends(scheme or BEARER)) -> Access:
                return await self.decide(request)

        dependency.permission = self  # type: ignore[attr-defined]
        self.dependency = dependency

    async def decide(self, request: Request) -> Access:
        principal = await authenticate(request)
        request.state.principal = principal
        if self.public:
            return Access(principal, None)
        if not principal.authenticated:
            raise Unauthenticated(headers={"WWW-Authenticate": "Bearer"})
        for grant in self.grants:
            if grant.holds(principal):
                return Access(principal, grant)
        raise Forbidden(detail=f"{principal.role} may not do this")

    def describe(self) -> str:
        return "public" if self.public else ", ".join(g.describe() for g in self.grants)


def allow(*grants: Grant | tuple[Grant, ...], scheme: SecurityBase | None = None) -> Any:
    """`Depends` for a route open to these grants (flattening `staff(...)`)."""
    flat: list[Grant] = []
    for g in grants:
        flat.extend(g if isinstance(g, tuple) else (g,))
    return Depends(Permission(flat, scheme=scheme).dependency)


PUBLIC_PERMISSION = Permission((), public=True)
PUBLIC: Any = Depends(PUBLIC_PERMISSION.dependency)


def permission_of(route) -> Permission | None:
    """The permission a FastAPI route declares (None: none, a defect)."""
    found = [d.call.permission for d in route.dependant.dependencies
             if getattr(d.call, "permission", None) is not None]
    if len(found) > 1:
        raise LookupError(f"{route.path} declares {len(found)} permissions")
    return found[0] if found else None


def declared_routes(app) -> list[tuple[str, frozenset[str], Permission | None]]:
    """Every API route of an app, included routers flattened: (path,
    methods, its permission)."""
    from fastapi.routing import iter_route_contexts

    out = []
    for ctx in iter_route_contexts(app.routes):
        if getattr(ctx, "dependant", None) is None:
            continue        # docs pages, static mounts
        out.append((ctx.path, frozenset(ctx.methods or ()), permission_of(ctx)))
    return out


async def authenticate(request: Request) -> Principal:
    """The app's authenticator, cached on the request."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    auth = getattr(request.app.state, "authenticate", None)
    found = auth(request) if auth is not None else None
    if inspect.isawaitable(found):
        found = await found
    return found or ANONYMOUS


# ------------------------------------------------------------ service keys

def _derived_key(secret: str, caller: str) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kezek-service-key",
                info=caller.encode()).derive(secret.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def _okp(private: Ed25519PrivateKey, caller: str) -> OKPKey:
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key = OKPKey.import_key(pem)
    return OKPKey.import_key(pem, parameters={"kid": f"{caller}-{key.thumbprint()[:16]}", "use": "sig"})


@dataclass
class ServiceKeys:
    """Signing keys of the callers this process runs as, and every caller's
    public keys. Production: a folder (`KEZEK_SERVICE_KEYS_DIR`) with
    `<caller>.pem` for each caller this process runs as and `jwks.json`
    (every caller's public keys, several per caller during a rotation, each
    with `kid` and the member `kezek_caller`). Development and tests: keys
    derived from the secret key, so every process agrees without files."""

    signing: dict[str, OKPKey] = field(default_factory=dict)
    public: dict[str, tuple[str, OKPKey]] = field(default_factory=dict)   # kid -> (caller, key)

    @classmethod
    def from_settings(cls, settings: Settings) -> "ServiceKeys":
        folder = getattr(settings, "service_keys_dir", None)
        if folder:
            return cls.from_folder(Path(folder))
        return cls.derived(settings.secret_key.get_secret_value())

    @classmethod
    def derived(cls, secret: str) -> "ServiceKeys":
        keys = cls()
        for caller in CALLERS:
            okp = _okp(_derived_key(secret, caller), caller)
            keys.signing[caller] = okp
            keys.public[okp.kid] = (caller, OKPKey.import_key(okp.as_dict(private=False)))
        return keys

    @classmethod
    def from_folder(cls, folder: Path) -> "ServiceKeys":
        keys = cls()
        jwks = json.loads((folder / "jwks.json").read_text())
        for item in jwks.get("keys", []):
            caller = item.get("kezek_caller")
            if caller not in CALLERS or not item.get("kid"):
                raise ValueError(f"{folder / 'jwks.json'}: each key needs kid and a known kezek_caller")
            public = {k: v for k, v in item.items() if k != "kezek_caller"}
            keys.public[item["kid"]] = (caller, OKPKey.import_key(public))
        for caller in CALLERS:
            pem = folder / f"{caller}.pem"
            if pem.exists():
                okp = OKPKey.import_key(pem.read_bytes())
                kid = next((kid for kid, (c, k) in keys.public.items()
                            if c == caller and k.as_dict(private=False)["x"] == okp.as_dict(private=False)["x"]),
                           None)
                if kid is None:
                    raise ValueError(f"{pem}: its public key is not in jwks.json")
                keys.signing[caller] = OKPKey.import_key(pem.read_bytes(), parameters={"kid": kid})
        return keys

    def sign(self, caller: str, audience: str, actor: Principal | None = None,
             *, seconds: int = TOKEN_SECONDS) -> str:
        key = self.signing.get(caller)
        if key is None:
            raise LookupError(f"this process holds no key of {caller!r}")
        now = int(time.time())
        claims = (actor or service_principal(caller)).claims()
        claims.update(iss=caller, aud=audience, iat=now, nbf=now - 5, exp=now + seconds, jti=uuid.uuid4().hex)
        return jwt.encode({"alg": ALG, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[ALG])

    def verify(self, token: str, audience: str) -> Principal:
        """The principal a token carries; raises Unauthenticated when the
        token is not one a caller may have made for this audience."""
        try:
            header = jws.extract_compact(token.encode()).protected
            kid = header.get("kid")
            caller, key = self.public[kid]
            claims = jwt.decode(token, key, algorithms=[ALG]).claims
        except (JoseError, KeyError, ValueError, TypeError) as exc:
            raise Unauthenticated(detail=f"invalid service token ({exc.__class__.__name__})") from None
        now = time.time()
        if claims.get("iss") != caller:
            raise Unauthenticated(detail="the token's issuer does not own its key")
        if claims.get("aud") != audience:
            raise Unauthenticated(detail="the token is for another service")
        if not (claims.get("nbf", 0) - CLOCK_SKEW_SECONDS <= now < claims.get("exp", 0) + CLOCK_SKEW_SECONDS):
            raise Unauthenticated(detail="the token has expired")
        return _principal_from(claims, caller)


def _principal_from(claims: dict[str, Any], caller: str) -> Principal:
    role, sub = claims.get("role"), str(claims.get("sub", ""))
    if role == SERVICE:
        if sub != f"service:{caller}":
            raise Unauthenticated(detail="a service acts only as itself")
        return service_principal(caller)
    if role not in VOUCHERS.get(caller, ()):
        raise Unauthenticated(detail=f"{caller} may not act for a {role}")
    opt = {k: (str(claims[k]) if claims.get(k) is not None else None) for k in ("family", "kindergarten", "district")}
    if role == PARENT and (opt["family"] is None or sub != f"parent:{opt['family']}"):
        raise Unauthenticated(detail="a parent token names the family it acts for")
    return Principal(actor=sub, role=role, via=caller, **opt)


def service_token_authenticator(keys: ServiceKeys, audience: str) -> Authenticate:
    """The authenticator of an internal API: the bearer must be a service
    token made for this service."""

    def authenticate_request(request: Request) -> Principal | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return keys.verify(token.strip(), audience)

    return authenticate_request


def generate_folder(folder: Path, callers: Iterable[str] = CALLERS) -> list[str]:
    """Writes a new key for each caller into `folder` and adds its public
    key to `jwks.json` (keeping the old ones: rotation). Returns the kids."""
    folder.mkdir(parents=True, exist_ok=True)
    jwks_path = folder / "jwks.json"
    jwks = json.loads(jwks_path.read_text()) if jwks_path.exists() else {"keys": []}
    kids = []
    for caller in callers:
        if caller not in CALLERS:
            raise ValueError(f"unknown caller {caller!r}")
        okp = _okp(Ed25519PrivateKey.generate(), caller)
        pem = folder / f"{caller}.pem"
        pem.write_bytes(okp.as_pem(private=True))
        pem.chmod(0o600)
        jwks["keys"].append({**okp.as_dict(private=False), "kezek_caller": caller})
        kids.append(okp.kid)
    jwks_path.write_text(json.dumps(jwks, indent=2) + "\n")
    return kids
