"""Every service's API documentation opens without internet: Swagger UI and
ReDoc load their scripts and styles from the service itself (a package's
assets), never from a CDN or web fonts, and the gateway's pages may run
their inline script."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from kezek import wiring
from kezek.settings import Settings

DOCS = {"gateway": ("/api/docs", "/api/redoc")}


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    from kezek.migrations import migration_services
    from tests.migrated import upgrade

    settings = Settings(_env_file=None, state_dir=tmp_path_factory.mktemp("docs"))
    for service in migration_services():
        upgrade(service, settings.database_url_for(service))
    return {s: wiring.create_app(s, settings) for s in wiring.services_with_api()}


def referenced(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]|spec-url=["']([^"']+)["']""", html)


@pytest.mark.parametrize("service", wiring.services_with_api())
@pytest.mark.parametrize("page", [0, 1], ids=["swagger-ui", "redoc"])
def test_api_docs_load_everything_from_the_service_itself(apps, service, page):
    client = TestClient(apps[service])
    path = DOCS.get(service, ("/docs", "/redoc"))[page]
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = [u for group in referenced(r.text) for u in group if u]
    assert urls, r.text[:500]
    assert not [u for u in urls if "//" in u], f"{service} {path} loads from elsewhere: {urls}"
    assert "fonts.googleapis" not in r.text and "cdn." not in r.text
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, (service, url)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and all(len(client.get(u).content) > 100_000 for u in scripts)


def test_the_gateway_docs_may_run_their_inline_script(apps):
    client = TestClient(apps["gateway"])
    for path in ("/api/docs", "/api/redoc"):
        assert "script-src 'self';" not in client.get(path).headers.get("content-security-policy", "")
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]
