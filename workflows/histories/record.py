"""Records ReferralWorkflow histories for the replay test.

Each path of DOMAIN.md section 4 is run on the time-skipping server with
fake services, and its event history is written here as
`<label>-<path>.json`. Keep the files of every version that ever ran in
production: tests/workflows/test_replay.py replays them all against the
current code, which must therefore keep (behind `workflow.patched`) the old
behaviour of workflows that started before a change.

    .venv/bin/python workflows/histories/record.py --label v2
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio import activity  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from kezek import calendar as kcal  # noqa: E402
from kezek.infra.temporal import test_server_path  # noqa: E402
from workflows import client  # noqa: E402
from workflows import contracts as c  # noqa: E402
from workflows.worker import build_worker  # noqa: E402

HERE = Path(__file__).parent
# The queue answers that this child left the queue for school age when its
# place came back (c.PlaceReturned); every other call is answered with nothing.
AGED_OUT_APPLICATION = "app-aged-out"


def fakes() -> list:
    out = []
    for name in c.QUEUE_ACTIVITIES + c.NOTIFICATION_ACTIVITIES:
        @activity.defn(name=name)
        async def fake(call: dict, name: str = name) -> dict | None:
            if name == c.RETURN_PLACE and call.get("application_id") == AGED_OUT_APPLICATION:
                return c.PlaceReturned(applied=True, aged_out=True).model_dump()
            return None
        out.append(fake)
    return out


async def record(env: WorkflowEnvironment, task_queue: str, name: str, issued: datetime,
                 acts: list[tuple[datetime, str, c.Act]], **fields) -> tuple[str, str]:
    cal = kcal.calendar(fields.get("country", "KG"))
    issued = issued.replace(tzinfo=cal.tz)
    offset = issued - await env.get_current_time()
    referral_id = name
    application_id = fields.pop("application_id", "app-1")
    inp = c.ReferralInput(referral_id=referral_id, application_id=application_id, kindergarten="sun", cohort=2024,
                          language="ru", issued_at=issued, clock_offset=offset, **fields)
    handle = await client.issue(env.client, inp, task_queue=task_queue)
    for at, update, req in acts:
        at = at.replace(tzinfo=cal.tz)
        left = at - (await env.get_current_time() + offset)
        if left > timedelta(0):
            await env.sleep(left)
        try:
            await client.act(env.client, referral_id, update, req.model_copy(update={"acted_at": at}))
        except client.ReferralRefused:
            pass  # refusals are part of the path too
    await handle.result()
    history = await handle.fetch_history()
    return handle.id, history.to_json()


PRIVILEGED = dict(category="extraordinary", needs_confirmation=True)
GENERAL = dict(category="general", needs_confirmation=False)

PATHS = {
    "general-enrolled": (datetime(2026, 4, 30, 10), GENERAL, [
        (datetime(2026, 5, 12, 11), c.ENROL, c.RecordEnrolment())]),
    "general-expired-stoplist-resumed": (datetime(2026, 3, 20, 10), dict(GENERAL, country="KZ"), []),
    "privileged-certificate-extended-confirmed-enrolled": (datetime(2027, 3, 1, 10), PRIVILEGED, [
        (datetime(2027, 3, 2, 10), c.ENROL, c.RecordEnrolment()),
        (datetime(2027, 3, 3, 10), c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 1, 5))),
        (datetime(2027, 3, 10, 10), c.EXTEND, c.ExtendReferral()),
        (datetime(2027, 3, 25, 10), c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=date(2027, 3, 24))),
        (datetime(2027, 3, 30, 10), c.ENROL, c.RecordEnrolment())]),
    "privileged-rejected": (datetime(2027, 3, 1, 10), PRIVILEGED, [
        (datetime(2027, 3, 4, 15), c.REJECT_PRIVILEGE, c.RejectPrivilege(reason="no record"))]),
    "general-cancelled": (datetime(2027, 3, 1, 10), GENERAL, [
        (datetime(2027, 3, 2, 9), c.CANCEL, c.CancelReferral())]),
    # Since AGED_OUT_PATCH (v3): expired after the school-age birthday, no stop-list.
    "general-expired-aged-out": (datetime(2026, 3, 20, 10),
                                 dict(GENERAL, country="KZ", application_id=AGED_OUT_APPLICATION), []),
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="the workflow code version, e.g. v2")
    args = parser.parse_args()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_path()), data_converter=pydantic_data_converter)
    task_queue = f"record-{uuid.uuid4().hex[:6]}"
    try:
        async with build_worker(env.client, fakes(), task_queue=task_queue):
            for name, (issued, fields, acts) in PATHS.items():
                workflow_id, text = await record(env, task_queue, name, issued, acts, **fields)
                path = HERE / f"{args.label}-{name}.json"
                path.write_text(text + "\n")
                print(f"{path.name}: {workflow_id}")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    # The Temporal client may abort the interpreter at exit (sdk-python issue 300).
    sys.stdout.flush()
    os._exit(0)
