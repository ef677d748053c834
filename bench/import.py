"""Import benchmark (issue 9): the move of a national queue from the old portal.

Generates an export of N applications (200,000 by default, with ~2 % bad
rows), then, in a PostgreSQL cluster of its own, measures:

- plan: reading and checking every row (JSON file);
- import: `kezek import` through the services' use cases: parents' accounts
  in batches (registration's `import_accounts`, no passwords), entries in
  batches (`join_queue_many`: one transaction and bulk inserts per batch,
  each entry with its outbox event and audit row), then the live referrals
  (`import_referral`, one transaction each), then the places; meanwhile
  the positions that moved are published every quarter second, as the
  queue service's allocator loop does (`position_events`, and per entry);
- second run: the same export again (idempotence: nothing created);
- reconcile: every child's entry and position, and the queue service's own
  explanation for a sample of 200.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/import.py
    .venv/bin/python bench/import.py --applications 20000 --workers 2 --batch 1000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kezek.db import ensure_database, make_engine, make_session_factory  # noqa: E402
from importer import plan as p  # noqa: E402
from importer.export import read, write_json  # noqa: E402
from importer.generate import generate  # noqa: E402
from importer.reconcile import reconcile  # noqa: E402
from importer.run import Importer  # noqa: E402
from importer.speed import cache_event_validation  # noqa: E402
from kezek.infra.postgres import PostgresCluster  # noqa: E402
from kezek.migrations import upgrade  # noqa: E402
from services.queue.models import outbox  # noqa: E402
from services.queue.usecases import Queue  # noqa: E402
from services.queue.usecases.positions import POSITION_CHANGED  # noqa: E402
from services.registration.address import ReferenceAddressRegistry  # noqa: E402
from services.registration.service import RegistrationService  # noqa: E402


class Ticker:
    """The Importer's progress as a line on stderr every 5 %."""

    def __init__(self):
        self.tasks: dict[int, list] = {}

    def phases(self) -> dict[str, float]:
        """Seconds from each section's start to its last step."""
        return {t[0]: round(t[4] - t[3], 1) for t in self.tasks.values()}

    def add_task(self, name: str, total: int) -> int:
        now = time.perf_counter()
        self.tasks[len(self.tasks)] = [name, total, 0, now, now]
        return len(self.tasks) - 1

    def advance(self, task: int, n: int = 1) -> None:
        t = self.tasks[task]
        step = max(1, t[1] // 20)
        before, t[2] = t[2], t[2] + n
        t[4] = time.perf_counter()
        if before // step != t[2] // step or t[2] == t[1]:
            print(f"  {t[0]}: {t[2]}/{t[1]} in {time.perf_counter() - t[3]:.0f} s", file=sys.stderr, flush=True)


def publish_positions(service: Queue, stop: threading.Event, every: float = 0.25) -> None:
    while not stop.wait(every):
        service.positions.publish()


def position_events(service: Queue) -> int:
    """application.position_changed events in the queue's outbox."""
    with service.sessions() as s:
        return s.scalar(sa.select(sa.func.count()).where(outbox.table.c.type == POSITION_CHANGED))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--applications", type=int, default=200_000)
    parser.add_argument("--kindergartens", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000, help="queue entries per transaction")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    cache_event_validation()
    work = Path(tempfile.mkdtemp(prefix="kezek-bench-import-"))
    os.chmod(work, 0o755)
    cluster = PostgresCluster(work / "pg", durable=False).start()
    figures: dict = {"applications": args.applications, "kindergartens": args.kindergartens, "workers": args.workers,
                     "batch": args.batch}
    try:
        url = cluster.url("kezek_queue_bench")
        ensure_database(url)
        upgrade("queue", url)
        engine = make_engine(url, pool_size=args.workers + 2)
        service = Queue(make_session_factory(engine), country="KG")
        reg_url = cluster.url("kezek_registration_bench")
        ensure_database(reg_url)
        upgrade("registration", reg_url)
        reg_engine = make_engine(reg_url)
        registration = RegistrationService(make_session_factory(reg_engine), ReferenceAddressRegistry(),
                                           code_key=b"bench", country="KG")
        policy = service.policy.current()[0]

        t = time.perf_counter()
        export_file = work / "export.json"
        write_json(generate(args.applications, args.kindergartens, args.seed), export_file)
        figures["generate_s"] = round(time.perf_counter() - t, 1)
        figures["export_mb"] = round(export_file.stat().st_size / 2**20, 1)

        t = time.perf_counter()
        export = read(export_file)
        plan = p.make_plan(export, policy)
        figures["plan_s"] = round(time.perf_counter() - t, 1)
        figures["rows"] = export.size()
        figures["refused_rows"] = len(plan.refused)

        t = time.perf_counter()
        print(f"plan: {len(plan.applications)} entries to import, {len(plan.refused)} rows refused", file=sys.stderr,
              flush=True)
        ticker = Ticker()
        # What the queue service's allocator loop does meanwhile in a running
        # system: publish the positions that moved, every quarter second.
        stop = threading.Event()
        publisher = threading.Thread(target=publish_positions, args=(service, stop), daemon=True)
        publisher.start()
        first = Importer(service, workers=args.workers, progress=ticker, batch=args.batch,
                         registration=registration).run(plan, export.source)
        figures["import_s"] = round(time.perf_counter() - t, 1)
        stop.set()
        publisher.join()
        service.positions.publish()
        events = position_events(service)
        figures["position_events"] = events
        figures["position_events_per_entry"] = round(events / max(len(plan.applications), 1), 2)
        created = first.counts.get("applications", {}).get("created", 0)
        figures["applications_created"] = created
        figures["referrals_created"] = first.counts.get("referrals", {}).get("created", 0)
        figures["parents_created"] = first.counts.get("parents", {}).get("created", 0)
        figures["place_pools_published"] = first.counts.get("places", {}).get("created", 0)
        figures["import_phases_s"] = ticker.phases()
        figures["applications_per_s"] = round(created / max(figures["import_s"], 1e-9), 1)
        print(f"import: {created} entries in {figures['import_s']} s", file=sys.stderr, flush=True)

        t = time.perf_counter()
        second = Importer(service, workers=args.workers, batch=args.batch, registration=registration).run(
            p.make_plan(export, policy), export.source)
        figures["second_run_s"] = round(time.perf_counter() - t, 1)
        figures["second_run_changed"] = second.changed()

        t = time.perf_counter()
        result = reconcile(service, plan, policy, sample=200)
        figures["reconcile_s"] = round(time.perf_counter() - t, 1)
        figures["reconcile_positions"] = result.positions_checked
        figures["reconcile_differences"] = result.to_dict()["by_kind"]
        engine.dispose()
        reg_engine.dispose()
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
