"""The gateway's requests are served on its event loop (issue 15): FastAPI
runs a plain `def` dependency in its thread pool, a hand-over to a thread
and back on every request for what is a lookup (the gateway's context, the
reader's language, the page renderer, the signed-in parent), which under a
busy CPU waits for the thread to be scheduled and then for the loop to be
woken. Every dependency of the parents' and visitors' routes is `async def`;
only the webhooks administration's (services/gateway/public/api.py, which
reads the database) may block."""
from __future__ import annotations

import fastapi.dependencies.utils as fastapi_deps
import pytest
from fastapi.dependencies.utils import _is_coroutine_callable
from fastapi.routing import iter_route_contexts

from tests.fakes.gateway import Stack

BLOCKING_ALLOWED = ("services.gateway.public.",)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("deps"))


def _sync_dependencies(dependant, found: set):
    for sub in dependant.dependencies:
        call = sub.call
        if call is not None and not _is_coroutine_callable(call) and not str(
                getattr(call, "__module__", "")).startswith(BLOCKING_ALLOWED):
            found.add(f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', call)}")
        _sync_dependencies(sub, found)


def test_no_dependency_of_a_parents_or_visitors_route_runs_in_a_thread(stack):
    found: set[str] = set()
    routes = 0
    for route in iter_route_contexts(stack.gateway.routes):
        if getattr(route, "dependant", None) is not None:
            routes += 1
            _sync_dependencies(route.dependant, found)
    assert routes > 50
    assert found == set()


def test_the_public_queue_and_home_pages_hand_nothing_to_the_thread_pool(stack, monkeypatch):
    handed: list = []
    to_thread = fastapi_deps.run_in_threadpool

    async def counted(func, *args, **kwargs):
        if str(getattr(func, "__module__", "")).startswith("services.gateway."):   # not the stand-ins behind it
            handed.append(getattr(func, "__qualname__", func))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(fastapi_deps, "run_in_threadpool", counted)
    c = stack.browser("ru")
    assert c.get("/").status_code == 200
    assert c.get("/queue").status_code == 200
    assert handed == []
