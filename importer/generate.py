"""A generated export of the old portal, with the bad rows a real one has:
duplicate PINs, impossible and future dates, unknown kindergartens, unknown
categories, second applications of one child, broken referrals.

    python -m importer.generate examples/import --applications 2000 --seed 7

writes sample.json and the same rows as CSV files in sample-csv/. The
tests and bench/import.py use it; `expected_bad_rows` says what a correct
import must refuse."""
from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from importer.export import Export, write_csv_dir, write_json
from kezek.categories import EXTRAORDINARY, GENERAL, PRIVILEGED
from workflows import rules

BISHKEK = timezone(timedelta(hours=6))
DISTRICTS = ["41711100000000", "41711200000000", "41711300000000", "41711400000000", "41721000000000",
             "41704210000000"]
SURNAMES = ["Асанов", "Токтогулов", "Садыров", "Жээнбеков", "Абдыкадыров", "Бакиев", "Осмонов", "Мамытов",
            "Ismailov", "Kurmanbekov"]
NAMES = ["Айбек", "Нурсултан", "Эрлан", "Бакыт", "Азамат", "Айгерим", "Айпери", "Жылдыз", "Нургуль", "Aidana"]
CATEGORIES = [GENERAL] * 17 + [PRIVILEGED] * 2 + [EXTRAORDINARY]
STREETS = ["Токтогула", "Киевская", "Манаса", "Ахунбаева", "Чуй"]


def generate(applications: int = 2000, kindergartens: int = 40, seed: int = 7,
             now: datetime | None = None, bad: bool = True) -> Export:
    rnd = random.Random(seed)
    now = now or datetime(2025, 3, 3, 9, 0, tzinfo=BISHKEK)
    ex = Export(source="balalyk", country="KG")
    kgs = []
    for i in range(1, kindergartens + 1):
        langs = ["ky", "ru"] if i % 3 else ["ru"]
        kgs.append((f"kg-{i:04d}", langs))
        ex["kindergartens"].append({
            "id": f"kg-{i:04d}", "name": f"Балдар бакчасы №{i}", "district": DISTRICTS[i % len(DISTRICTS)],
            "address": f"ул. {rnd.choice(STREETS)} {rnd.randint(1, 200)}", "languages": langs})
    for kid, langs in kgs:
        for cohort in range(now.year - 5, now.year - 1):
            for lang in langs:
                ex["places"].append({"kindergarten": kid, "cohort": cohort, "language": lang, "category": "",
                                     "free": rnd.randint(0, 3)})
    serials = rnd.sample(range(100000), min(applications + 100, 100000))
    pins: set[str] = set()
    for n in range(1, applications + 1):
        birth = now.date() - timedelta(days=rnd.randint(400, 365 * 6))
        pin = f"{rnd.choice('12')}{birth:%d%m%Y}{serials[n] if n < len(serials) else rnd.randrange(100000):05d}"
        while pin in pins:  # large exports: draw again rather than make an unplanned duplicate
            pin = f"{pin[:9]}{rnd.randrange(100000):05d}"
        pins.add(pin)
        cid = f"c{n}"
        ex["children"].append({"id": cid, "pin": pin, "surname": rnd.choice(SURNAMES), "name": rnd.choice(NAMES),
                               "patronymic": "", "birth_date": birth.isoformat()})
        ex["parents"].append({"id": f"p{n}", "child_id": cid, "role": rnd.choice(["mother", "father"]),
                              "surname": rnd.choice(SURNAMES), "name": rnd.choice(NAMES),
                              "pin": f"{rnd.choice('12')}0101{1980 + rnd.randint(0, 20)}{rnd.randint(0, 99999):05d}",
                              "phone": f"+996555{rnd.randint(0, 999999):06d}", "email": f"parent{n}@example.kg"})
        lang = rnd.choice(["ky", "ru", "ru"])
        choices = [k for k, langs in kgs if lang in langs]
        prefs = rnd.sample(choices, rnd.randint(1, 3))
        queued = datetime.combine(birth, datetime.min.time(), BISHKEK) + timedelta(
            days=rnd.randint(1, max(2, (now.date() - birth).days - 1)), seconds=rnd.randint(0, 86399))
        status = "queued" if n % 25 else "referred"
        if n % 97 == 0:
            status = "enrolled"
        ex["applications"].append({
            "id": str(100000 + n), "child_id": cid, "parent_id": f"p{n}", "category": rnd.choice(CATEGORIES),
            "queue_date": queued.isoformat(), "language": lang, "preferences": prefs, "status": status})
        if status == "referred":
            issued = now - timedelta(days=rnd.randint(0, 3), hours=rnd.randint(1, 8))
            deadline = (issued + timedelta(days=7)).replace(hour=18, minute=0, second=0)
            referral = {
                "id": f"r{n}", "application_id": str(100000 + n), "kindergarten": prefs[0],
                "cohort": birth.year, "language": lang, "category": "general",
                "state": "awaiting_enrolment", "issued_at": issued.isoformat(),
                "deadline": deadline.isoformat(), "needs_confirmation": "false"}
            if ex["applications"][-1]["category"] == EXTRAORDINARY:
                # The privilege must be confirmed: some wait for it, some of
                # them with the extension used, some were confirmed and wait
                # for enrolment. Derived from n: the random stream stays as it was.
                referral.update(category=EXTRAORDINARY, needs_confirmation="true", extended="false")
                kind = (n // 25) % 3
                if kind == 0:
                    referral["confirmed_at"] = (issued + (now - issued) / 2).replace(microsecond=0).isoformat()
                else:
                    referral["state"] = rules.S.AWAITING_CONFIRMATION.value
                    if kind == 1:
                        referral.update(extended="true",
                                        deadline=rules.extended_deadline(deadline, rules.DEFAULTS).isoformat())
            ex["referrals"].append(referral)
        elif status == "enrolled":
            ex["referrals"].append({
                "id": f"r{n}", "application_id": str(100000 + n), "kindergarten": prefs[0], "cohort": birth.year,
                "language": lang, "category": "general", "state": "enrolled",
                "issued_at": (now - timedelta(days=60)).isoformat(), "deadline": (now - timedelta(days=53)).isoformat(),
                "needs_confirmation": "false"})
    if bad:
        add_bad_rows(ex, rnd, now)
    return ex


def add_bad_rows(ex: Export, rnd: random.Random, now: datetime) -> None:
    """About 2 % of bad rows, of every kind a real export has."""
    children, apps = ex["children"], ex["applications"]
    k = max(1, len(apps) // 250)
    nxt = len(children) + 1

    def child_app(pin: str, **app) -> None:
        nonlocal nxt
        cid = f"c{nxt}"
        children.append({"id": cid, "pin": pin, "surname": "Асанов", "name": "Айбек", "patronymic": "",
                         "birth_date": ""})
        apps.append({"id": str(100000 + nxt), "child_id": cid, "parent_id": "", "category": "general",
                     "queue_date": (now - timedelta(days=100)).isoformat(), "language": "ru",
                     "preferences": ["kg-0001"], "status": "queued", **app})
        nxt += 1

    for i in range(k):
        child_app(children[rnd.randrange(len(apps) // 2)]["pin"])                     # duplicate PIN
        child_app(f"13102{2021 + i % 3}{i:05d}")                                    # 31 February
        child_app(f"2010{1 + i % 9}{now.year + 50}{i:05d}")                         # born in the future
        child_app(f"2150520{20 + i % 3}{i:04d}X")                                   # malformed PIN
        child_app(f"1010120{20 + i % 3}{90000 + i:05d}", preferences=["kg-9999"])   # unknown kindergarten
        child_app(f"1020220{20 + i % 3}{90000 + i:05d}", category="veterans")       # unknown category
        child_app(f"1030320{20 + i % 3}{90000 + i:05d}", queue_date="2019-13-45T10:00:00+06:00")  # impossible date
        child_app(f"1040420{20 + i % 3}{90000 + i:05d}", queue_date="2019-01-01T10:00:00+06:00")  # before birth
    for i in range(k):  # a second application of an imported child
        first = apps[i * 3]
        apps.append({**first, "id": str(900000 + i), "queue_date": now.isoformat()})
    parents = ex["parents"]
    parents.append({**parents[1], "id": "p-bad-1", "email": "parent.example.kg"})            # malformed e-mail
    parents.append({**parents[2], "id": "p-bad-2", "email": parents[0]["email"]})           # another's e-mail
    apps[1]["parent_id"], apps[2]["parent_id"] = "p-bad-1", "p-bad-2"
    ex["kindergartens"].append({"id": "kg-0001", "name": "Дубль", "district": DISTRICTS[0], "address": "",
                                "languages": ["ru"]})                                 # duplicate kindergarten
    ex["places"].append({"kindergarten": "kg-9999", "cohort": now.year - 3, "language": "ru", "category": "",
                         "free": 2})                                                  # unknown kindergarten
    ex["referrals"].append({"id": "r-bad-1", "application_id": "nope", "kindergarten": "kg-0001",
                            "cohort": now.year - 3, "language": "ru", "category": "general",
                            "state": "awaiting_enrolment", "issued_at": now.isoformat(),
                            "deadline": (now + timedelta(days=7)).isoformat(), "needs_confirmation": "false"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m importer.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--applications", type=int, default=2000)
    parser.add_argument("--kindergartens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-csv", action="store_true")
    args = parser.parse_args(argv)
    ex = generate(args.applications, args.kindergartens, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(ex, args.out / "sample.json")
    if not args.no_csv:
        write_csv_dir(ex, args.out / "sample-csv")
    print(f"{ex.size()} rows ({len(ex['applications'])} applications) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
