"""The public contract: an AsyncAPI 3 document in the repo that matches the
schemas, served with each public schema by the gateway's router."""
from __future__ import annotations

import yaml
from fastapi.testclient import TestClient

from kezek.events import schema_for
from kezek.web import create_service_app
from services.gateway.public import contract, router
from services.gateway.public.projection import public_types


def client() -> TestClient:
    app = create_service_app("gateway")
    app.include_router(router)
    return TestClient(app)


def test_asyncapi_document_in_the_repo_is_rendered_from_the_current_schemas():
    assert contract.ASYNCAPI_PATH.is_file()
    assert yaml.safe_load(contract.ASYNCAPI_PATH.read_text()) == contract.render_asyncapi(), \
        "docs/events/asyncapi.yaml is stale: run `kezek schemas-lock`"


def test_asyncapi_document_describes_every_public_type_on_the_public_topic():
    doc = contract.render_asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["public"]["address"] == "kezek.public.v1"
    assert set(doc["components"]["messages"]) == set(public_types())
    assert "Versioning rules" in doc["info"]["description"]
    for t in public_types():
        message = doc["components"]["messages"][t]
        assert message["payload"]["properties"]["data"] == {"$ref": f"#/components/schemas/{t}"}
        assert message["payload"]["properties"]["type"] == {"const": t}
        assert doc["components"]["schemas"][t]["properties"] == schema_for(t)["properties"]
    refs = [m["$ref"] for m in doc["operations"]["receivePublicEvents"]["messages"]]
    assert all(r.split("/")[-1] in doc["channels"]["public"]["messages"] for r in refs)


def test_gateway_serves_the_asyncapi_document_and_each_public_schema():
    c = client()
    r = c.get("/api/v1/public/asyncapi.yaml")
    assert r.status_code == 200 and yaml.safe_load(r.text)["asyncapi"] == "3.0.0"
    listed = c.get("/api/v1/public/schemas").json()["types"]
    assert listed == public_types()
    for t in listed:
        r = c.get(f"/api/v1/public/schemas/{t}.json")
        assert r.status_code == 200 and r.json() == schema_for(t)


def test_internal_schemas_are_not_served_as_public():
    r = client().get("/api/v1/public/schemas/application.submitted.v1.json")
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "type"


def admin_app(tmp_path):
    import sqlalchemy as sa

    from tests.migrated import upgrade
    from kezek.trust import ServiceKeys, service_token_authenticator
    from services.gateway.public.api import PublicContext
    from services.gateway.public.config import PublicSettings

    settings = PublicSettings(_env_file=None, state_dir=tmp_path, env="test")
    upgrade("gateway", settings.database_url_for("gateway"))
    keys = ServiceKeys.from_settings(settings)
    app = create_service_app("gateway", authenticate=service_token_authenticator(keys, "gateway"))
    app.include_router(router)
    app.state.public = PublicContext(settings)
    return app, settings, keys, lambda sql: app.state.public.engine.connect().execute(sa.text(sql)).all()


def test_webhooks_admin_refuses_anyone_but_an_administrator(tmp_path):
    from kezek.trust import ServiceKeys, parent_principal, staff_principal

    app, _settings, keys, _sql = admin_app(tmp_path)
    c = TestClient(app)
    assert c.get("/api/v1/public/admin/webhooks").status_code == 401
    for caller, actor in (("gateway", parent_principal("p1")), ("queue", None),
                          ("verification", staff_principal(3, "caseworker", district="D"))):
        token = keys.sign(caller, "gateway", actor)
        r = c.get("/api/v1/public/admin/webhooks", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 403, caller
    forged = ServiceKeys.derived("not the deployment's secret")     # a key the gateway does not know
    token = forged.sign("cli", "gateway", staff_principal("x", "admin"))
    assert c.get("/api/v1/public/admin/webhooks", headers={"authorization": f"Bearer {token}"}).status_code == 401
    for_queue = keys.sign("cli", "queue", staff_principal("x", "admin"))
    assert c.get("/api/v1/public/admin/webhooks", headers={"authorization": f"Bearer {for_queue}"}).status_code == 401


def test_an_administrator_manages_webhooks_with_the_kezek_command_and_is_audited(tmp_path, capsys):
    import json

    from services.gateway.public import cli
    from tests.fakes.gateway import sync_transport

    app, settings, _keys, sql = admin_app(tmp_path)
    transport = sync_transport(app)
    assert cli.main(["--as", "aida", "create", "https://example.org/hook", "public.referral.issued.v1"],
                    settings=settings, transport=transport) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["secret"] and created["event_types"] == ["public.referral.issued.v1"]
    assert cli.main(["--as", "aida", "pause", created["id"]], settings=settings, transport=transport) == 0
    assert json.loads(capsys.readouterr().out)["active"] is False
    assert cli.main(["--as", "aida", "get", "no/such"], settings=settings, transport=transport) == 1
    trail = sql("SELECT actor, actor_role, via, action, subject FROM audit_trail ORDER BY id")
    assert [tuple(r) for r in trail] == [
        ("admin:aida", "admin", "cli", "webhook.created", f"webhook:{created['id']}"),
        ("admin:aida", "admin", "cli", "webhook.changed", f"webhook:{created['id']}")]
