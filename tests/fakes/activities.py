"""Stand-ins for the referral workflow's activities (workflows/contracts.py)
where a test only needs the call to be taken: registered under the real
name, taking the contract's argument, recording the call when asked to."""
from __future__ import annotations

from temporalio import activity

from workflows import contracts as c

ARGUMENTS = {
    c.RETURN_PLACE: c.ReturnPlace, c.RETURN_TO_GENERAL_QUEUE: c.ReturnToGeneralQueue,
    c.PUT_ON_STOPLIST: c.PutOnStoplist, c.LIFT_STOPLIST: c.LiftStoplist,
    c.RECORD_ENROLMENT: c.RecordEnrolmentCall, c.RECORD_REFERRAL: c.RecordReferral,
    c.NOTIFY_PARENT: c.NotifyParent,
}


def stand_in(name: str, calls: list | None = None):
    """The activity `name`, answering nothing; each call goes to `calls` as (name, argument)."""
    async def taken(p) -> None:
        if calls is not None:
            calls.append((name, p))

    taken.__annotations__ = {"p": ARGUMENTS[name], "return": None}
    taken.__name__ = taken.__qualname__ = name.rsplit(".", 1)[-1]
    return activity.defn(name=name)(taken)
