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


def test_admin_api_refuses_without_the_admin_token():
    c = client()
    from services.gateway.public.api import PublicContext
    from services.gateway.public.config import PublicSettings
    c.app.state.public = PublicContext(PublicSettings(admin_token="s3cret", state_dir="/tmp"),
                                       database_url="sqlite://")
    assert c.get("/api/v1/public/admin/webhooks").status_code == 403
    r = c.get("/api/v1/public/admin/webhooks", headers={"X-Admin-Token": "wrong"})
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "X-Admin-Token"
