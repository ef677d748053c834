"""The worklist and the cases: a case page, recording a certificate with
its scan, the decisions on a case, and the scan itself."""
from __future__ import annotations

import uuid
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from services.verification import domain as d
from services.verification.api.pages import CheckedForm, CurrentStaff, Render, ScanForm, Service, acted, requires
from services.verification.usecases.context import StaffView

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
P = d.Permission
WORKLIST = requires(P.WORKLIST)
VIEW = requires(P.CASE_VIEW)
ACT = requires(P.CASE_ACT)
CERTIFICATE_FIELDS = ("organisation", "number", "issued_on")
SCAN_EXTENSIONS = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}


@router.get("/worklist", dependencies=[WORKLIST])
def worklist(render: Render, service: Service, staff: CurrentStaff, district: str | None = None):
    view = service.cases.worklist(staff, (district or "").strip() or None)
    return render("worklist.html", section="worklist", all_districts=d.all_districts(staff.role), **view)


def case_page(render: Render, service: Service, staff: StaffView, referral_id: str, *, status: int = 200,
              errors: list[dict] | None = None, form: dict | None = None) -> HTMLResponse:
    case = service.cases.case(staff, referral_id)
    query = render.request.query_params
    done = query.get("done")
    outcome = None
    if done:
        found = next((x for x in case["decisions"] if x["nonce"] == done), None)
        # The deadline now running: the enrolment one after a confirmation,
        # the same confirmation window after a request for a fresh certificate.
        outcome = found and {**found, "deadline": case["deadline"]}
    errors = errors or []
    cert_fields = {*CERTIFICATE_FIELDS, "scan"}
    return render("case.html", status=status, section="worklist", case=case, errors=errors,
                  errors_in_certificate=any(e["field"] in cert_fields for e in errors),
                  form={"organisation": "", "number": "", "issued_on": "", "reason": "", **(form or {})},
                  outcome=outcome, recorded=query.get("recorded") == "1", nonce=uuid.uuid4().hex)


@router.get("/cases/{referral_id}", dependencies=[VIEW])
def case(render: Render, service: Service, staff: CurrentStaff, referral_id: str):
    return case_page(render, service, staff, referral_id)


@router.post("/cases/{referral_id}/certificate", dependencies=[ACT])
async def record_certificate(render: Render, service: Service, staff: CurrentStaff, referral_id: str,
                             form: ScanForm):
    upload = form.get("scan")
    data, name = b"", ""
    if isinstance(upload, UploadFile):
        data = await upload.read(service.policy.max_scan_bytes + 1)
        name = upload.filename or ""
    values = {k: str(form.get(k) or "") for k in CERTIFICATE_FIELDS}
    return await acted(lambda: service.certificates.record(staff, referral_id, scan=data, scan_name=name, **values),
                       f"/cases/{referral_id}?recorded=1#h-cert",
                       lambda errors: case_page(render, service, staff, referral_id, status=422, errors=errors,
                                                form=values))


# The decisions on a case, each posted to its own path by the case page.
DECISIONS = {"confirm": d.Action.CONFIRM, "reject": d.Action.REJECT,
             "request-certificate": d.Action.REQUEST_CERTIFICATE}


def decision(action: d.Action):
    async def decide(render: Render, service: Service, staff: CurrentStaff, referral_id: str, form: CheckedForm):
        reason = str(form.get("reason") or "")
        nonce = str(form.get("nonce") or "")[:64] or uuid.uuid4().hex
        return await acted(lambda: service.cases.decide(staff, referral_id, action, reason=reason, nonce=nonce),
                           f"/cases/{referral_id}?done={nonce}#outcome",
                           lambda errors: case_page(render, service, staff, referral_id, status=422, errors=errors,
                                                    form={"reason": reason}))
    return decide


for path, action in DECISIONS.items():
    router.add_api_route(f"/cases/{{referral_id}}/{path}", decision(action), methods=["POST"], dependencies=[ACT],
                         name=action.value)


@router.get("/cases/{referral_id}/certificates/{certificate_id}/scan", dependencies=[VIEW])
def scan(service: Service, staff: CurrentStaff, referral_id: str, certificate_id: str):
    data, content_type, sha = service.certificates.scan(staff, referral_id, certificate_id)
    return Response(data, media_type=content_type, headers={
        "Content-Disposition": f'inline; filename="certificate-{certificate_id[:8]}.{SCAN_EXTENSIONS[content_type]}"',
        "Cache-Control": "no-store", "ETag": f'"{sha}"'})
