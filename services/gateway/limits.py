"""Rate limits of the gateway, in the store every replica shares (its
database, kezek/ratelimit.py), keyed by the verified identity where there is
one (`parent:<account>`, an admin) and by the client's address otherwise. A
random bearer is no identity: it is counted against its address, so rotating
invented tokens gains nothing (each is looked up once, as any request is
forwarded once). A valid session costs its address nothing: many families
behind one carrier's address each have their own allowance, and a guesser
there cannot keep them out.

The client's address is the peer's, unless the peer is one of the trusted
proxies (`KEZEK_TRUSTED_PROXIES`): then it is the last address in
X-Forwarded-For that no trusted proxy wrote. A header from anyone else is
ignored, so a client cannot choose the address it is counted under. (Under
`kezek serve`, uvicorn's FORWARDED_ALLOW_IPS may already have put the
forwarded address in the peer's place: the two agree.)"""
from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from fastapi import Request

from kezek.ratelimit import RateLimits
from kezek.trust import authenticate
from services.gateway.clients import CLIENT
from services.gateway.sessions import Sessions

# Neither the parents' nor anyone's work: never limited.
EXEMPT = ("/static/", "/health", "/ready", "/metrics", "/api/docs", "/api/openapi.json")


class TrustedProxies:
    def __init__(self, spec: str = ""):
        self.networks = [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",")
                         if part.strip()]

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        if not self.networks or not self.trusted(peer):
            return peer or "unknown"
        hops = [h.strip() for value in request.headers.getlist("x-forwarded-for")
                for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer


@dataclass
class Allowance:
    per_identity: int
    per_address: int


class GatewayLimits:
    def __init__(self, store: RateLimits, sessions: Sessions, proxies: TrustedProxies, allowance: Allowance):
        self.store, self.sessions, self.proxies, self.allowance = store, sessions, proxies, allowance

    async def check(self, request: Request) -> float:
        """Counts the request; 0.0 when it may go on, else the seconds to
        wait. Authenticates the caller on the way (cached on the request)."""
        client = self.proxies.client(request)
        request.state.client = client
        CLIENT.set(client)
        if request.url.path.startswith(EXEMPT):
            return 0.0
        principal = await authenticate(request)
        request.state.principal = principal       # the route's permission asks no second time
        if principal.authenticated:
            return await self.hit(principal.actor, self.allowance.per_identity)
        return await self.hit(f"address:{client}", self.allowance.per_address)

    async def hit(self, key: str, limit: int, window: int = 60) -> float:
        """Counted in memory on the loop's thread; a hit that must reach the
        database (the flush's timer, or the key nearing its limit) in a
        worker thread, so no request waits for it on the loop."""
        wait = self.store.hit_in_memory(key, limit, window)
        if wait is None:
            wait = await asyncio.to_thread(self.store.hit, key, limit, window)
        return wait


async def activation_wait(request: Request, gw) -> float:
    """Activation links asked for from one client: a burst, then about one
    a minute (registration limits the links per account too)."""
    burst = gw.settings.activation_requests_burst
    return await asyncio.to_thread(gw.limits.hit, f"activation:{request.state.client}", burst, burst * 60)
