"""Readers of kezek.public.v1 outside Kezek's own code: the copyable example
subscriber (kafka-python) and Kafka's own tooling (Debian's kcat), on a real
broker. Whatever they read matches the published schemas."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest

from kezek.db import unit_of_work
from kezek.events import schema_for
from kezek.migrations import upgrade
from kezek.relay import wait_until_relayed
from kezek.settings import Settings
from services.gateway.public.models import public_outbox
from services.gateway.public.projection import Pseudonyms
from services.gateway.public.runtime import PublicRuntime

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KCAT = "/usr/bin/kcat"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
NAMES = Pseudonyms(b"readers")
BISHKEK, OSH = "41711100000000", "41721000000000"


@pytest.fixture
def stream(pg_url, kafka_bootstrap):
    """A public topic of its own with places and referrals in two districts."""
    url = pg_url("gateway")
    upgrade("gateway", url)
    settings = Settings(env="test", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=f"r{uuid.uuid4().hex[:8]}")
    rt = PublicRuntime(settings, database_url=url)
    place = {"cohort": 2021, "language": "ky"}
    with unit_of_work(rt.sessions) as s:
        add = lambda t, subject, data: public_outbox.add(s, t, subject, data)  # noqa: E731
        add("public.place.published.v1", "kg-1", {**place, "kindergarten_id": "kg-1", "district": BISHKEK, "count": 5})
        add("public.place.published.v1", "kg-2", {**place, "kindergarten_id": "kg-2", "district": OSH, "count": 2})
        add("public.place.withdrawn.v1", "kg-1", {**place, "kindergarten_id": "kg-1", "district": BISHKEK, "count": 1})
        for i, (kg, district) in enumerate([("kg-1", BISHKEK), ("kg-1", BISHKEK), ("kg-2", OSH)]):
            child = NAMES.child("KG", f"2150520191234{i}")
            add("public.application.queued.v1", child, {"child_ref": child, "cohort": 2019, "category": "general",
                                                        "district": BISHKEK, "language": "ky", "queued_on": "2022-01-0" + str(i + 1)})
            add("public.referral.issued.v1", child, {
                "referral_ref": NAMES.referral(str(i)), "child_ref": child, "kindergarten_id": kg, "district": district,
                "cohort": 2019, "category": "general", "language": "ky", "state": "awaiting_enrolment",
                "deadline": "2025-03-14T18:00:00+06:00"})
        add("public.referral.expired.v1", child, {
            "referral_ref": NAMES.referral("2"), "child_ref": child, "kindergarten_id": "kg-2", "state": "paused",
            "stoplist_until": "2025-03-24T18:00:00+06:00"})
    relay = rt.relay()
    wait_until_relayed(relay)
    relay.close()
    yield settings
    rt.engine.dispose()


def test_example_subscriber_prints_live_counts_of_places_and_referrals_per_district(stream):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "subscriber.py"), "--bootstrap", stream.kafka_bootstrap,
         "--topic", stream.topic("public.v1"), "--idle-exit", "3", "--json"],
        capture_output=True, text=True, timeout=120, cwd="/tmp",  # a copy outside the project must work
    )
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout.strip().splitlines()[-1])
    assert final == {"places": {BISHKEK: 4, OSH: 2}, "referrals": {BISHKEK: 2, OSH: 1}}
    assert "district" in out.stdout and "referrals" in out.stdout


def test_kcat_reads_the_public_topic_and_every_message_matches_its_schema_and_the_kafka_binding(stream):
    assert Path(KCAT).exists(), "kcat is installed by deploy/local/bootstrap.sh"
    out = subprocess.run(
        [KCAT, "-C", "-b", stream.kafka_bootstrap, "-t", stream.topic("public.v1"), "-o", "beginning", "-e", "-q",
         "-J"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    messages = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(messages) == 10
    types = set()
    for m in messages:
        event = json.loads(m["payload"])
        jsonschema.validate(event, schema_for("envelope"), format_checker=FORMATS)
        jsonschema.validate(event["data"], schema_for(event["type"]), format_checker=FORMATS)
        assert event["type"].startswith("public.") and m["key"] == event["subject"]
        # The CloudEvents Kafka binding, structured mode.
        assert m["headers"] == ["content-type", "application/cloudevents+json; charset=UTF-8"]
        types.add(event["type"])
    assert types == {"public.place.published.v1", "public.place.withdrawn.v1", "public.application.queued.v1",
                     "public.referral.issued.v1", "public.referral.expired.v1"}
