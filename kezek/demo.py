"""Demo data for `make run`: kindergartens in Bishkek and Osh (their districts
by territory code, as the address registry and the staff have them), a few
hundred children already in the queue, some free places (so referrals are
waiting at the kindergartens) and a publication on the district's schedule,
loaded through the queue service's API like any administrator would (from
the console: the `cli` caller's token, acting for an administrator); then
each service's own demo part (`services/<name>/demo.py: load(settings)`,
e.g. the staff accounts of every role). Deterministic and idempotent: a
second run adds nothing."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from kezek import calendar as kcal, wiring
from kezek.categories import EXTRAORDINARY, GENERAL, PRIVILEGED
from kezek.client import SyncServiceClient, UpstreamError
from kezek.settings import Settings
from kezek.trust import ServiceKeys, staff_principal

ADMIN = staff_principal("demo", "admin")

# Districts by their territory code (SOATE), as the address registry has them.
LENINSKY, OKTYABRSKY, PERVOMAISKY, SVERDLOVSKY, OSH = (
    "41711210000000", "41711220000000", "41711230000000", "41711240000000", "41721200000000")
# (id, name, district, address, lat, lon, languages)
KINDERGARTENS = [
    ("bishkek-12", "Ясли-сад № 12 «Балажан»", LENINSKY, "ул. Токтогула, 125", 42.8702, 74.5887, ["ky", "ru"]),
    ("bishkek-37", "Ясли-сад № 37 «Күн нуру»", OKTYABRSKY, "ул. Ахунбаева, 98", 42.8415, 74.6180, ["ky", "ru"]),
    ("bishkek-81", "Ясли-сад № 81 «Айгөлек»", PERVOMAISKY, "ул. Московская, 201", 42.8720, 74.6040, ["ru"]),
    ("bishkek-104", "Ясли-сад № 104 «Жылдызча»", SVERDLOVSKY, "мкр. Джал, 23", 42.8290, 74.5740, ["ky"]),
    ("bishkek-150", "Ясли-сад № 150 «Ак-Бата»", SVERDLOVSKY, "ул. Ибраимова, 40", 42.8850, 74.6200, ["ky", "ru"]),
    ("osh-5", "Ясли-сад № 5 «Нурбакыт»", OSH, "ул. Ленина, 290", 40.5283, 72.7985, ["ky", "ru"]),
    ("osh-19", "Ясли-сад № 19 «Сулайман»", OSH, "ул. Курманжан Датка, 120", 40.5140, 72.8160, ["ky", "uz"]),
    ("osh-44", "Ясли-сад № 44 «Бакыт»", OSH, "ул. Масалиева, 12", 40.5390, 72.7850, ["ky", "ru"]),
]
# On the district's schedule: places of bishkek-12 tomorrow at 09:00 (the
# district office finds them on its schedule and may call them off).
SCHEDULED = ("bishkek-12", 2023, "ru", 3)
SURNAMES = ["Асанов", "Токтогулов", "Жумабеков", "Исаков", "Садыков", "Мамытов", "Осмонов", "Ибраимов",
            "Абдыкадыров", "Кадыров", "Иванов", "Ким", "Юсупов", "Бекмуратов"]
NAMES = ["Айбек", "Дана", "Нурай", "Тимур", "Айсулуу", "Эрлан", "Алина", "Бекзат", "Мээрим", "Санжар",
         "Айдана", "Адиль", "Камила", "Мирлан"]
CHILDREN = 300


def _pin(rng: random.Random, birth: date, serial: int) -> str:
    sex = rng.choice("12")
    return f"{sex}{birth:%d%m%Y}{serial:05d}"


def children(rng: random.Random) -> list[dict]:
    out = []
    now = datetime.now(UTC)
    for n in range(CHILDREN):
        birth = date(2021, 1, 1) + timedelta(days=rng.randrange(0, 4 * 365))
        city = rng.choice(["bishkek", "osh"])
        language = rng.choices(["ky", "ru"], weights=[65, 35])[0]
        gardens = [k for k in KINDERGARTENS if k[0].startswith(city) and language in k[6]]
        prefs = rng.sample(gardens, k=min(len(gardens), rng.randint(1, 3)))
        category = rng.choices([GENERAL, PRIVILEGED, EXTRAORDINARY], weights=[85, 10, 5])[0]
        queue_date = max(now - timedelta(days=rng.randrange(1, 700), minutes=rng.randrange(0, 1440)),
                         datetime(birth.year, birth.month, birth.day, 12, tzinfo=UTC))
        out.append({
            "application_id": f"demo-{n:04d}",
            "pin": _pin(rng, birth, 10000 + n),
            "surname": rng.choice(SURNAMES), "name": rng.choice(NAMES),
            "category": category, "language": language,
            "preferences": [k[0] for k in prefs],
            "locale": rng.choice(["ky", "ru"]),
            "queue_date": queue_date.isoformat(),
        })
    return out


@dataclass
class Demo:
    """What the demo loaded: a summary line, and what each service wants
    printed beside its address (the staff pages: the demo logins)."""

    summary: str
    notes: dict[str, list[str]] = field(default_factory=dict)


def load(settings: Settings) -> Demo:
    rng = random.Random(2027)
    queue = SyncServiceClient(settings.url_of("queue"), keys=ServiceKeys.from_settings(settings), caller="cli",
                              audience="queue", timeout=30)

    def call(method: str, path: str, **kw):
        return queue.call(method, f"/api/v1{path}", actor=ADMIN, **kw)

    created = published = scheduled = 0
    try:
        for kid, name, district, address, lat, lon, languages in KINDERGARTENS:
            call("PUT", f"/kindergartens/{kid}", json={"name": name, "district": district, "address": address,
                                                       "lat": lat, "lon": lon, "languages": languages})
        for child in children(rng):
            try:
                call("POST", "/queue-entries", json=child)
                created += 1
            except UpstreamError as exc:
                if exc.status != 409:  # 409: already in the queue from an earlier run
                    raise RuntimeError(f"demo child {child['application_id']} refused: {exc.detail}") from exc
        for kid, *_rest, languages in KINDERGARTENS:
            if call("GET", f"/kindergartens/{kid}/places"):
                continue
            for cohort in (2022, 2023):
                call("POST", f"/kindergartens/{kid}/places", json={"cohort": cohort, "language": languages[0],
                                                                   "count": 2})
                published += 2
        kid, cohort, language, count = SCHEDULED
        if not call("GET", "/places/scheduled", params={"kindergarten": kid}):
            cal = kcal.calendar(settings.country)
            tomorrow = cal.local_date(datetime.now(UTC)) + timedelta(days=1)
            at = cal.start_of_day(tomorrow) + timedelta(hours=9)
            call("POST", f"/kindergartens/{kid}/places", json={"cohort": cohort, "language": language,
                                                               "count": count, "publish_at": at.isoformat()})
            scheduled = count
    finally:
        queue.close()
    demo = Demo(f"demo data: {len(KINDERGARTENS)} kindergartens, {created} children joined the queue, "
                f"{published} places published, {scheduled} on the schedule")
    for service, part in wiring.demo_parts():
        demo.notes[service] = part(settings)
    return demo
