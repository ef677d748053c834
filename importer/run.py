"""`kezek import FILE`: moves the old portal's export into Kezek.

The export is checked row by row (plan.py), then applied through the queue
service's use cases, so every rule and every event of a normal registration
applies: a queue entry keeps its queue date, a second entry of a child is
refused. Entries go in batches (the queue's `imports.join_many`: the same
rules, one transaction and bulk writes per batch, each row refused on its
own). Idempotent: ids are derived from the export's ids, what exists is
compared and skipped, places are published only up to the export's count,
so a second run changes nothing. `--dry-run` checks and reports only.

Parents' accounts go to the registration service (`import_accounts`: no
password; the parent activates the account with a link asked for on the
portal's "Get an activation link" page); after the entries, the queued
children's applications go there too (`import_applications`, report section
"cabinets"), so that the parent's cabinet lists them. `--no-parents` leaves
both out.

Live referrals are resumed through the queue's `imports.referrals_many`: it
records the referral with its state, deadline and extension, and its
workflow starter then starts the ReferralWorkflow, which continues from
there (ReferralInput.resume) to the recorded deadline."""
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

from importer import plan as p
from importer.export import ExportError, read

ACTOR = "import:{source}"


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
    def __init__(self, service, *, workers: int = 4, dry_run: bool = False, progress: Progress | None = None,
                 batch: int = 1000, registration=None):
        self.q = service
        self.registration = registration   # None: parents' accounts are left out of this run
        self.workers = workers
        self.batch = max(1, batch)
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
        from importer.speed import cache_event_validation

        cache_event_validation()
        started = time.perf_counter()
        report = Report(dry_run=self.dry_run)
        actor = ACTOR.format(source=source)
        for note in plan.refused:
            report.refuse(note)
        for note in plan.skipped:
            report.skip(note)
        self._kindergartens(plan, report, actor)
        parents = self._parents(plan, report)
        # Entries in batches (one transaction and a few bulk statements each),
        # then the live referrals, then the places: no free place is in the
        # register while the children who may want it are still coming in.
        joined = self._applications(plan, report, actor)
        self._cabinets(plan, report, joined, parents)
        in_register = self._referrals(plan, report, actor, joined)
        self._places(plan, report, actor, in_register)
        report.seconds = time.perf_counter() - started
        return report

    def _kindergartens(self, plan: p.Plan, report: Report, actor: str) -> None:
        """Created, updated when the export differs, else unchanged."""
        existing = {k["id"]: k for k in self.q.kindergartens.list()}
        task = self._task("kindergartens", len(plan.kindergartens))
        for kg in plan.kindergartens:
            want = {"name": kg.name, "district": kg.district, "address": kg.address, "languages": list(kg.languages)}
            have = existing.get(kg.id)
            if have is not None and all(have.get(k) == v for k, v in want.items()):
                report.add("kindergartens", "unchanged")
            else:
                if not self.dry_run:
                    self.q.kindergartens.save({"id": kg.id, **want}, actor=actor)
                report.add("kindergartens", "created" if have is None else "updated")
            self._advance(task)

    def _applications(self, plan: p.Plan, report: Report, actor: str) -> set[str]:
        """The queue entries, in parallel batches; the ids that joined."""
        from services.queue.domain import JoinQueue, Refused

        apps = plan.applications
        task = self._task("applications", len(apps))

        def batch(part: list[p.Application]) -> list[tuple[str, p.Note | None]]:
            got = self.q.imports.join_many([JoinQueue(
                pin=a.pin, surname=a.surname, name=a.name, patronymic=a.patronymic, birth_date=a.birth_date,
                category=a.category, language=a.language, preferences=a.preferences, queue_date=a.queue_date,
                application_id=a.id, parent_id=a.parent_id) for a in part], actor=actor, dry_run=self.dry_run)
            out = []
            for a, g in zip(part, got):
                if isinstance(g, Refused) and self.dry_run and (g.field or "").startswith("preferences"):
                    # A dry run creates no kindergarten; the plan has checked
                    # the preferences against the export's own.
                    out.append(("created", None))
                elif isinstance(g, Refused):
                    out.append(("refused", p.Note("applications", a.old_id, g.message)))
                else:
                    out.append(("created" if g.created else "unchanged", None))
            return out

        joined: set[str] = set()
        for part, outcomes in self._batches(apps, batch):
            for a, (outcome, note) in zip(part, outcomes):
                if note is not None:
                    report.refuse(note)
                else:
                    report.add("applications", outcome)
                    joined.add(a.id)
            self._advance(task, len(part))
        return joined

    def _batches(self, items: list, fn):
        """(part, fn(part)) for each batch of items, computed in parallel."""
        parts = [items[i:i + self.batch] for i in range(0, len(items), self.batch)]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            yield from zip(parts, pool.map(fn, parts))

    def _referrals(self, plan: p.Plan, report: Report, actor: str, joined: set[str]) -> Counter:
        """The live referrals whose application joined; the places they
        hold, per pool."""
        from services.queue.domain import Refused

        by_id = {a.id: a for a in plan.applications}
        in_register: Counter = Counter()
        task = self._task("referrals", len(plan.referrals))
        ready = []
        for r in plan.referrals:
            if r.application_id in joined:
                ready.append(r)
            else:
                report.refuse(p.Note("referrals", r.old_id,
                                     f"its application {by_id[r.application_id].old_id} was refused"))
                self._advance(task)

        def referrals(part: list[p.Referral]) -> list:
            if self.dry_run:
                return [True] * len(part)
            return self.q.imports.referrals_many(part, actor=actor)

        for part, outcomes in self._batches(ready, referrals):
            for r, got in zip(part, outcomes):
                if isinstance(got, Refused):
                    report.refuse(p.Note("referrals", r.old_id, got.message))
                    continue
                report.add("referrals", "created" if got else "unchanged")
                if not self.dry_run:
                    in_register[(r.kindergarten, r.cohort, r.language, r.for_category)] += 1
            self._advance(task, len(part))
        return in_register

    def _places(self, plan: p.Plan, report: Report, actor: str, in_register: Counter) -> None:
        """Published up to the export's count of free places, on top of the
        places the imported referrals hold, so a second run adds none."""
        from services.queue.domain import PublishPlaces, Refused

        held = {(r["kindergarten"], r["cohort"], r["language"], r["for_category"]): r["free"] + r["held"] + r["enrolled"]
                for r in self.q.views.places()}
        task = self._task("places", len(plan.places))
        wanted: list[tuple[p.Places, int]] = []
        for pool in plan.places:
            key = (pool.kindergarten, pool.cohort, pool.language, pool.for_category)
            have = held.get(key, 0) - in_register[key]
            missing = pool.free - have
            if pool.free == 0 or missing == 0:
                report.add("places", "unchanged")
            elif missing < 0:
                report.refuse(p.Note("places", f"{pool.kindergarten}/{pool.cohort}/{pool.language}",
                                     f"the register already holds {have} places, more than the export's {pool.free}"))
            elif self.dry_run:
                report.add("places", "created")
            else:
                wanted.append((pool, missing))
                continue
            self._advance(task)
        # One batch after another: a batch locks the pools of its kindergartens.
        for i in range(0, len(wanted), self.batch):
            part = wanted[i:i + self.batch]
            got = self.q.imports.publish_places_many([PublishPlaces(pool.kindergarten, pool.cohort, pool.language, n,
                                                            pool.for_category) for pool, n in part], actor=actor)
            for (pool, _), g in zip(part, got):
                if isinstance(g, Refused):
                    report.refuse(p.Note("places", f"{pool.kindergarten}/{pool.cohort}/{pool.language}", g.message))
                else:
                    report.add("places", "created")
            self._advance(task, len(part))

    def _parents(self, plan: p.Plan, report: Report) -> dict[str, bool]:
        """Parents' accounts, through the registration service: without a
        password, activated by the parent (a link asked for by e-mail).
        The accounts there after this run: id -> created by it."""
        accepted: dict[str, bool] = {}
        if self.registration is None:
            for parent in plan.parents:
                report.skip(p.Note("parents", parent.old_id, "parents' accounts are kept by the registration "
                                                             "service, which this run was not given"))
            return accepted
        from services.registration.service import ImportAccount

        task = self._task("parents", len(plan.parents))
        for i in range(0, len(plan.parents), self.batch):
            part = plan.parents[i:i + self.batch]
            accounts = [ImportAccount(id=x.id, email=x.email, pin=x.pin, surname=x.surname, name=x.name,
                                      phone=x.phone, patronymic=x.patronymic) for x in part]
            got = self.registration.import_accounts(accounts, dry_run=self.dry_run)
            for x, g in zip(part, got):
                if isinstance(g, Exception):
                    report.refuse(p.Note("parents", x.old_id, str(g)))
                else:
                    report.add("parents", "created" if g else "unchanged")
                    accepted[x.id] = bool(g)
            self._advance(task, len(part))
        return accepted

    def _cabinets(self, plan: p.Plan, report: Report, joined: set[str], parents: dict[str, bool]) -> None:
        """The queued children's applications, recorded by the registration
        service for their parents' cabinets (`import_applications`: the
        queue's ids, nothing emitted, so nothing is queued twice)."""
        from services.registration.service import ImportApplication

        if self.registration is None:
            return   # the parents are reported skipped; their cabinets do not exist
        wanted = []
        for a in plan.applications:
            if a.id not in joined:
                continue   # refused by the queue, reported there
            if a.parent_id is None:
                report.skip(p.Note("cabinets", a.old_id, "no parent in the export"))
            elif a.parent_id not in parents:
                report.skip(p.Note("cabinets", a.old_id, "its parent's account was refused"))
            else:
                wanted.append(a)
        to_come = frozenset(pid for pid, created in parents.items() if created) if self.dry_run else frozenset()
        task = self._task("cabinets", len(wanted))
        for i in range(0, len(wanted), self.batch):
            part = wanted[i:i + self.batch]
            got = self.registration.import_applications([ImportApplication(
                id=a.id, account_id=a.parent_id, child_pin=a.pin, surname=a.surname, name=a.name,
                patronymic=a.patronymic, birth_date=a.birth_date, category=a.category, language=a.language,
                queue_date=a.queue_date, preferences=a.preferences) for a in part],
                dry_run=self.dry_run, accounts_to_come=to_come)
            for a, g in zip(part, got):
                if isinstance(g, Exception):
                    report.refuse(p.Note("cabinets", a.old_id, str(g)))
                else:
                    report.add("cabinets", "created" if g else "unchanged")
            self._advance(task, len(part))


def print_report(report: Report, console: Console) -> None:
    title = "Import (dry run: nothing written)" if report.dry_run else "Import"
    table = Table(title=f"{title} in {report.seconds:.1f} s")
    outcomes = ["created", "updated", "unchanged", "skipped", "refused"]
    table.add_column("rows")
    for o in outcomes:
        table.add_column(o, justify="right")
    for section in ("kindergartens", "places", "children", "parents", "applications", "cabinets", "referrals"):
        c = report.counts.get(section, Counter())
        table.add_row(section, *[str(c.get(o, 0)) for o in outcomes])
    console.print(table)
    for label, notes in (("refused", report.refused), ("skipped", report.skipped)):
        if notes:
            console.print(f"[bold]{label}[/bold], by reason:")
            for reason, n in list(_reasons(notes).items())[:20]:
                console.print(f"  {n:>6}  {reason}")


def build_queue(settings):
    from services.queue.runtime import build_queue as build
    return build(settings)


def build_registration(settings):
    from kezek.db import make_session_factory, service_engine
    from services.registration.address import ReferenceAddressRegistry
    from services.registration.service import RegistrationService

    engine = service_engine(settings, "registration")
    return RegistrationService(make_session_factory(engine), ReferenceAddressRegistry(),
                               code_key=settings.secret_key.get_secret_value().encode(), country=settings.country)


def policy_of(queue):
    return queue.policy.current()[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kezek import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a .json export or a folder of CSV files")
    parser.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    parser.add_argument("--workers", type=int, default=2, help="parallel queue writes (default 2)")
    parser.add_argument("--batch", type=int, default=1000, help="queue entries per transaction (default 1000)")
    parser.add_argument("--no-parents", action="store_true",
                        help="leave the parents' accounts out (the registration service's database)")
    parser.add_argument("--report", type=Path, help="write the full report (every refused row) as JSON here")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line at the end")
    args = parser.parse_args(argv)

    from importer.speed import cache_event_validation
    from kezek.settings import Settings

    cache_event_validation()
    console = Console(stderr=True)
    try:
        export = read(args.file)
    except ExportError as exc:
        console.print(f"[red]kezek import: {exc}[/red]")
        return 2
    settings = Settings()
    service = build_queue(settings)
    registration = None if args.no_parents else build_registration(settings)
    the_plan = p.make_plan(export, policy_of(service))
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        report = Importer(service, workers=args.workers, dry_run=args.dry_run, progress=progress,
                          batch=args.batch, registration=registration).run(
            the_plan, export.source)
    print_report(report, console)
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) + "\n")
    if args.json:
        print(json.dumps({k: v for k, v in report.to_dict().items() if k != "refused"}, ensure_ascii=False))
    sys.stdout.flush()
    return 0
