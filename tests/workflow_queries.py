"""Asking a referral's workflow its status in tests against a real Temporal
server. Right after a worker starts, the server may not have seen its
pollers yet and refuses a query at once ("no poller seen for task queue
recently"): on a loaded machine the first poll can come seconds later. A
test asks again until the worker is seen, and fails on any other error."""
from __future__ import annotations

import asyncio
import time

from temporalio.client import Client
from temporalio.service import RPCError

from workflows import contracts as c


async def status_of(client: Client, referral_id: int | str, *, within: float = 60.0) -> c.ReferralStatus:
    handle = client.get_workflow_handle(c.workflow_id(str(referral_id)))
    deadline = time.monotonic() + within
    while True:
        try:
            return await handle.query(c.STATUS, result_type=c.ReferralStatus)
        except RPCError as exc:
            if "no poller seen" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)
