"""`kezek import FILE`: moves the old portal's export into Kezek.

The export is checked row by row (plan.py), then applied through the queue
service's use cases, so every rule and every event of a normal registration
applies: a queue entry keeps its queue date, a second entry of a child is
refused. Idempotent: ids are derived from the export's ids, what exists is
compared and skipped, places are published only up to the export's count,
so a second run changes nothing. `--dry-run` reads and reports only.

Live referrals are resumed through `QueueService.import_referral` (the queue
records the referral with its deadline; its workflow starter then starts the
ReferralWorkflow). While the queue service has no such use case, a child with
a live referral is held back whole (neither entry nor referral), with that
reason in the report, rather than queued without its referral."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from kezek.importer import plan as p
from kezek.importer.export import ExportError, read

ACTOR = "import:{source}"
NO_REFERRAL_IMPORT = ("its live referral cannot be resumed: the queue service has no import_referral use case "
                      "yet; held back whole so the child is not queued without its referral")


@dataclass
class Report:
    counts: dict[str, Counter] = field(default_factory=dict)   # section -> outcome -> n
    refused: list[p.Note] = field(default_factory=list)
    skipped: list[p.Note] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    def add(self, section: str, outcome: str, n: int = 1) -> None:
        self.counts.setdefault(section, Counter())[outcome] += n

    def refuse(self, note: p.Note) -> None:
        self.refused.append(note)
        self.add(note.section, "refused")

    def skip(self, note: p.Note) -> None:
        self.skipped.append(note)
        self.add(note.section, "skipped")

    def changed(self) -> int:
        return sum(c["created"] + c["updated"] for c in self.counts.values())

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run, "seconds": round(self.seconds, 2),
            "counts": {s: dict(c) for s, c in self.counts.items()},
            "refused_reasons": _reasons(self.refused), "skipped_reasons": _reasons(self.skipped),
            "refused": [n.__dict__ for n in self.refused],
        }


def _reasons(notes: list[p.Note]) -> dict[str, int]:
    """Reasons with their row-specific values masked, most frequent first."""
    def general(reason: str) -> str:
        reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
        return re.sub(r"[\w:+.-]*\d[\w:+.-]*", "…", reason)
    c = Counter(f"{n.section}: {general(n.reason)}" for n in notes)
    return dict(c.most_common())


class Importer:
    def __init__(self, service, *, workers: int = 4, dry_run: bool = False, progress: Progress | None = None):
        self.q = service
        self.workers = workers
        self.dry_run = dry_run
        self.progress = progress

    def _task(self, name: str, total: int):
        return self.progress.add_task(name, total=total) if self.progress else None

    def _advance(self, task, n: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, n)

    def _each(self, section: str, items: list, fn, report: Report) -> None:
        """fn(item) -> (outcome, refusal) for each item, in parallel: the
        writes wait on the database, not on this process."""
        task = self._task(section, len(items))
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for outcome, note in pool.map(fn, items, chunksize=16):
                if note is not None:
                    report.refuse(note)
                else:
                    report.add(section, outcome)
                self._advance(task)

    def run(self, plan: p.Plan, source: str) -> Report:
        from kezek.importer.speed import cache_event_validation
        from services.queue.service import JoinQueue, NotFound, Refused

        cache_event_validation()
        started = time.perf_counter()
        report = Report(dry_run=self.dry_run)
        actor = ACTOR.format(source=source)
        for note in plan.refused:
            report.refuse(note)
        for note in plan.skipped:
            report.skip(note)

        # Kindergartens: created, updated when the export differs, else unchanged.
        existing = {k["id"]: k for k in self.q.kindergartens()}
        task = self._task("kindergartens", len(plan.kindergartens))
        for kg in plan.kindergartens:
            want = {"name": kg.name, "district": kg.district, "address": kg.address, "languages": list(kg.languages)}
            have = existing.get(kg.id)
            if have is not None and all(have.get(k) == v for k, v in want.items()):
                report.add("kindergartens", "unchanged")
            else:
                if not self.dry_run:
                    self.q.save_kindergarten({"id": kg.id, **want}, actor=actor)
                report.add("kindergartens", "created" if have is None else "updated")
            self._advance(task)

        # Places: published up to the export's count, so a second run adds none.
        held = {(r["kindergarten"], r["cohort"], r["language"], r["for_category"]): r["free"] + r["held"] + r["enrolled"]
                for r in self.q.places()}

        def place(pool: p.Places) -> tuple[str, p.Note | None]:
            have = held.get((pool.kindergarten, pool.cohort, pool.language, pool.for_category), 0)
            missing = pool.free - have
            if pool.free == 0 or missing == 0:
                return "unchanged", None
            if missing < 0:
                return "refused", p.Note("places", f"{pool.kindergarten}/{pool.cohort}/{pool.language}",
                                         f"the register already holds {have} places, more than the export's "
                                         f"{pool.free}")
            if not self.dry_run:
                self.q.publish_places(pool.kindergarten, pool.cohort, pool.language, missing, actor=actor,
                                      for_category=pool.for_category)
            return "created", None

        self._each("places", plan.places, place, report)

        can_import_referrals = hasattr(self.q, "import_referral")
        referred = {r.application_id for r in plan.referrals}
        apps = plan.applications
        if not can_import_referrals:
            held_back = [a for a in apps if a.id in referred]
            apps = [a for a in apps if a.id not in referred]
            for a in held_back:
                report.refuse(p.Note("applications", a.old_id, NO_REFERRAL_IMPORT))
            for r in plan.referrals:
                report.refuse(p.Note("referrals", r.old_id, NO_REFERRAL_IMPORT))

        def one(app: p.Application) -> tuple[str, p.Note | None]:
            try:
                self.q.application(app.id)
                return "unchanged", None
            except NotFound:
                pass
            if self.dry_run:
                return "created", None
            try:
                self.q.join_queue(JoinQueue(
                    pin=app.pin, surname=app.surname, name=app.name, patronymic=app.patronymic,
                    birth_date=app.birth_date, category=app.category, language=app.language,
                    preferences=app.preferences, queue_date=app.queue_date, application_id=app.id,
                    parent_id=app.parent_id), actor=actor)
                return "created", None
            except Refused as exc:
                return "refused", p.Note("applications", app.old_id, exc.message)

        self._each("applications", apps, one, report)

        if can_import_referrals:
            task = self._task("referrals", len(plan.referrals))
            for r in plan.referrals:
                try:
                    if self.dry_run:
                        report.add("referrals", "created")
                    else:
                        created = self.q.import_referral(
                            referral_id=r.id, application_id=r.application_id, kindergarten=r.kindergarten,
                            cohort=r.cohort, language=r.language, category=r.category, for_category=r.for_category,
                            state=r.state, issued_at=r.issued_at, deadline=r.deadline,
                            needs_confirmation=r.needs_confirmation, actor=actor)
                        report.add("referrals", "created" if created else "unchanged")
                except Refused as exc:
                    report.refuse(p.Note("referrals", r.old_id, exc.message))
                self._advance(task)
        report.seconds = time.perf_counter() - started
        return report


def print_report(report: Report, console: Console) -> None:
    title = "Import (dry run: nothing written)" if report.dry_run else "Import"
    table = Table(title=f"{title} in {report.seconds:.1f} s")
    outcomes = ["created", "updated", "unchanged", "skipped", "refused"]
    table.add_column("rows")
    for o in outcomes:
        table.add_column(o, justify="right")
    for section in ("kindergartens", "places", "children", "parents", "applications", "referrals"):
        c = report.counts.get(section, Counter())
        table.add_row(section, *[str(c.get(o, 0)) for o in outcomes])
    console.print(table)
    for label, notes in (("refused", report.refused), ("skipped", report.skipped)):
        if notes:
            console.print(f"[bold]{label}[/bold], by reason:")
            for reason, n in list(_reasons(notes).items())[:20]:
                console.print(f"  {n:>6}  {reason}")


def build_service(settings):
    from services.queue.runtime import build_service as build
    return build(settings)


def policy_of(service):
    got = service.policy()
    return got[0] if isinstance(got, tuple) else got


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kezek import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a .json export or a folder of CSV files")
    parser.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    parser.add_argument("--workers", type=int, default=4, help="parallel queue writes (default 4)")
    parser.add_argument("--report", type=Path, help="write the full report (every refused row) as JSON here")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line at the end")
    args = parser.parse_args(argv)

    from kezek.importer.speed import cache_event_validation
    from kezek.settings import Settings

    cache_event_validation()
    console = Console(stderr=True)
    try:
        export = read(args.file)
    except ExportError as exc:
        console.print(f"[red]kezek import: {exc}[/red]")
        return 2
    service = build_service(Settings())
    the_plan = p.make_plan(export, policy_of(service))
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        report = Importer(service, workers=args.workers, dry_run=args.dry_run, progress=progress).run(
            the_plan, export.source)
    print_report(report, console)
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) + "\n")
    if args.json:
        print(json.dumps({k: v for k, v in report.to_dict().items() if k != "refused"}, ensure_ascii=False))
    sys.stdout.flush()
    return 0
