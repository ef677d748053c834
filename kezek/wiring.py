"""Finds each service's parts by convention (see README, "Wiring"):
`api.create_app`, `api.http_workers` (its HTTP worker processes), `consumers.build_consumers`, `activities.build_activities`,
`jobs.build_jobs`, `retention.build_retention`, `models.outbox`,
`models.Base` (its tables), `files.build_files` (its sealed file store). A
service without a part simply has none.

The core imports no service: this module (and the `kezek` command table,
kezek/cli.py) name them by module name only, so the services depend on the
core and never the other way round."""
from __future__ import annotations

import importlib
from types import ModuleType

from kezek.settings import SERVICES, Settings


# Who talks to Temporal besides the worker (kezek/health.py checks it for
# them): the HTTP processes of these services act on referral workflows
# while they answer a request; the queue's background jobs start them.
API_USES_TEMPORAL = ("gateway", "verification")
JOBS_USE_TEMPORAL = ("queue",)
# Whose background jobs read or write Kafka themselves (the gateway's public
# projector and relay); the other services' jobs work on their database.
JOBS_USE_KAFKA = ("gateway",)


def optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def _part(service: str, module: str, attr: str):
    mod = optional_module(f"services.{service}.{module}")
    return getattr(mod, attr, None) if mod else None


def services_with_api() -> list[str]:
    return [s for s in SERVICES if _part(s, "api", "create_app")]


def create_app(service: str, settings: Settings):
    factory = _part(service, "api", "create_app")
    if factory is None:
        raise LookupError(f"service {service!r} has no api.create_app")
    return factory(settings)


def http_workers(service: str, settings: Settings) -> int:
    """How many worker processes serve the service's HTTP port (1 unless
    the service says otherwise)."""
    workers = _part(service, "api", "http_workers")
    return max(1, workers(settings)) if workers else 1


def consumers(settings: Settings, services: tuple[str, ...] = SERVICES) -> list:
    return [c for s in services if (build := _part(s, "consumers", "build_consumers")) for c in build(settings)]


def activities(settings: Settings) -> list:
    return [a for s in SERVICES if (build := _part(s, "activities", "build_activities")) for a in build(settings)]


def jobs(settings: Settings, services: tuple[str, ...] = SERVICES) -> list:
    return [j for s in services if (build := _part(s, "jobs", "build_jobs")) for j in build(settings)]


def retention_jobs(settings: Settings, services: tuple[str, ...] = SERVICES) -> list:
    """Each service's retention job (`services/<name>/retention.py: build_retention`)."""
    return [build(settings) for s in services if (build := _part(s, "retention", "build_retention"))]


def metadata(service: str):
    """The service's tables (`models.Base.metadata`)."""
    base = _part(service, "models", "Base")
    return base.metadata if base is not None else None


def files(service: str, settings: Settings):
    """The service's sealed file store, if it keeps files (`files.build_files`)."""
    build = _part(service, "files", "build_files")
    return build(settings) if build else None


def has_workflows() -> bool:
    """Whether the referral workflows (and so `kezek worker`) are installed."""
    return optional_module("workflows.worker") is not None


def public_contract() -> ModuleType | None:
    """The public event contract (the gateway's AsyncAPI document)."""
    return optional_module("services.gateway.public.contract")


def services_with_background() -> list[str]:
    """Services with Kafka consumers or background jobs: `kezek consume
    --service NAME` runs them, one process per service."""
    return [s for s in SERVICES if _part(s, "consumers", "build_consumers") or _part(s, "jobs", "build_jobs")]


def services_with_activities() -> list[str]:
    return [s for s in SERVICES if _part(s, "activities", "build_activities")]


def outboxes(services: tuple[str, ...] = SERVICES) -> list[tuple[str, object]]:
    return [(s, ob) for s in services if (ob := _part(s, "models", "outbox")) is not None]


def demo_parts() -> list[tuple[str, object]]:
    """Each service's own demo data for `make run` (`demo.load(settings)`,
    answering the lines to print beside its address)."""
    return [(s, load) for s in SERVICES if (load := _part(s, "demo", "load")) is not None]
