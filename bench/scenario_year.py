"""One year of a district's queue through `kezek scenario` (issue 5).

Generates a scenario of 1,000 children (three birth-year cohorts, the
extraordinary and privileged categories, two languages, 1-3 preferences
among 20 kindergartens), places published on the first working day of each
month, and for each referral what its parent does: enrol, cancel, let it
expire, confirm the privilege (sometimes after the one extension), or have
it rejected. The parents' acts are planned by a small simulation with the
same rules (services/queue/domain/ allocation, kezek.calendar windows), so
almost every step is one the rules allow.

Then runs it with the real allocation and the real ReferralWorkflow on the
time-skipping Temporal server (scenario.runner) and prints figures;
the target is under a minute. The last line is one JSON object.

    .venv/bin/python bench/scenario_year.py [--children 1000] [--keep FILE] [--sandbox full|light|off]
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from kezek import calendar as kcal  # noqa: E402
from services.queue import domain  # noqa: E402

COUNTRY = "KG"
START = datetime(2027, 1, 4, 9, 0)
UNTIL = datetime(2028, 1, 1, 0, 0)
KINDERGARTENS = [f"kg{i:02d}" for i in range(1, 21)]
LANGUAGES = ("ru", "ky")


def pin(sex: int, born: date, serial: int) -> str:
    return f"{sex}{born:%d%m%Y}{serial:05d}"


def make_children(n: int, rnd: random.Random) -> list[dict]:
    children = []
    for i in range(n):
        cohort = rnd.choice((2023, 2024, 2024, 2025))
        born = date(cohort, 1, 1) + timedelta(days=rnd.randrange(365))
        applied = datetime(cohort, 1, 1) + timedelta(days=rnd.randrange(400, 700), hours=rnd.randrange(8, 18))
        applied = min(applied, START - timedelta(days=1))
        r = rnd.random()
        category = "extraordinary" if r < 0.04 else "privileged" if r < 0.14 else "general"
        prefs = rnd.sample(KINDERGARTENS, rnd.choice((1, 2, 3)))
        children.append({
            "id": f"c{i:04d}", "pin": pin(rnd.choice((1, 2)), born, i + 1), "category": category,
            "applied": applied.isoformat(timespec="seconds"), "preferences": prefs,
            "language": "ru" if rnd.random() < 0.7 else "ky",
            "_born": born, "_applied": applied})
    return children


class Planner:
    """Plays the year with the scenario's rules to decide when each parent
    acts; only the steps it plans go into the file."""

    def __init__(self, children: list[dict], rnd: random.Random) -> None:
        self.cal = kcal.calendar(COUNTRY)
        self.policy = domain.Policy(country=COUNTRY)
        self.rnd = rnd
        self.kids = {c["id"]: c for c in children}
        self.state = {c["id"]: {"status": "queued", "category": c["category"], "prefs": list(c["preferences"])}
                      for c in children}
        self.free: Counter = Counter()
        self.steps: list[tuple[datetime, int, dict]] = []   # heap of (at, seq, step)
        self.out: list[dict] = []
        self.seq = 0
        self.deadlines: dict[str, datetime] = {}            # child -> live referral deadline
        self.stoplist: dict[str, datetime] = {}

    def plan(self, at: datetime, step: dict) -> None:
        self.seq += 1
        heapq.heappush(self.steps, (at, self.seq, step))

    def next_working(self, moment: datetime, n: int = 1, hour: int = 10) -> datetime:
        day = self.cal.nth_working_day_after(moment.date(), n)
        return datetime.combine(day, datetime.min.time()).replace(hour=hour)

    def publish_schedule(self) -> None:
        month = date(START.year, START.month, 1)
        cohorts = (2023, 2024, 2025)
        while month < UNTIL.date():
            first = month if self.cal.is_working_day(month) else self.cal.nth_working_day_after(month, 1)
            at = datetime.combine(first, datetime.min.time()).replace(hour=10)
            if at >= START:
                for kg in KINDERGARTENS:
                    for cohort in cohorts:
                        for lang in LANGUAGES:
                            n = self.rnd.choice((0, 0, 1, 1, 2)) if lang == "ru" else self.rnd.choice((0, 0, 0, 1))
                            if n:
                                self.plan(at, {"do": "publish_places", "kindergarten": kg, "cohort": cohort,
                                               "language": lang, "places": n})
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)

    def waiting(self) -> list[domain.Applicant]:
        out = []
        for cid, st in self.state.items():
            if st["status"] == "queued":
                k = self.kids[cid]
                out.append(domain.Applicant(cid, k["_born"], st["category"], k["_applied"], k["language"],
                                            tuple(st["prefs"])))
        return out

    def allocate(self, moment: datetime) -> None:
        free = {k: n for k, n in self.free.items() if n > 0}
        if not free:
            return
        keys = {(k.kindergarten, k.cohort, k.language) for k, _ in free}
        waiting = [a for a in self.waiting() if any((kg, a.cohort, a.language) in keys for kg in a.preferences)]
        for a in domain.allocate(waiting, free, moment.date(), self.policy):
            self.free[(a.place, a.for_category)] -= 1
            st = self.state[a.child_id]
            st.update(status="referred", place=a.place)
            self.issue(a.child_id, moment)

    def issue(self, cid: str, at: datetime) -> None:
        st = self.state[cid]
        deadline = self.cal.window_end(at, 5)
        self.deadlines[cid] = deadline.replace(tzinfo=None)
        needs = self.policy.category(st["category"]).needs_confirmation
        r = self.rnd.random()
        if needs:
            if r < 0.55:
                confirm = self.next_working(at, 1, 10)
                self.plan(confirm, {"do": "confirm_privilege", "child": cid,
                                    "certificate_issued": (confirm.date() - timedelta(days=3)).isoformat()})
            elif r < 0.70:
                last = self.cal.last_working_day(at, 5)
                self.plan(datetime.combine(last, datetime.min.time()).replace(hour=10),
                          {"do": "extend_referral", "child": cid})
            elif r < 0.85:
                self.plan(self.next_working(at, 1, 11), {"do": "reject_privilege", "child": cid,
                                                         "reason": "not confirmed by the employer"})
            # else: nothing; the confirmation window runs out
        else:
            if r < 0.78:
                self.plan(self.next_working(at, 1 + int(r * 10) % 4, 11), {"do": "enrol", "child": cid})
            elif r < 0.90:
                self.plan(self.next_working(at, 1, 9), {"do": "cancel_referral", "child": cid})
            # else: nothing; the referral expires

    def apply(self, at: datetime, step: dict) -> None:
        cid = step.get("child")
        st = self.state.get(cid) if cid else None
        do = step["do"]
        if do == "publish_places":
            key = domain.PlaceKey(step["kindergarten"], step["cohort"], step["language"])
            self.free[(key, None)] += step["places"]
        elif do == "enrol":
            st["status"] = "enrolled"
            self.deadlines.pop(cid, None)
        elif do == "cancel_referral":
            st["status"] = "queued"
            self.free[(st["place"], None)] += 1
            if st["place"].kindergarten in st["prefs"]:
                st["prefs"].remove(st["place"].kindergarten)
            self.deadlines.pop(cid, None)
        elif do == "reject_privilege":
            st["status"], st["category"] = "queued", "general"
            self.free[(st["place"], None)] += 1
            self.deadlines.pop(cid, None)
        elif do == "extend_referral":
            self.deadlines[cid] += timedelta(days=30)
            confirm = self.next_working(at, 3, 10)
            self.plan(confirm, {"do": "confirm_privilege", "child": cid,
                                "certificate_issued": (confirm.date() - timedelta(days=2)).isoformat()})
        elif do == "confirm_privilege":
            deadline = self.cal.window_end(at, 5).replace(tzinfo=None)
            self.deadlines[cid] = deadline
            if self.rnd.random() < 0.9:
                self.plan(self.next_working(at, 1, 12), {"do": "enrol", "child": cid})
        self.out.append({"at": at.isoformat(timespec="seconds"), **step})

    def run(self) -> list[dict]:
        self.publish_schedule()
        day = START.date() + timedelta(days=1)
        while True:
            candidates = [datetime.combine(day, datetime.min.time())]
            if self.steps:
                candidates.append(self.steps[0][0])
            timers = list(self.deadlines.values()) + list(self.stoplist.values())
            if timers:
                candidates.append(min(timers))
            moment = min(candidates)
            if moment >= UNTIL:
                break
            changed = moment == datetime.combine(day, datetime.min.time())
            if changed:
                day += timedelta(days=1)
            for cid, dl in sorted(self.deadlines.items()):
                if dl == moment:
                    st = self.state[cid]
                    del self.deadlines[cid]
                    st["status"] = "paused"
                    self.free[(st["place"], None)] += 1
                    self.stoplist[cid] = moment + timedelta(days=10)
                    changed = True
            for cid, end in sorted(self.stoplist.items()):
                if end == moment:
                    del self.stoplist[cid]
                    self.state[cid]["status"] = "queued"
                    changed = True
            if changed:
                self.allocate(moment)
            while self.steps and self.steps[0][0] == moment:
                _, _, step = heapq.heappop(self.steps)
                self.apply(moment, step)
                self.allocate(moment)
        return self.out


def build(n_children: int, seed: int) -> dict:
    rnd = random.Random(seed)
    children = make_children(n_children, rnd)
    steps = Planner(children, rnd).run()
    return {
        "country": COUNTRY, "start": START.isoformat(), "until": UNTIL.isoformat(),
        "kindergartens": [{"id": kg, "languages": list(LANGUAGES)} for kg in KINDERGARTENS],
        "children": [{k: v for k, v in c.items() if not k.startswith("_")} for c in children],
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--keep", help="also write the generated scenario here")
    parser.add_argument("--sandbox", choices=("full", "light", "off"), default="off",
                        help="the workflow sandbox of the run (kezek scenario's default: light)")
    args = parser.parse_args()

    from scenario.model import parse
    from scenario.runner import Runner

    t0 = time.perf_counter()
    text = yaml.safe_dump(build(args.children, args.seed), sort_keys=False, allow_unicode=True)
    if args.keep:
        Path(args.keep).write_text(text)
    scenario = parse(text)
    t1 = time.perf_counter()
    events: Counter = Counter()
    cpu0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    runner = Runner(scenario, lambda line: events.update([line["event"]]), sandbox=args.sandbox)
    final = asyncio.run(runner.run())
    t2 = time.perf_counter()
    cpu1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_runner = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    cpu_server = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    load = os.getloadavg()[0]
    statuses = Counter(c["status"] for c in final["children"].values())
    s = runner.stats
    print(f"scenario: {len(scenario.children)} children, {len(scenario.steps)} steps, "
          f"{scenario.start:%Y-%m-%d} .. {scenario.until:%Y-%m-%d} ({COUNTRY})")
    print(f"generated and checked in {t1 - t0:.1f} s")
    print(f"run: {s.seconds:.1f} s for {s.moments} moments, {s.referrals} referral workflows, {s.updates} updates, "
          f"{s.notifications} notifications, {s.lines} output lines")
    print(f"waiting on Temporal: steps {s.in_steps:.1f} s, issuing {s.in_issuing:.1f} s, "
          f"deadlines and stop-lists {s.in_timers:.1f} s, clock {s.in_clock:.1f} s")
    print("events: " + ", ".join(f"{k} {v}" for k, v in sorted(events.items())))
    print("final: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(f"cpu: runner and worker {cpu_runner:.1f} s, time-skipping server {cpu_server:.1f} s; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    verdict = "under a minute" if s.seconds < 60 else "OVER a minute"
    print(f"{verdict}: {s.seconds:.1f} s (workflow sandbox: {args.sandbox})")
    print(json.dumps({"children": len(scenario.children), "steps": len(scenario.steps), "moments": s.moments,
                      "referrals": s.referrals, "updates": s.updates, "lines": s.lines,
                      "refused": events.get("step.refused", 0), "run_seconds": round(s.seconds, 2),
                      "cpu_runner_seconds": round(cpu_runner, 1), "cpu_server_seconds": round(cpu_server, 1),
                      "load_average": round(load, 1),
                      "sandbox": args.sandbox}))


if __name__ == "__main__":
    main()
