"""The shared core: settings, the event envelope, the service app factory."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from kezek.events import Event, InvalidEvent, UnknownEventType, known_types, new_event, schema_for
from kezek.settings import Settings
from kezek.web import DomainError, create_service_app


def test_production_refuses_the_default_secrets():
    with pytest.raises(ValidationError, match="KEZEK_SECRET_KEY"):
        Settings(_env_file=None, env="production", pseudonym_key="k")


def test_production_accepts_real_secrets():
    s = Settings(_env_file=None, env="production", secret_key="a" * 32, pseudonym_key="b" * 32,
                 database_url="postgresql+psycopg://k@db:5432/kezek", public_url="https://kezek.example",
                 service_keys_dir="/run/secrets/kezek-keys", data_keys="2027a:" + "A" * 43)
    assert s.env == "production"


def test_production_refuses_service_keys_derived_from_one_secret():
    with pytest.raises(ValidationError, match="KEZEK_SERVICE_KEYS_DIR"):
        Settings(_env_file=None, env="production", secret_key="a" * 32, pseudonym_key="b" * 32,
                 database_url="postgresql+psycopg://k@db:5432/kezek", public_url="https://kezek.example")


def test_each_service_gets_its_own_database():
    sqlite = Settings(_env_file=None, state_dir="/srv/kezek")
    assert sqlite.database_url_for("queue") == "sqlite:////srv/kezek/queue.db"
    pg = Settings(_env_file=None, database_url="postgresql+psycopg://k@db:5432/kezek")
    assert pg.database_url_for("queue") == "postgresql+psycopg://k@db:5432/kezek_queue"
    assert pg.database_url_for("registration") != pg.database_url_for("queue")


def test_envelope_uses_cloudevents_names_and_a_versioned_type():
    ev = new_event("backbone.probe.v1", "p1", {"probe_id": "p1", "note": "x"}, source="queue")
    raw = ev.model_dump(mode="json")
    assert {"specversion", "id", "source", "type", "time", "subject", "data"} <= raw.keys()
    assert raw["specversion"] == "1.0" and raw["source"] == "/kezek/queue"
    assert ev.aggregate == "backbone"
    assert Event.from_json(ev.to_json()) == ev


def test_event_data_must_match_its_schema():
    with pytest.raises(InvalidEvent, match="probe_id"):
        new_event("backbone.probe.v1", "p1", {"note": "x"}, source="queue")


def test_event_type_without_a_schema_is_refused():
    with pytest.raises(UnknownEventType):
        new_event("nothing.happened.v1", "s", {}, source="queue")


def test_every_schema_names_a_versioned_type_and_is_an_object():
    for event_type in known_types():
        assert event_type.rsplit(".", 1)[-1].startswith("v"), event_type
        assert schema_for(event_type)["type"] == "object", event_type


class Child(BaseModel):
    pin: str
    age: int


def make_app(ready=True):
    def check():
        if not ready:
            raise ConnectionError("database down")

    app = create_service_app("demo", ready_checks=[("database", check)])

    @app.post("/children")
    def add(child: Child):
        if child.age > 7:
            raise DomainError("too old for a kindergarten", field="age")
        return child

    return app


def test_health_ready_and_metrics_answer():
    client = TestClient(make_app())
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"
    client.get("/health")
    assert "kezek_http_requests_total" in client.get("/metrics").text


def test_not_ready_when_a_dependency_fails():
    r = TestClient(make_app(ready=False)).get("/ready")
    assert r.status_code == 503 and "database" in r.json()["failed"]


def test_bad_input_is_a_4xx_naming_the_field():
    r = TestClient(make_app()).post("/children", json={"pin": "1", "age": "old"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "age"


def test_business_refusal_is_a_409_with_its_reason():
    r = TestClient(make_app()).post("/children", json={"pin": "1", "age": 9})
    assert r.status_code == 409 and r.json()["detail"] == "too old for a kindergarten"


def test_request_id_is_echoed_for_tracing():
    r = TestClient(make_app()).get("/health", headers={"x-request-id": "abc"})
    assert r.headers["x-request-id"] == "abc"


def test_env_example_documents_every_setting():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    documented = {line.split("=", 1)[0].strip() for line in text.splitlines()
                  if line.startswith("KEZEK_")}
    expected = {f"KEZEK_{name.upper()}" for name in Settings.model_fields}
    assert expected <= documented, sorted(expected - documented)
