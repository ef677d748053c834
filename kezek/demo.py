"""Demo data for `make run`: kindergartens in Bishkek and Osh, a few hundred
children already in the queue, and some free places, loaded through the
queue service's API like any administrator would. Deterministic and
idempotent: a second run adds nothing."""
from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import httpx

from kezek.categories import EXTRAORDINARY, GENERAL, PRIVILEGED
from kezek.settings import Settings

ADMIN = {"X-Actor": "admin:demo"}

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
    base = f"{settings.url_of('queue')}/api/v1"
    created = published = 0
    with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as http:
        for kid, name, district, address, lat, lon, languages in KINDERGARTENS:
            http.put(f"/kindergartens/{kid}", json={"name": name, "district": district, "address": address,
                                                    "lat": lat, "lon": lon, "languages": languages}).raise_for_status()
        for child in children(rng):
            r = http.post("/queue-entries", json=child)
            if r.status_code == 201:
                created += 1
            elif r.status_code != 409:  # 409: already in the queue from an earlier run
                raise RuntimeError(f"demo child {child['application_id']} refused: {r.text}")
        for kid, *_rest, languages in KINDERGARTENS:
            if http.get(f"/kindergartens/{kid}/places").json():
                continue
            for cohort in (2022, 2023):
                http.post(f"/kindergartens/{kid}/places",
                          json={"cohort": cohort, "language": languages[0], "count": 2}).raise_for_status()
                published += 2
    return (f"demo data: {len(KINDERGARTENS)} kindergartens, {created} children joined the queue, "
            f"{published} places published")
