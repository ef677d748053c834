"""The event catalogue is complete and true to the contract: every event
type Kezek writes and every field of it is explained, every example is an
envelope its schema accepts, each type names its topic (the public stream or
its aggregate's), the page is linked from the portal's footer, and the
AsyncAPI document opens in a browser instead of downloading."""
from __future__ import annotations

import json

import jsonschema
import pytest
from fastapi.testclient import TestClient

from kezek.events import known_types, schema_for, validate_data
from services.gateway.public import catalogue as cat
from services.gateway.public.projection import public_types
from tests.fakes.gateway import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("events"), rate_limit_per_minute=100_000)


def test_every_event_type_and_field_is_explained():
    assert set(known_types()) - set(cat.EVENTS) == set(), "add a meaning to catalogue.EVENTS"
    missing = {f"{t}: {name}" for t in known_types() for name in schema_for(t).get("properties", {})
               if name not in cat.FIELDS}
    assert missing == set(), "add a meaning to catalogue.FIELDS"
    assert all(f.meaning for f in cat.envelope_fields())


@pytest.mark.parametrize("event_type", known_types())
def test_every_example_is_an_envelope_its_schema_accepts(event_type):
    entry = next(e for e in cat.catalogue() if e.type == event_type)
    example = json.loads(entry.example)
    jsonschema.validate(example, schema_for("envelope"))
    validate_data(event_type, example["data"])
    assert set(schema_for(event_type).get("required", [])) <= set(example["data"])


def test_each_type_names_its_topic_and_whether_it_is_public():
    entries = {e.type: e for e in cat.catalogue("kezek")}
    for t in public_types():
        assert entries[t].public and entries[t].topic == "kezek.public.v1" and entries[t].schema_url
    assert entries["referral.issued.v1"].topic == "kezek.referral" and not entries["referral.issued.v1"].public
    assert entries["registration.email_code_issued.v1"].topic == "kezek.registration"
    assert [e.public for e in cat.catalogue()] == sorted((e.public for e in cat.catalogue()), reverse=True)


@pytest.mark.parametrize("lang", ["ky", "ru", "kk", "en"])
def test_the_catalogue_page_shows_every_type_in_the_readers_language(stack, lang):
    c = stack.browser(lang)
    home = c.get("/")
    assert 'href="/events"' in home.text and 'href="/api/docs"' in home.text
    r = c.get("/events")
    assert r.status_code == 200 and f'<html lang="{lang}">' in r.text
    for t in known_types():
        assert f'id="{t}"' in r.text
    heading = {"ky": "Окуялар каталогу", "ru": "Каталог событий", "kk": "Оқиғалар каталогы",
               "en": "Event catalogue"}[lang]
    assert f"<h1>{heading}</h1>" in r.text


def test_the_asyncapi_document_opens_in_a_browser_and_downloads_for_tools(stack):
    c = TestClient(stack.gateway, base_url="https://testserver")
    browser = c.get("/api/v1/public/asyncapi.yaml", headers={"accept": "text/html,application/xhtml+xml,*/*"})
    assert browser.headers["content-type"] == "text/plain; charset=utf-8"
    assert browser.headers["content-disposition"].startswith("inline")
    assert browser.text.startswith("# Generated") and "asyncapi: 3.0.0" in browser.text
    tool = c.get("/api/v1/public/asyncapi.yaml", headers={"accept": "application/yaml"})
    assert tool.headers["content-type"] == "application/yaml" and tool.text == browser.text
