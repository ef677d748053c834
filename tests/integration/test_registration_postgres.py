"""Registration on real PostgreSQL: the migrations, and two parents
submitting the same child at the same moment (the database decides: one
application, one event, the other parent told why)."""
from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from kezek.db import make_engine, make_session_factory
from kezek.migrations import upgrade
from kezek.outbox import payloads
from services.registration.address import ReferenceAddressRegistry
from services.registration.domain import RegistrationRefused
from services.registration.limits import FREE_PER_LOGIN_AND_CLIENT
from services.registration.service import RegistrationService
from tests.builders import CHILD, MOTHER

pytestmark = pytest.mark.integration

CONFIRM = {"category": "general", "language": "ru", "preferences": ["bsk-12"], "agreement": True}


@pytest.fixture
def svc(pg_url):
    url = pg_url("registration")
    upgrade("registration", url)
    engine = make_engine(url)
    yield RegistrationService(make_session_factory(engine), ReferenceAddressRegistry(), code_key=b"k",
                              hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)), engine
    engine.dispose()


def ready_draft(svc: RegistrationService, engine, email: str) -> str:
    token = svc.start_draft("ru")
    svc.save_child(token, CHILD)
    svc.save_parent(token, {**MOTHER, "email": email})
    svc.request_code(token)
    code = [svc.sealer.open("registration.email_code_issued.v1", "code", json.loads(p)["data"]["sealed"]["code"])
            for p in payloads(engine, "registration.email_code_issued.v1")
            if json.loads(p)["data"]["email"] == email][-1]
    svc.verify_code(token, code)
    return token


def test_migrations_run_on_postgres_and_keep_the_partial_unique_index(svc):
    _, engine = svc
    with engine.connect() as c:
        index = c.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ux_applications_live_child_pin'"
                                  )).scalar_one()
    assert "UNIQUE" in index and "removed" in index


def test_two_parents_submitting_one_child_at_once_get_one_application(svc):
    service, engine = svc
    drafts = [ready_draft(service, engine, f"parent{i}@example.kg") for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(token: str) -> None:
        barrier.wait()
        try:
            service.submit(token, CONFIRM)
            outcomes.append("accepted")
        except RegistrationRefused as exc:
            outcomes.append(exc.errors[0].code)

    threads = [threading.Thread(target=submit, args=(t,)) for t in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["accepted", "child_already_registered"]
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM applications")).scalar_one() == 1
        assert c.execute(sa.text("SELECT count(*) FROM outbox WHERE type = 'application.submitted.v1'")).scalar_one() == 1
        # The refused parent's account was not left half-made either.
        assert c.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one() == 1


def test_a_removed_child_may_be_registered_again(svc):
    service, engine = svc
    first = service.submit(ready_draft(service, engine, "first@example.kg"), CONFIRM)
    service.mark_removed(first.application_id)
    again = service.submit(ready_draft(service, engine, "again@example.kg"), CONFIRM)
    assert again.application_id != first.application_id


def signed_up(service: RegistrationService, engine, email: str) -> None:
    service.submit(ready_draft(service, engine, email), CONFIRM)
    payload = payloads(engine, "account.activation_issued.v1")[-1]
    url = service.sealer.open("account.activation_issued.v1", "activation_url",
                              json.loads(payload)["data"]["sealed"]["activation_url"])
    service.activate(url.split("token=")[1], "a long enough password")


def in_parallel(n: int, act) -> list:
    barrier = threading.Barrier(n)
    out: list = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            out.append(act(i))
        except Exception as exc:     # the refusals are the outcome here
            out.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_parallel_wrong_passwords_are_each_counted_on_postgres(svc):
    from services.registration.service import Caller

    service, engine = svc
    signed_up(service, engine, "guessed@example.kg")
    guesser = Caller(client="203.0.113.77")
    outcomes = in_parallel(8, lambda _i: service.login("guessed@example.kg", "wrong", by=guesser))
    codes = sorted(o.code for o in outcomes)
    # every free attempt is heard and counted, the rest wait (none lost to a race)
    assert set(codes) <= {"login_failed", "login_throttled"}
    assert codes.count("login_failed") >= FREE_PER_LOGIN_AND_CLIENT
    with engine.connect() as c:
        counted = c.execute(sa.text("SELECT max(count) FROM sign_in_failures")).scalar_one()
    assert counted == codes.count("login_failed")        # none lost to a race


def test_two_drafts_sending_to_one_address_at_once_send_one_code_on_postgres(svc):
    service, engine = svc
    drafts = []
    for i in range(2):
        token = service.start_draft("ru")
        service.save_child(token, {**CHILD, "pin": f"2150620240050{i}"})
        service.save_parent(token, {**MOTHER, "email": "one-mailbox@example.kg"})
        drafts.append(token)
    outcomes = in_parallel(2, lambda i: service.request_code(drafts[i]))
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert [o.errors[0].code for o in outcomes if isinstance(o, RegistrationRefused)] == ["code_resend_too_soon"]


def test_rate_limits_shared_by_replicas_count_every_request_on_postgres(pg_url):
    from kezek.ratelimit import RateLimits
    from services.registration.models import rate_limits

    url = pg_url("limits")
    upgrade("registration", url)
    replicas = [RateLimits(make_engine(url), rate_limits) for _ in range(2)]
    waits = in_parallel(12, lambda i: replicas[i % 2].hit("address:198.51.100.1", limit=7, window=3600))
    assert sum(1 for w in waits if w == 0) == 7 and all(w > 0 for w in waits if w)


def test_batched_counts_of_many_keys_flushed_by_replicas_at_once_are_all_added_on_postgres(pg_url):
    from kezek.ratelimit import RateLimits
    from services.registration.models import rate_limits

    url = pg_url("flush")
    upgrade("registration", url)
    at = 1_800_000_010.0
    replicas = [RateLimits(make_engine(url), rate_limits, clock=lambda: at, flush_seconds=3600) for _ in range(2)]
    for n, replica in enumerate(replicas):
        for key in range(1500):                  # more keys than one statement of a flush takes
            for _ in range(n + 1):
                assert replica.hit(f"parent:{key}", limit=10_000) == 0
    in_parallel(2, lambda i: replicas[i].flush())
    with replicas[0].engine.connect() as conn:
        rows = dict(conn.execute(sa.select(rate_limits.c.key, rate_limits.c.hits)).all())
    assert len(rows) == 1500 and set(rows.values()) == {3}
    # Each replica now knows the shared count: 9,997 more, and the next is refused.
    replicas[0].flush()
    for _ in range(9_997):
        assert replicas[0].hit("parent:7", limit=10_000) == 0
    assert replicas[0].hit("parent:7", limit=10_000) > 0


def test_the_api_keeps_as_many_database_connections_open_as_its_setting_says(pg_url, tmp_path):
    """Issue 15: beyond SQLAlchemy's five pooled connections, every request
    at a busy moment opened and closed one (a new PostgreSQL backend)."""
    from services.registration.bootstrap import build
    from services.registration.settings import RegistrationSettings

    from kezek.db import ensure_database

    fresh = pg_url("pool")                       # a fresh name on the cluster: its service's database beside it
    settings = RegistrationSettings(_env_file=None, state_dir=tmp_path, env="test",
                                    database_url=fresh + "_{service}", registration_db_pool_size=12)
    url = settings.database_url_for("registration")
    ensure_database(url)
    upgrade("registration", url)
    engine = build(settings).sessions.kw["bind"]
    try:
        held = [engine.connect() for _ in range(12)]
        for conn in held:
            conn.close()
        assert engine.pool.checkedin() == 12
    finally:
        engine.dispose()
