"""Namespaces of their own on the shared Temporal dev server.

A workflow id is unique within a namespace, and the queue's starter never
starts `referral-<id>` twice (REJECT_DUPLICATE). Each test's fresh database
numbers its referrals from 1, so the tests sharing one dev server would meet
each other's `referral-1`: each test that runs referral workflows there
takes a namespace of its own."""
from __future__ import annotations

import asyncio
import threading
import uuid


def register_namespace(address: str, namespace: str) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
    from temporalio.client import Client

    async def register() -> None:
        client = await Client.connect(address)
        await client.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)))

    # In a thread of its own: an async test, or Playwright's sync API, keeps
    # an event loop running in the test's thread.
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(register())
        except BaseException as exc:
            failed.append(exc)

    t = threading.Thread(target=run, name="register-namespace")
    t.start()
    t.join(60)
    if failed:
        raise failed[0]


def fresh_namespace(address: str) -> str:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    register_namespace(address, namespace)
    return namespace
