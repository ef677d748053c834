"""What every route of the queue's API depends on: the use cases, and query
parameters without control characters (as the path already is)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kezek.web import InvalidInput
from services.queue.usecases import Queue

PREFIX = "/api/v1"


def get_queue(request: Request) -> Queue:
    return request.app.state.queue


QueueDep = Annotated[Queue, Depends(get_queue)]


def clean_query(request: Request) -> None:
    """App-wide: a query parameter with a control character is refused (422),
    naming it, before any route reads it."""
    for name, value in request.query_params.multi_items():
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name + value):
            field = name if name.isprintable() else "(query)"
            raise InvalidInput(field=field, detail=f"{field}: control characters are not allowed",
                               errors=[{"field": field, "code": "control_characters",
                                        "message": f"{field}: control characters are not allowed", "params": {}}])
