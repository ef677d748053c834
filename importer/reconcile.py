"""`kezek reconcile FILE`: proves the move lost nothing.

From the export alone it recomputes what the queue must hold (plan.py: the
same checks as the import) and compares it with what the queue service
reports: every child's entry (category, queue date to the microsecond,
cohort, language, preferences, status), every child's position for its
first preference, and every live referral's kindergarten, deadline and
state.

Positions are compared for every child (from the entries the queue holds,
ranked by the queue's own rules) and, for a sample, also as the queue
service itself explains them (`--sample`, `--all`). Exit 1 on any
difference, each listed with its reason. Each step's progress is shown on
stderr while it runs (rich), the result on stdout."""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)

from importer import plan as p
from importer.export import ExportError, read
from importer.run import build_queue, policy_of


@dataclass
class Reconciliation:
    applications: int = 0
    positions_checked: int = 0
    positions_by_service: int = 0
    referrals: int = 0
    differences: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def differ(self, kind: str, row: str, detail: str) -> None:
        self.differences.append({"kind": kind, "row": row, "detail": detail})

    def to_dict(self) -> dict:
        kinds: dict[str, int] = {}
        for d in self.differences:
            kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
        return {"ok": self.ok, "applications": self.applications, "positions_checked": self.positions_checked,
                "positions_by_service": self.positions_by_service, "referrals": self.referrals,
                "differences": len(self.differences), "by_kind": kinds}


def _same_moment(a, b: datetime) -> bool:
    if isinstance(a, str):
        a = datetime.fromisoformat(a)
    return isinstance(a, datetime) and a == b


class _Steps:
    """The steps' progress on a rich Progress (stderr), or nothing."""

    def __init__(self, progress: Progress | None):
        self.progress = progress

    def start(self, name: str, total: int | None) -> TaskID | None:
        return self.progress.add_task(name, total=total) if self.progress else None

    def advance(self, task: TaskID | None, n: int = 1) -> None:
        if self.progress and task is not None:
            self.progress.advance(task, n)

    def done(self, task: TaskID | None) -> None:
        if self.progress and task is not None:
            total = self.progress.tasks[task].total if task in self.progress.task_ids else None
            self.progress.update(task, total=total or 1, completed=total or 1)


def reconcile(service, plan: p.Plan, policy, *, sample: int | None = 200, seed: int = 1,
              progress: Progress | None = None) -> Reconciliation:
    steps = _Steps(progress)
    out = Reconciliation()
    live = {r.application_id: r for r in plan.referrals}
    held: list[p.Application] = []
    views: dict[str, dict] = {}
    reading = steps.start("queue entries", len(plan.applications))
    for i in range(0, len(plan.applications), 2000):
        chunk = [a.id for a in plan.applications[i:i + 2000]]
        views.update(service.views.applications_many(chunk))
        steps.advance(reading, len(chunk))
    comparing = steps.start("compared", len(plan.applications))
    for app in plan.applications:
        steps.advance(comparing)
        out.applications += 1
        view = views.get(app.id)
        if view is None:
            out.differ("missing_application", app.old_id, f"application {app.id} is not in the queue")
            continue
        want_status = "referred" if app.id in live else "queued"
        checks = {
            "status": (view.get("status"), want_status),
            "category": (view.get("category"), app.category),
            "cohort": (view.get("cohort"), app.birth_date.year),
            "language": (view.get("language"), app.language),
            "preferences": (list(view.get("preferences") or []), list(app.preferences)),
        }
        for name, (have, want) in checks.items():
            if have != want:
                out.differ(f"application_{name}", app.old_id, f"{name}: queue has {have!r}, export says {want!r}")
        if not _same_moment(view.get("queue_date"), app.queue_date):
            out.differ("application_queue_date", app.old_id,
                       f"queue_date: queue has {view.get('queue_date')}, export says {app.queue_date.isoformat()}")
        birth = view.get("birth_date")
        birth = date.fromisoformat(birth) if isinstance(birth, str) else birth
        qd = view.get("queue_date")
        qd = datetime.fromisoformat(qd) if isinstance(qd, str) else qd
        if view.get("status") == "queued" and birth and qd:
            held.append(p.Application(app.id, app.old_id, "", "", "", None, birth, view["category"], qd,
                                      view["language"], tuple(view["preferences"]), None))
        if app.id in live:
            out.referrals += 1
            r, ref = live[app.id], view.get("referral")
            if not ref:
                out.differ("missing_referral", r.old_id, f"the live referral of {app.id} is not in the queue")
            elif ref.get("kindergarten") != r.kindergarten or not _same_moment(ref.get("deadline"), r.deadline):
                out.differ("referral_deadline", r.old_id,
                           f"queue has {ref.get('kindergarten')} until {ref.get('deadline')}, export says "
                           f"{r.kindergarten} until {r.deadline.isoformat()}")
            elif ref.get("state") != r.state:
                out.differ("referral_state", r.old_id, f"queue has {ref.get('state')}, export says {r.state}")

    ranking = steps.start("positions", None)
    expected = p.expected_positions(plan.applications, policy, referred=set(live))
    actual = p.expected_positions(held, policy)
    steps.done(ranking)
    for app_id, want in expected.items():
        if app_id in actual:
            out.positions_checked += 1
            if actual[app_id] != want:
                out.differ("position", app_id, f"position {actual[app_id]} in the queue, {want} from the export")
    ids = sorted(set(expected) & set(actual))
    if sample is not None and sample < len(ids):
        ids = random.Random(seed).sample(ids, sample)
    asking = steps.start("asked the queue", len(ids))
    for app_id in ids:
        steps.advance(asking)
        explained = service.views.positions(app_id)
        have = explained[0].position if explained else None
        out.positions_by_service += 1
        if have != expected[app_id]:
            out.differ("position_by_service", app_id,
                       f"the queue service says {have}, the export says {expected[app_id]}")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kezek reconcile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="the export that was imported")
    parser.add_argument("--sample", type=int, default=200,
                        help="children whose position the queue service explains itself (default 200)")
    parser.add_argument("--all", action="store_true", help="ask the queue service for every child's position")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)

    from kezek.settings import Settings

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as progress:
        reading = progress.add_task("export", total=None)
        try:
            export = read(args.file)
        except ExportError as exc:
            progress.stop()
            console.print(f"[red]kezek reconcile: {exc}[/red]")
            return 2
        service = build_queue(Settings())
        policy = policy_of(service)
        plan = p.make_plan(export, policy)
        progress.update(reading, total=1, completed=1)
        result = reconcile(service, plan, policy, sample=None if args.all else args.sample, progress=progress)
    for diff in result.differences[:50]:
        print(f"DIFFERENT {diff['kind']} {diff['row']}: {diff['detail']}")
    if len(result.differences) > 50:
        print(f"... and {len(result.differences) - 50} more")
    summary = result.to_dict()
    print(json.dumps(summary) if args.json else
          f"{'OK' if result.ok else 'DIFFERENCES'}: {summary['applications']} applications, "
          f"{summary['positions_checked']} positions ({summary['positions_by_service']} asked of the queue service), "
          f"{summary['referrals']} live referrals, {summary['differences']} differences")
    return 0 if result.ok else 1
