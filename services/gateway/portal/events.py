"""The event catalogue as a page of the portal (`/events`, open to anyone,
linked from the footer): every event type Kezek writes, what it means, its
topic, its fields and an example, in the reader's language
(services/gateway/public/catalogue.py builds it from the schemas)."""
from __future__ import annotations

import functools

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from kezek.trust import PUBLIC
from services.gateway.portal.pages import Gw, Render
from services.gateway.public import catalogue as cat

router = APIRouter(include_in_schema=False, dependencies=[PUBLIC])


@functools.cache
def _catalogue(prefix: str) -> tuple[list[cat.EventType], tuple[cat.Field, ...]]:
    return cat.catalogue(prefix), cat.envelope_fields()


@router.get("/events", response_class=HTMLResponse)
async def events(render: Render, gw: Gw):
    types, envelope = _catalogue(gw.settings.kafka_topic_prefix)
    return render("events.html", events=types, envelope=envelope, public_topic=cat.PUBLIC_TOPIC)
