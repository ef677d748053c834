"""The verification service's settings: the shared ones plus its own, and
the policy built from them at start-up."""
from __future__ import annotations

from typing import Any

from kezek.settings import Settings
from services.verification import domain as d


class VerificationSettings(Settings):
    """The shared settings plus what only verification needs."""

    verification_certificate_valid_days: int = d.CERTIFICATE_VALID_DAYS
    verification_max_scan_mb: float = d.MAX_SCAN_BYTES / (1024 * 1024)
    verification_abuse_policy: dict[str, Any] = {}          # JSON: {"min_cycles": 2, "window_days": 365, ...}
    verification_voucher_categories: list[str] = ["voucher"]
    verification_cookie_secure: bool | None = None          # default: secure in production
    # Addresses of the reverse proxies in front of the staff pages, whose
    # X-Forwarded-For names the client (sign-in throttling is per client).
    verification_trusted_proxies: list[str] = []
    # Where certificate scans are kept, sealed (kezek/files.py): empty, a
    # folder under the state folder (files/verification); or a folder or
    # file:///path. Back it up with the database.
    verification_file_store: str = ""

    def file_store_default(self):
        return self.state_dir / "files" / "verification"

    @property
    def cookie_secure(self) -> bool:
        if self.verification_cookie_secure is None:
            return self.env == "production"
        return self.verification_cookie_secure


def policy_of(settings: VerificationSettings) -> d.VerificationPolicy:
    return d.VerificationPolicy(
        country=settings.country,
        certificate_valid_days=settings.verification_certificate_valid_days,
        max_scan_bytes=int(settings.verification_max_scan_mb * 1024 * 1024),
        abuse=d.AbusePolicy.from_dict(settings.verification_abuse_policy),
        vouchers=d.VoucherPolicy(categories=tuple(settings.verification_voucher_categories)),
    )


as_settings = VerificationSettings.of
