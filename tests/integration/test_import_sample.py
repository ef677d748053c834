"""The move from the old portal on real PostgreSQL, through the queue
service's use cases, with exports from the sample generator
(examples/import): bad rows refused with their reasons, a second run changes
nothing, a dry run writes nothing, and reconciliation finds every queue date
and position of the export (and notices one that moved)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory
from importer import plan as p
from importer.export import read, write_csv_dir
from importer.generate import generate
from importer.reconcile import reconcile
from importer.run import Importer
from kezek.migrations import upgrade
from kezek.outbox import payloads
from services.queue.domain import Policy
from services.queue.usecases import Queue

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "import" / "sample.json"
SAMPLE_CSV = ROOT / "examples" / "import" / "sample-csv"
TABLES = ("applications", "kindergartens", "places", "place_publications", "referrals", "allocation_runs", "outbox",
          "audit_trail")


def counts(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {t: c.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def new_queue(pg_url) -> tuple[Queue, sa.Engine]:
    url = pg_url("queue")
    upgrade("queue", url)
    engine = make_engine(url)
    return Queue(make_session_factory(engine), country="KG"), engine


@pytest.fixture(scope="module")
def registration(pg_cluster):
    """The registration service on its own database, for the parents' accounts."""
    from kezek.db import ensure_database
    from services.registration.address import ReferenceAddressRegistry
    from services.registration.service import RegistrationService

    url = pg_cluster.url("registration_import_module")
    ensure_database(url)
    upgrade("registration", url)
    engine = make_engine(url)
    yield RegistrationService(make_session_factory(engine), ReferenceAddressRegistry(), code_key=b"k"), engine
    engine.dispose()


@pytest.fixture(scope="module")
def imported(pg_cluster, registration):
    """A smaller export of the same generator, imported once for the module."""
    from kezek.db import ensure_database

    url = pg_cluster.url("queue_import_module")
    ensure_database(url)
    upgrade("queue", url)
    engine = make_engine(url)
    service = Queue(make_session_factory(engine), country="KG")
    export = generate(applications=400, kindergartens=12, seed=21)
    policy = service.policy.current()[0]
    plan = p.make_plan(export, policy)
    report = Importer(service, workers=4, registration=registration[0]).run(plan, export.source)
    yield service, engine, export, plan, report
    engine.dispose()


def test_committed_sample_is_the_generators_output_with_every_kind_of_bad_row():
    sample = read(SAMPLE)
    assert json.loads(json.dumps(generate().rows)) == json.loads(json.dumps(sample.rows)), \
        "examples/import/sample.json is `python -m importer.generate examples/import`"
    assert read(SAMPLE_CSV).rows["applications"][0]["preferences"] == sample["applications"][0]["preferences"]
    assert sample.size() > 5000
    plan = p.make_plan(sample, Policy())
    reasons = " | ".join(n.reason for n in plan.refused)
    for why in ("duplicate PIN", "impossible birth date", "in the future", "unknown kindergarten", "unknown category",
                "before the child's birth", "one entry per child", "14 digits", "not a moment", "duplicate kindergarten"):
        assert why in reasons, why
    assert len(plan.applications) > 1900


def test_import_creates_entries_with_their_queue_dates_and_refuses_bad_rows_with_reasons(imported):
    service, engine, export, plan, report = imported
    c = report.counts
    assert c["kindergartens"]["created"] == 12 and c["kindergartens"]["refused"] == 1
    assert c["applications"]["created"] == len(plan.applications) > 300
    assert counts(engine)["applications"] == c["applications"]["created"]
    app = next(a for a in plan.applications if a.id not in {r.application_id for r in plan.referrals})
    view = service.views.application(app.id)
    assert view["queue_date"] == app.queue_date and view["status"] == "queued"
    reasons = " | ".join(n.reason for n in report.refused if n.section == "applications")
    assert "one entry per child" in reasons


def test_import_resumes_every_live_referral_with_its_recorded_deadline(imported):
    service, engine, export, plan, report = imported
    assert report.counts["referrals"]["created"] == len(plan.referrals) > 10
    for r in plan.referrals:
        view = service.views.application(r.application_id)
        assert view["status"] == "referred"
        assert (view["referral"]["kindergarten"], view["referral"]["deadline"], view["referral"]["state"]) == \
            (r.kindergarten, r.deadline, r.state)
    assert service.audit.check_register() == []


def test_import_creates_each_parents_account_once_without_a_password(imported, registration):
    service, engine, export, plan, report = imported
    _, reg_engine = registration
    c = report.counts["parents"]
    assert c["created"] == len(plan.parents) - 2 > 300 and c["refused"] == 2
    refused = {n.row: n.reason for n in report.refused if n.section == "parents"}
    assert refused == {"p-bad-1": "parent.email: email_format", "p-bad-2": "parent.email: email_taken"}
    with reg_engine.connect() as conn:
        accounts = conn.execute(sa.text("SELECT id, password_hash, activated_at FROM accounts")).all()
        # Nothing is sent to the parents: the only facts are the moved
        # applications' contacts (application.received, marked imported).
        kinds = conn.execute(sa.text("SELECT type, count(*) FROM outbox GROUP BY type")).all()
        assert [k for k, _ in kinds] in ([], ["application.received.v1"]), kinds
    assert len(accounts) == c["created"] and all(pw is None and at is None for _, pw, at in accounts)
    app = next(a for a in plan.applications if a.parent_id == accounts[0][0])
    assert service.views.application(app.id)["parent_id"] == accounts[0][0]


def test_imported_parent_sees_each_of_their_queued_children_and_no_other(imported, registration):
    service, engine, export, plan, report = imported
    reg, reg_engine = registration
    refused_parents = {f"{export.source}-parent-{n.row}" for n in report.refused if n.section == "parents"}
    queued = {a.id for a in plan.applications} - {n.row for n in report.refused if n.section == "applications"}
    by_parent: dict[str, set[str]] = {}
    for a in plan.applications:
        if a.id in queued and a.parent_id and a.parent_id not in refused_parents:
            by_parent.setdefault(a.parent_id, set()).add(a.id)
    c = report.counts["cabinets"]
    assert c["created"] == sum(map(len, by_parent.values())) > 300 and "refused" not in c
    assert c["skipped"] == sum(1 for a in plan.applications if a.parent_id in refused_parents)
    for parent_id, ids in list(by_parent.items())[:50]:
        apps = reg.profile(parent_id)["applications"]
        assert {a["id"] for a in apps} == ids
        for a in apps:
            entry = service.views.application(a["id"])
            assert entry["parent_id"] == parent_id and a["child"]["birth_date"] == entry["birth_date"].isoformat()
            assert datetime.fromisoformat(a["submitted_at"]) == entry["queue_date"]
    with reg_engine.connect() as conn:
        # No application.submitted (queued once); each moved application's
        # contacts go to notifications, marked imported, once.
        received = [json.loads(p) for p in payloads(reg_engine, "application.received.v1")]
        assert conn.scalar(sa.text("SELECT count(*) FROM outbox")) == len(received)
        assert sorted(e["data"]["application_id"] for e in received) == sorted(
            a_id for ids in by_parent.values() for a_id in ids)
        assert all(e["data"]["imported"] is True for e in received)


def test_second_import_changes_nothing(imported, registration):
    service, engine, export, plan, first = imported
    reg, reg_engine = registration
    before = counts(engine)
    with reg_engine.connect() as conn:
        accounts = conn.scalar(sa.text("SELECT count(*) FROM accounts"))
        cabinets = conn.execute(sa.text("SELECT * FROM applications ORDER BY id")).all()
    second = Importer(service, workers=4, registration=reg).run(p.make_plan(export, service.policy.current()[0]),
                                                                export.source)
    assert second.changed() == 0
    assert second.counts["applications"]["unchanged"] == first.counts["applications"]["created"]
    assert second.counts["parents"]["unchanged"] == first.counts["parents"]["created"]
    assert counts(engine) == before, "not even an audit row"
    assert second.counts["cabinets"]["unchanged"] == first.counts["cabinets"]["created"]
    with reg_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM accounts")) == accounts
        assert conn.execute(sa.text("SELECT * FROM applications ORDER BY id")).all() == cabinets


def test_reconcile_finds_every_queue_date_position_and_referral_deadline_of_the_export(imported):
    service, engine, export, plan, _ = imported
    result = reconcile(service, plan, service.policy.current()[0], sample=50)
    assert result.positions_checked == len(plan.applications) - len(plan.referrals)
    assert result.positions_by_service == 50
    assert result.referrals == len(plan.referrals)
    assert result.ok, result.differences[:5]


def test_reconcile_notices_a_referral_deadline_that_moved(pg_url):
    service, engine = new_queue(pg_url)
    small = generate(applications=100, kindergartens=4, seed=3, bad=False)
    policy = service.policy.current()[0]
    plan = p.make_plan(small, policy)
    Importer(service).run(plan, small.source)
    assert plan.referrals and reconcile(service, plan, policy, sample=None).ok
    with engine.begin() as c:
        c.execute(sa.text("UPDATE referrals SET deadline = deadline + interval '1 day' WHERE external_id = :i"),
                  {"i": plan.referrals[0].referral_id})
    [diff] = reconcile(service, plan, policy, sample=None).differences
    assert diff["kind"] == "referral_deadline" and diff["row"] == plan.referrals[0].old_id
    engine.dispose()


def test_reconcile_notices_a_queue_date_that_moved(pg_url):
    service, engine = new_queue(pg_url)
    small = generate(applications=40, kindergartens=4, seed=3, bad=False)
    policy = service.policy.current()[0]
    plan = p.make_plan(small, policy)
    plan.referrals.clear()
    Importer(service).run(plan, small.source)
    assert reconcile(service, plan, policy, sample=None).ok
    with engine.begin() as c:
        c.execute(sa.text("UPDATE applications SET queue_date = queue_date + interval '1 second' WHERE id = :i"),
                  {"i": plan.applications[0].id})
    kinds = {d["kind"] for d in reconcile(service, plan, policy, sample=None).differences}
    assert "application_queue_date" in kinds
    engine.dispose()


def test_dry_run_of_the_committed_sample_writes_nothing(pg_url):
    service, engine = new_queue(pg_url)
    before = counts(engine)
    plan = p.make_plan(read(SAMPLE), service.policy.current()[0])
    report = Importer(service, dry_run=True, workers=4).run(plan, "balalyk")
    assert counts(engine) == before
    assert report.counts["applications"]["created"] == len(plan.applications)
    assert report.counts["referrals"]["created"] == len(plan.referrals)
    engine.dispose()


def test_kezek_import_and_reconcile_commands_on_a_csv_export(tmp_path):
    env = {**os.environ, "KEZEK_STATE_DIR": str(tmp_path), "KEZEK_DATABASE_URL": "", "KEZEK_LOG_JSON": "false"}
    upgrade("queue", f"sqlite:///{tmp_path / 'queue.db'}")
    upgrade("registration", f"sqlite:///{tmp_path / 'registration.db'}")
    export = tmp_path / "export"
    write_csv_dir(generate(applications=60, kindergartens=4, seed=5), export)
    kezek = [sys.executable, "-m", "kezek.cli"]

    def run(*args):
        out = subprocess.run([*kezek, *args], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
        return out, json.loads(out.stdout.strip().splitlines()[-1])

    out, dry = run("import", str(export), "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    assert dry["dry_run"] is True and dry["counts"]["applications"]["created"] > 40
    out, report = run("import", str(export), "--json", "--report", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert report["counts"]["applications"]["created"] == dry["counts"]["applications"]["created"]
    assert "applications" in out.stderr and "refused" in out.stderr, "the table and reasons are printed"
    assert json.loads((tmp_path / "r.json").read_text())["refused"]
    parents = report["counts"]["parents"]
    assert parents["created"] + parents["refused"] == report["counts"]["applications"]["created"]
    cabinets = report["counts"]["cabinets"]
    assert cabinets["created"] == dry["counts"]["cabinets"]["created"] == parents["created"]
    _, again = run("import", str(export), "--json")
    for section in ("applications", "parents", "cabinets"):
        assert "created" not in again["counts"][section], section
    _, without = run("import", str(export), "--json", "--no-parents")
    assert "cabinets" not in without["counts"]
    out, summary = run("reconcile", str(export), "--json")
    assert summary["positions_checked"] == report["counts"]["applications"]["created"] - summary["referrals"]
    assert summary["ok"] and out.returncode == 0, summary
    for step in ("export", "queue entries", "compared", "positions", "asked the queue"):
        assert step in out.stderr, f"reconcile shows its step {step!r} while it runs"


class PublishingAfterEachBatch(Importer):
    """An import with the allocator loop's position publication between its
    batches, as in a running system (the loop publishes every quarter second)."""

    def _batches(self, items, fn):
        def then_publish(part):
            out = fn(part)
            if not self.dry_run:
                self.q.positions.publish()
            return out
        return super()._batches(items, then_publish)


def test_an_import_in_batches_moves_no_child_it_imported_before_so_each_child_gets_one_position_event(pg_url):
    service, engine = new_queue(pg_url)
    export = generate(applications=300, kindergartens=6, seed=5, bad=False)
    export.rows["referrals"] = []     # a referral's child leaves the waiting: those behind it do move
    plan = p.make_plan(export, service.policy.current()[0])
    PublishingAfterEachBatch(service, workers=1, batch=20).run(plan, export.source)
    service.positions.publish()
    with engine.connect() as c:
        events = list(c.execute(sa.text("SELECT subject FROM outbox WHERE type = 'application.position_changed.v1'"))
                      .scalars())
    engine.dispose()
    assert len(plan.applications) > 250
    assert sorted(events) == sorted(f"application:{a.id}" for a in plan.applications), \
        f"{len(events)} position events for {len(plan.applications)} children"
