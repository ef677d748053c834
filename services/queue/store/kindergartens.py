"""Kindergartens: id, name, district, address, position, languages taught."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.domain.refusals import NotFound
from services.queue.models import Kindergarten
from services.queue.store.times import aware

FIELDS = ("name", "district", "address", "lat", "lon", "languages")


def save(s: Session, kid: str, values: dict[str, Any], now: datetime) -> bool:
    """Creates or updates; True if created."""
    row = s.get(Kindergarten, kid, with_for_update=True)
    if row is None:
        s.add(Kindergarten(id=kid, created_at=now, **{"address": "", **values}))
        return True
    for k, v in values.items():
        setattr(row, k, v)
    return False


def get(s: Session, kid: str, *, lock: bool = False) -> Kindergarten:
    row = s.get(Kindergarten, kid, with_for_update=lock)
    if row is None:
        raise NotFound("kindergarten_unknown", field="kindergarten", kindergarten=kid)
    return row


def many(s: Session, kids: Iterable[str]) -> dict[str, Kindergarten]:
    return {k.id: k for k in s.scalars(sa.select(Kindergarten).where(Kindergarten.id.in_(set(kids))))}


def languages(s: Session, kids: Iterable[str]) -> dict[str, list[str]]:
    """What each of these kindergartens teaches in (an empty list: any);
    unknown and closed ones are left out: no child may list them."""
    return {k.id: list(k.languages or []) for k in many(s, kids).values() if k.closed_at is None}


def listed(s: Session, district: str | None = None, *, closed: bool = False) -> list[dict]:
    q = sa.select(Kindergarten).order_by(Kindergarten.id)
    if district:
        q = q.where(Kindergarten.district == district)
    if not closed:
        q = q.where(Kindergarten.closed_at.is_(None))
    return [view(k) for k in s.scalars(q)]


def names(s: Session) -> dict[str, str]:
    return dict(s.execute(sa.select(Kindergarten.id, Kindergarten.name)).all())


def view(k: Kindergarten) -> dict:
    return {"id": k.id, "name": k.name, "district": k.district, "address": k.address, "lat": k.lat,
            "lon": k.lon, "languages": list(k.languages or []), "closed_at": aware(k.closed_at)}
