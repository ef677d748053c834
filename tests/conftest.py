"""Real servers for the suite, started once per session and only when a test
asks for them: a Kafka broker, a Temporal dev server, Temporal's
time-skipping test server, a PostgreSQL cluster. Nothing is mocked and
nothing is skipped: if a server cannot start, the tests that need it fail.

A test that uses one of these fixtures (directly or through another) is
marked `integration`; `make test-fast` runs the others (`-m "not
integration"`: the pure and SQLite tests)."""
from __future__ import annotations

import gc
import shutil
import uuid
from pathlib import Path

import pytest

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from kezek.infra.kafka import KafkaBroker
from kezek.infra.postgres import PostgresCluster, open_temp_folder
from kezek.infra.temporal import TemporalDevServer, test_server_path
from tests.temporal_namespaces import fresh_namespace

ARTIFACTS = Path(__file__).parent / "artifacts"
# The fixtures that start a server (tests/browser adds Chromium's).
SERVER_FIXTURES = {"kafka_broker", "private_kafka", "temporal_dev", "temporal_test_env", "pg_cluster", "chromium"}


def _shared_response_fields() -> None:
    """The suite builds each service's app hundreds of times, and FastAPI
    builds a pydantic TypeAdapter for every response model of every route of
    every app: the nine problem responses of kezek.problems.PROBLEM_RESPONSES
    alone are nine a route (a sixth of the CPU of the tests that build apps).
    A response field is the same for the same route name and model whichever
    app builds it, and nothing changes it once built: the suite builds each
    one once per process. Parameters and bodies (which carry a FieldInfo of
    their own) are built as FastAPI builds them."""
    import fastapi.routing

    build = fastapi.routing.create_model_field
    built: dict = {}

    def create_model_field(name, type_, default=build.__defaults__[0], field_info=None, alias=None,
                           mode="validation"):
        if field_info is not None or alias is not None or default is not build.__defaults__[0]:
            return build(name, type_, default, field_info, alias, mode)
        try:
            key = (name, type_, mode)
            return built[key]
        except TypeError:                      # an unhashable annotation
            return build(name, type_, mode=mode)
        except KeyError:
            field = built[key] = build(name, type_, mode=mode)
            return field

    fastapi.routing.create_model_field = create_model_field


_shared_response_fields()

# The garbage collector of a test process: every full collection walked the
# whole heap of imported modules (FastAPI, pydantic, SQLAlchemy, Temporal...)
# again, eleven times in two files of app tests, 1.7 of their 16 CPU seconds.
# The modules are frozen out of it once the tests are collected, and the
# young generations are collected every 50,000 allocations instead of 700
# (the peak memory stays the same).
gc.set_threshold(50_000, 50, 100)


def pytest_collection_finish(session):
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra_dir():
    # Under /tmp with open permissions: PostgreSQL runs as `postgres` when
    # the suite runs as root, and must reach its folder.
    path = open_temp_folder("kezek-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def running(server, hard: bool = False):
    """A fixture's life of a server of kezek.infra: started, then stopped
    when its last test is done."""
    started = server.start()
    yield started
    started.stop(hard=hard)


@pytest.fixture(scope="session")
def kafka_broker(infra_dir):
    yield from running(KafkaBroker(infra_dir / "kafka"))


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def private_kafka(infra_dir):
    """A broker of the test's own, for tests that stop and restart it."""
    yield from running(KafkaBroker(infra_dir / f"kafka-{uuid.uuid4().hex[:8]}"), hard=True)


@pytest.fixture(scope="session")
def temporal_dev(infra_dir):
    yield from running(TemporalDevServer(infra_dir / "temporal"))


@pytest.fixture
def temporal_namespace(temporal_dev) -> str:
    """A namespace of the test's own on the shared dev server, for a test
    that runs referral workflows there (tests/temporal_namespaces.py)."""
    return fresh_namespace(temporal_dev.address)


@pytest.fixture(scope="session")
async def temporal_test_env():
    """Temporal's time-skipping test server, with the contracts' converter."""
    e = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_path()), data_converter=pydantic_data_converter)
    yield e
    await e.shutdown()


@pytest.fixture(scope="session")
def pg_cluster(infra_dir):
    yield from running(PostgresCluster(infra_dir / "pg", durable=False))


@pytest.fixture
def pg_url(pg_cluster):
    """pg_url("name") -> the URL of a fresh, empty database."""
    from kezek.db import ensure_database

    def make(name: str = "t") -> str:
        url = pg_cluster.url(f"{name}_{uuid.uuid4().hex[:10]}")
        ensure_database(url)
        return url

    return make


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
