"""Demo data for `make run`: kindergartens in Bishkek and Osh, a few hundred
children already in the queue, and some free places, loaded through the
queue service's API like any administrator would (from the console: the
`cli` caller's token, acting for an administrator). Deterministic and
idempotent: a second run adds nothing."""
from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from kezek.categories import EXTRAORDINARY, GENERAL, PRIVILEGED
from kezek.client import SyncServiceClient, UpstreamError
from kezek.settings import Settings
from kezek.trust import ServiceKeys, staff_principal

ADMIN = staff_principal("demo", "admin")

# (id, name, district, address, lat, lon, languages)
KINDERGARTENS = [
    ("bishkek-12", "Ясли-сад № 12 «Балажан»", "Bishkek/Leninsky", "ул. Токтогула, 125", 42.8702, 74.5887, ["ky", "ru"]),
    ("bishkek-37", "Ясли-сад № 37 «Күн нуру»", "Bishkek/Oktyabrsky", "ул. Ахунбаева, 98", 42.8415, 74.6180, ["ky", "ru"]),
    ("bishkek-81", "Ясли-сад № 81 «Айгөлек»", "Bishkek/Pervomaysky", "ул. Московская, 201", 42.8720, 74.6040, ["ru"]),
    ("bishkek-104", "Ясли-сад № 104 «Жылдызча»", "Bishkek/Sverdlovsky", "мкр. Джал, 23", 42.8290, 74.5740, ["ky"]),
    ("bishkek-150", "Ясли-сад № 150 «Ак-Бата»", "Bishkek/Sverdlovsky", "ул. Ибраимова, 40", 42.8850, 74.6200, ["ky", "ru"]),
    ("osh-5", "Ясли-сад № 5 «Нурбакыт»", "Osh/Osh", "ул. Ленина, 290", 40.5283, 72.7985, ["ky", "ru"]),
    ("osh-19", "Ясли-сад № 19 «Сулайман»", "Osh/Osh", "ул. Курманжан Датка, 120", 40.5140, 72.8160, ["ky", "uz"]),
    ("osh-44", "Ясли-сад № 44 «Бакыт»", "Osh/Osh", "ул. Масалиева, 12", 40.5390, 72.7850, ["ky", "ru"]),
]
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


def load(settings: Settings) -> str:
    rng = random.Random(2027)
    queue = SyncServiceClient(settings.url_of("queue"), keys=ServiceKeys.from_settings(settings), caller="cli",
                              audience="queue", timeout=30)

    def call(method: str, path: str, **kw):
        return queue.call(method, f"/api/v1{path}", actor=ADMIN, **kw)

    created = published = 0
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
    finally:
        queue.close()
    return (f"demo data: {len(KINDERGARTENS)} kindergartens, {created} children joined the queue, "
            f"{published} places published")
