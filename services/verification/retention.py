"""Verification's data of closed applications, anonymised when the
retention policy says (kezek/retention.py): the worklist's applicant keeps
its row (category, district, language, queue date, status, birth year) and
loses the child's PIN and names and the parent's contacts; each of its
referrals' certificates loses the organisation, number and file name, and
its scan's bytes go unless a certificate of an application still kept uses
the same file; the free texts of decisions, referral facts, abuse cases and
voucher decisions go. Who decided what, when and with which outcome stays
(the decisions, the audit trail's rows)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.files import SealedFiles
from kezek.retention import ANONYMISED, Closed, RetentionJob, RetentionPolicy, anonymous_pin, coarse_birth_date
from services.verification.models import (AbuseCase, Applicant, Certificate, Decision, Referral, ReferralEvent, Scan,
                                          VoucherDecision, audit_trail, retention_clock)


class VerificationAnonymiser:
    """`files`: where the scans are kept (a scan is deleted from there)."""

    def __init__(self, files: SealedFiles):
        self.files = files

    fields = ("applicants.child_pin", "applicants.child_surname", "applicants.child_name",
              "applicants.child_patronymic", "applicants.child_birth_date (year kept)", "applicants.parent_phone",
              "applicants.parent_email", "referrals.reason", "referral_events.reason", "decisions.reason",
              "certificates.organisation", "certificates.number", "certificates.scan_name",
              "the scan's file (deleted from the file store)", "abuse_cases.child_pin", "abuse_cases.resolution",
              "voucher_decisions.reason", "voucher_decisions.documents", "audit_trail.details")

    def anonymise(self, s: Session, closed: list[Closed], at: datetime) -> tuple[dict[str, int], list[str]]:
        ids = [c.application_id for c in closed]
        n: dict[str, int] = {}
        applicants = list(s.scalars(sa.select(Applicant).where(Applicant.application_id.in_(ids))))
        for a in applicants:
            a.child_pin = anonymous_pin(a.application_id) if a.child_pin else None
            a.child_surname = ANONYMISED if a.child_surname else None
            a.child_name = ANONYMISED if a.child_name else None
            a.child_patronymic, a.parent_phone, a.parent_email = None, None, None
            a.child_birth_date = coarse_birth_date(a.child_birth_date)
        n["applicants"] = len(applicants)
        refs = list(s.scalars(sa.select(Referral.referral_id).where(Referral.application_id.in_(ids))))
        n["referrals"] = s.execute(sa.update(Referral).where(Referral.application_id.in_(ids))
                                   .values(reason=None)).rowcount
        n["referral_events"] = s.execute(sa.update(ReferralEvent).where(ReferralEvent.referral_id.in_(refs))
                                         .values(reason=None)).rowcount if refs else 0
        n["decisions"] = s.execute(sa.update(Decision).where(Decision.referral_id.in_(refs))
                                   .values(reason=None)).rowcount if refs else 0
        certs = list(s.scalars(sa.select(Certificate).where(Certificate.referral_id.in_(refs)))) if refs else []
        for cert in certs:
            cert.organisation, cert.number, cert.scan_name = ANONYMISED, ANONYMISED, ""
        n["certificates"] = len(certs)
        n["scans"] = self._scans(s, {c.scan_sha256 for c in certs}, set(refs))
        cases = list(s.scalars(sa.select(AbuseCase).where(AbuseCase.application_id.in_(ids))))
        for case in cases:
            case.child_pin, case.resolution = anonymous_pin(case.application_id), None
        n["abuse_cases"] = len(cases)
        n["voucher_decisions"] = s.execute(sa.update(VoucherDecision).where(VoucherDecision.application_id.in_(ids))
                                           .values(reason="", documents=[])).rowcount
        s.flush()
        subjects = ([f"application:{i}" for i in ids] + [f"voucher:{i}" for i in ids]
                    + [f"referral:{r}" for r in refs] + [f"abuse_case:{c.id}" for c in cases])
        return {k: v for k, v in n.items() if v}, subjects

    def _scans(self, s: Session, shas: set[str], refs: set[str]) -> int:
        """Deletes the scans only these referrals' certificates use (a
        sibling's still kept application may show the same file)."""
        if not shas:
            return 0
        others = s.execute(sa.select(Certificate.scan_sha256, Referral.application_id)
                           .outerjoin(Referral, Referral.referral_id == Certificate.referral_id)
                           .where(Certificate.scan_sha256.in_(shas), Certificate.referral_id.not_in(refs))).all()
        done = retention_clock.anonymised(s, [a for _, a in others])
        gone = shas - {sha for sha, app in others if app is None or app not in done}
        scans = list(s.scalars(sa.select(Scan).where(Scan.sha256.in_(gone), Scan.size > 0))) if gone else []
        for scan in scans:
            # Deleted before the commit: a rollback leaves a row whose file is
            # gone, which the next run finds again (size > 0) and finishes.
            self.files.delete(scan.file_name)
            scan.size = 0
        return len(scans)


def retention_job(sessions: sessionmaker[Session], files: SealedFiles, policy: RetentionPolicy | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RetentionJob:
    """Verification's job: its anonymiser deletes scans from the file store too."""
    return RetentionJob("verification", sessions, retention_clock, audit_trail, VerificationAnonymiser(files),
                        policy, now)


def build_retention(settings) -> RetentionJob:
    from services.verification.bootstrap import database, scan_files

    _engine, sessions = database(settings)
    return retention_job(sessions, scan_files(settings), settings.retention())
