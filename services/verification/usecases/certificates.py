"""Certificates and scans: the caseworker records the certificate from the
place of work with its scan (PDF, JPEG or PNG, stored once per SHA-256,
sealed in the file store, never in a table), and opens the scan again later
(a look, recorded with why). Whether the certificate is in date is the rule
of domain.certificate_in_date."""
from __future__ import annotations

import hashlib
import uuid

from services.verification import domain as d
from services.verification.models import Certificate, Scan, outbox
from services.verification.usecases.cases import load_case
from services.verification.usecases.context import Context, NotFound, StaffView


class Certificates:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def record(self, actor: StaffView, referral_id: str, *, organisation: str, number: str,
               issued_on: str, scan: bytes, scan_name: str = "") -> dict:
        """Records the certificate and its scan; answers whether it is in date."""
        ctx = self.ctx
        today = ctx.today()
        with ctx.tx(actor) as s:
            ref, app = load_case(ctx, s, actor, referral_id, "certificate.record", d.Permission.CASE_ACT)
            if ref.state != d.OPEN_STATE:
                raise d.Refused([d.err("case", "case_closed", state=ref.state)])
            data, kind = self._checked(organisation, number, issued_on, scan, today)
            sha = hashlib.sha256(scan).hexdigest()
            if s.get(Scan, sha) is None:
                # The file first: a crash before the commit leaves an unreferenced
                # file (harmless), never a row without its file.
                name = f"scans/{uuid.uuid4()}"
                ctx.files.put(name, scan, content_type=kind.content_type)
                s.add(Scan(sha256=sha, content_type=kind.content_type, size=len(scan), file_name=name,
                           stored_at=ctx.now()))
                s.flush()
            cert = Certificate(id=str(uuid.uuid4()), referral_id=ref.referral_id,
                               organisation=data.organisation, number=data.number, issued_on=data.issued_on,
                               scan_sha256=sha, scan_name=(scan_name or "")[-200:], recorded_by=actor.id,
                               recorded_at=ctx.now())
            s.add(cert)
            s.flush()
            valid_days = ctx.policy.certificate_valid_days
            in_date = d.certificate_in_date(data.issued_on, today, valid_days)
            until = d.certificate_valid_until(data.issued_on, valid_days)
            outbox.add(s, "verification.certificate_recorded.v1", ref.referral_id, {
                "certificate_id": cert.id, "referral_id": ref.referral_id, "application_id": ref.application_id,
                "issued_on": data.issued_on.isoformat(), "valid_until": until.isoformat(), "in_date": in_date,
                "scan_sha256": sha, "recorded_by": actor.id,
            })
            ctx.audit(s, actor, "certificate.record", subject_type="referral", subject_id=ref.referral_id,
                      district=app.district if app else None, certificate_id=cert.id,
                      issued_on=data.issued_on.isoformat(), in_date=in_date, scan_sha256=sha)
        return {"certificate_id": cert.id, "in_date": in_date, "valid_until": until, "sha256": sha}

    def _checked(self, organisation: str, number: str, issued_on: str, scan: bytes,
                 today) -> tuple[d.CertificateData, d.ScanKind]:
        """The certificate's fields and its scan, every refusal at once."""
        errors: list[d.FieldError] = []
        data = kind = None
        try:
            data = d.validate_certificate(organisation, number, issued_on, today)
        except d.Refused as exc:
            errors += exc.errors
        try:
            kind = d.check_scan(scan, self.ctx.policy.max_scan_bytes)
        except d.Refused as exc:
            errors += exc.errors
        if errors:
            raise d.Refused(errors)
        assert data is not None and kind is not None
        return data, kind

    def scan(self, actor: StaffView, referral_id: str, certificate_id: str) -> tuple[bytes, str, str]:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ref, app = load_case(ctx, s, actor, referral_id, "scan.view", d.Permission.CASE_VIEW)
            cert = s.get(Certificate, certificate_id)
            if cert is None or cert.referral_id != ref.referral_id:
                raise NotFound(certificate_id)
            scan = s.get(Scan, cert.scan_sha256)
            assert scan is not None
            ctx.audit(s, actor, "scan.view", subject_type="referral", subject_id=referral_id,
                      district=app.district if app else None, certificate_id=certificate_id,
                      application_id=ref.application_id)
            return ctx.files.get(scan.file_name), scan.content_type, scan.sha256
