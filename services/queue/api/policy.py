"""The policy: read by any verified caller, changed by administrators (a
new, audited version)."""
from __future__ import annotations

from fastapi import APIRouter

from kezek.trust import Access
from services.queue.api import access as can
from services.queue.api.deps import PREFIX, QueueDep
from services.queue.api.models import PolicyIn, PolicyOut, PolicyVersion

router = APIRouter(prefix=PREFIX, tags=["policy"])


@router.get("/policy", response_model=PolicyOut)
def get_policy(queue: QueueDep, access: Access = can.READ):
    policy, version = queue.policy.current()
    return {"version": version, "policy": policy.to_dict()}


@router.put("/policy", response_model=PolicyOut, summary="Change the policy (a new, audited version)")
def put_policy(queue: QueueDep, body: PolicyIn, access: Access = can.ADMIN):
    policy, version = queue.policy.change(body.changes, actor=access.principal, reason=body.reason)
    return {"version": version, "policy": policy.to_dict()}


@router.get("/policy/history", response_model=list[PolicyVersion])
def policy_history(queue: QueueDep, access: Access = can.AUDIT):
    return queue.policy.history()
