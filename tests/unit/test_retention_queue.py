"""Retention as policy (DOMAIN.md section 7) in the queue: a closed
application's entry is anonymised in place when the period for the way it
closed ends, audited, its earlier audit details rewritten through the
trail's one rewrite path, and the allocation record, which holds pseudonyms
only, still replays. The policy itself (kezek/retention.py) first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from kezek.retention import (ANONYMISED, DEFAULT_DAYS, RetentionPolicy, RetentionPolicyError, anonymous_pin,
                             scrub)
from services.queue.domain import JoinQueue
from services.queue.models import Application
from services.queue.retention import retention_job
from tests.builders import Clock, kindergarten, sqlite_queue, sqlite_url

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2027, 3, 1, 4, tzinfo=UTC)


# ---------------------------------------------------------------- the policy


def test_default_periods_are_per_outcome_and_the_setting_changes_only_what_it_names():
    policy = RetentionPolicy.from_setting('{"removed": 730}')
    assert policy.period("removed") == timedelta(days=730)
    assert policy.period("enrolled") == timedelta(days=DEFAULT_DAYS["enrolled"])
    # An outcome the policy does not know is kept for the longest period.
    assert policy.period("something_new") == timedelta(days=max(DEFAULT_DAYS.values()))


@pytest.mark.parametrize("raw", ['{"forever": 1}', '{"removed": -1}', '{"removed": "1"}', "[1]", "{"])
def test_a_bad_retention_setting_is_refused_naming_it(raw):
    with pytest.raises(RetentionPolicyError) as exc:
        RetentionPolicy.from_setting(raw)
    assert "retention_days" in str(exc.value)


def test_an_anonymous_pin_is_stable_per_application_and_never_a_pin():
    assert anonymous_pin("a1") == anonymous_pin("a1") != anonymous_pin("a2")
    assert len(anonymous_pin("a1")) == 14 and not anonymous_pin("a1").isdigit()


def test_scrubbed_audit_details_keep_what_happened_and_lose_the_familys_words():
    assert scrub({"reason": "moved to Osh, Lenina 5", "referral_id": 7, "preferences": ["sun"],
                  "nested": {"name": "Aibek", "state": "paused"}}) == {
        "reason": ANONYMISED, "referral_id": 7, "preferences": ["sun"],
        "nested": {"name": ANONYMISED, "state": "paused"}}


# ----------------------------------------------------------------- the queue


@pytest.fixture
def world(tmp_path):
    clock = Clock(START)
    with sqlite_queue(tmp_path, clock, [kindergarten("sun", district="Leninsky")]) as queue:
        yield queue, retention_job(queue.sessions, RetentionPolicy(), now=clock), clock, sqlite_url(tmp_path, "queue")


def join(queue, cid, serial, qd="2026-01-10T10:00:00+06:00"):
    queue.entries.join(JoinQueue(application_id=cid, pin=f"2150620240{serial:04d}", surname="Asanov",
                                 name="Aibek", patronymic="Bekovich", category="general", language="ru",
                                 preferences=("sun",), parent_id=f"p-{cid}", queue_date=datetime.fromisoformat(qd)),
                       actor="parent:1")


def row(queue, cid):
    with queue.sessions() as s:
        A = Application.__table__      # read through the sealed columns' type: in clear
        return s.execute(sa.select(A.c.pin, A.c.surname, A.c.name, A.c.patronymic, A.c.birth_date,
                                   A.c.removal_reason, A.c.cohort, A.c.category, A.c.status)
                         .where(A.c.id == cid)).mappings().one()


def test_a_removed_entry_is_kept_three_years_then_anonymised_in_place_and_audited(world):
    queue, job, clock, _ = world
    join(queue, "a1", 1)
    queue.entries.remove("a1", actor="parent:1", reason="moved to Osh, Lenina 5")
    clock.now = START + timedelta(days=1094)
    assert job.run().by_outcome == {}
    assert row(queue, "a1")["pin"] == "21506202400001"
    clock.now = START + timedelta(days=1095)
    report = job.run()
    assert report.by_outcome == {"removed": 1} and report.tables == {"applications": 1}
    r = row(queue, "a1")
    assert (r["pin"], r["surname"], r["name"], r["patronymic"], r["removal_reason"]) == (
        anonymous_pin("a1"), ANONYMISED, ANONYMISED, None, None)
    assert str(r["birth_date"]) == "2024-01-01" and (r["cohort"], r["category"], r["status"]) == (
        2024, "general", "removed")
    trail = queue.audit.trail("application:a1")
    [done] = [e for e in trail if e["action"] == "retention.anonymised"]
    assert done["actor"] == "service:queue" and done["details"]["outcome"] == "removed"
    removed = [e for e in trail if e["action"] == "application.removed"][0]
    assert removed["details"]["reason"] == ANONYMISED and removed["actor"] == "parent:1"
    queued = [e for e in trail if e["action"] == "application.queued"][0]
    assert queued["details"]["preferences"] == ["sun"]          # what decided the queue stays
    assert job.run().by_outcome == {}                            # once


def test_a_dry_run_reports_per_outcome_and_changes_nothing(world):
    queue, job, clock, _ = world
    join(queue, "a1", 1)
    join(queue, "a2", 2)
    queue.entries.remove("a1", actor="parent:1")
    clock.now = START + timedelta(days=2000)
    report = job.run(dry_run=True).as_dict()
    assert report["by_outcome"] == {"removed": 1} and report["applications"] == 1
    assert "applications.pin" in report["fields"]
    assert row(queue, "a1")["pin"] == "21506202400001"


def test_a_changed_policy_applies_to_applications_already_closed(world):
    queue, job, clock, _ = world
    join(queue, "a1", 1)
    queue.entries.remove("a1", actor="parent:1")
    clock.now = START + timedelta(days=31)
    assert job.run().by_outcome == {}
    job.policy = RetentionPolicy.from_setting('{"removed": 30}')
    assert job.run().by_outcome == {"removed": 1}


def test_enrolment_then_leaving_restarts_the_clock_from_the_leaving(world):
    queue, job, clock, _ = world
    join(queue, "a1", 1)
    queue.places.publish("sun", 2024, "ru", 1, actor="kg:sun")
    [issued] = queue.allocation.process_requests().issued
    queue.referrals.record_enrolment(key="k1", referral_id=str(issued.referral_id), application_id="a1", at=START)
    clock.now = START + timedelta(days=1800)
    queue.leaving.leave("a1", actor="kindergarten:sun")
    clock.now = START + timedelta(days=1830)            # past the enrolment's 5 years, not the leaving's 3
    assert job.run().by_outcome == {}
    clock.now = START + timedelta(days=1800 + 1095)
    assert job.run().by_outcome == {"left": 1}


def test_the_allocation_record_still_replays_after_anonymisation(world):
    queue, job, clock, _ = world
    for i in range(1, 6):
        join(queue, f"a{i}", i, qd=f"2026-01-1{i}T10:00:00+06:00")
    queue.places.publish("sun", 2024, "ru", 2, actor="kg:sun")
    issued = queue.allocation.process_requests().issued
    for ref in issued:
        queue.referrals.record_enrolment(key=f"e{ref.referral_id}", referral_id=str(ref.referral_id),
                                         application_id=ref.application_id, at=START)
    for i in (3, 4):
        queue.entries.remove(f"a{i}", actor="parent:1")
    clock.now = START + timedelta(days=2000)
    assert job.run().by_outcome == {"enrolled": 2, "removed": 2}
    assert [r["matches"] for r in queue.audit.replay()] == [True]
    with queue.sessions() as s:
        record = json.dumps([dict(r) for r in s.execute(sa.text(
            "SELECT application_id, inputs FROM allocation_audit")).mappings()])
    assert "Asanov" not in record and "21506202400001" not in record


def test_kezek_retention_dry_run_prints_what_would_be_anonymised_per_service_and_outcome(world, tmp_path):
    queue, job, clock, url = world
    join(queue, "a1", 1, qd="2020-01-10T10:00:00+06:00")
    clock.now = datetime(2021, 1, 1, tzinfo=UTC)
    queue.entries.remove("a1", actor="parent:1")
    env = {**os.environ, "KEZEK_STATE_DIR": str(tmp_path), "KEZEK_DATABASE_URL": "", "KEZEK_ENV": "test"}
    out = subprocess.run([sys.executable, "-m", "kezek.cli", "retention", "--dry-run", "--service", "queue"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "queue: would anonymise 1 application(s) (removed 1)" in out.stdout
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["services"][0]["by_outcome"] == {"removed": 1}
    assert row(queue, "a1")["pin"] == "21506202400001"
