"""A child who left its kindergarten (the queue's application.left, issue 19)
no longer holds its PIN in registration: the family may apply again."""
from __future__ import annotations

from kezek.events import new_event
from tests.unit.test_registration_service import CONFIRM, env, filled  # noqa: F401 (the fixture)


def test_a_child_who_left_its_kindergarten_may_be_registered_again(env):  # noqa: F811
    svc, engine, _ = env
    first = svc.submit(filled(svc, engine), CONFIRM)
    left = new_event("application.left.v1", first.application_id, {
        "application_id": first.application_id, "kindergarten_id": "bsk-12", "referral_id": "7",
        "left_at": "2027-03-12T09:00:00+00:00", "reason": "moved"}, source="queue")
    with svc.sessions() as s, s.begin():
        svc.handle_queue_event(s, left)
    assert svc.profile(first.account_id)["applications"][0]["status"] == "left"
    again = svc.submit(filled(svc, engine), CONFIRM)
    assert again.application_id != first.application_id
