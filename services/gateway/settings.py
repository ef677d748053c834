"""The gateway's settings: the shared ones plus what only it needs."""
from __future__ import annotations

from kezek.settings import Settings


class GatewaySettings(Settings):
    """The shared settings plus what only the gateway needs."""

    cookie_secure: bool = True           # browsers keep Secure cookies on http://localhost too
    # Requests a minute: per signed-in parent (a family's app polling its
    # cabinet every few seconds stays far below) and per client address
    # for everyone else; beyond: 429 with Retry-After.
    rate_limit_per_minute: int = 300
    rate_limit_per_address_per_minute: int = 300
    # Asking for an activation link, per client: a burst of 5, then one a
    # minute (the registration service also limits the links per account).
    activation_requests_burst: int = 5
    # Addresses (or CIDR ranges) of the reverse proxies in front of the
    # gateway, comma-separated: only their X-Forwarded-For is believed.
    trusted_proxies: str = ""
    # A session's lookup in registration is reused this long (a revoked
    # session may still open pages on another replica for this long).
    session_cache_seconds: float = 5.0
    # The cabinet's read model (readmodel.py): a family's cabinet as the
    # services last said it answers `/me` and the cabinet page while no event
    # has changed it, for at most this long (what no event announces is at
    # most this old). 0: always ask the services (as a gateway whose
    # consumers do not run must).
    cabinet_snapshot_seconds: float = 60.0
    # The rate limits' counts reach the shared table in batches, at most
    # this long after the requests (kezek/ratelimit.py); 0: one upsert per
    # request.
    rate_limit_flush_seconds: float = 1.0
    # Worker processes of `kezek serve gateway` on its one port (each with
    # its own copies of the cabinets and session lookups); 1 in development.
    gateway_workers: int = 1


gateway_settings = GatewaySettings.of
