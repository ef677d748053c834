"""bench/load.py: who the load generator's requests come from."""
from __future__ import annotations

import collections
import json
import random
import shutil
from pathlib import Path

import pytest

from bench import load


def test_public_page_visitors_each_stay_far_under_the_address_limit():
    """A minute of the public queue page at 1,000 pages a second comes from
    many visitors: no address comes near the production limit of 300 a
    minute, so the benchmark measures the page's cost, not one address's 429."""
    rnd = random.Random(15)
    counts = collections.Counter(load.visitor_address(rnd) for _ in range(60_000))
    assert len(counts) > 30_000
    assert max(counts.values()) < 30


def test_public_page_visitors_are_not_the_families_or_registrants_addresses():
    """Visitors are 10.200.x.y; a family's reader is 10.0-1.x.y (one per
    locust user), a registrant 10.100-199.x.y: none is counted with another."""
    rnd = random.Random(1)
    seen = {load.visitor_address(rnd) for _ in range(10_000)}
    assert all(a.startswith("10.200.") for a in seen)
    assert all(0 <= int(part) <= 255 for a in seen for part in a.split("."))


def test_answers_refused_by_a_rate_limit_count_as_requests_but_not_as_ok_ones():
    samples = [(0.0, 0.004, 200)] * 30 + [(0.0, 0.001, 429)] * 10 + [(0.0, 0.05, 201)] * 10
    f = load.figures(samples, 10.0, 8)
    assert (f["per_second"], f["ok_per_second"], f["errors"]) == (5.0, 4.0, 10)
    assert f["statuses"] == {"200": 30, "201": 10, "429": 10}


class Locust:
    """Stands in for the locust process: writes its figures, or nothing."""
    writes = True

    def __init__(self, argv, **_kw):
        self.out = Path(argv[argv.index("--out") + 1])

    def wait(self, timeout=None):
        if Locust.writes:
            self.out.write_text(json.dumps({"samples": [[1.0, 0.004, 200]], "started": 0.0, "ended": 2.0}))
        return 0

    def poll(self):
        return 0


def test_a_loads_own_folder_is_removed_once_its_figures_are_read_and_kept_when_locust_wrote_nothing(monkeypatch):
    monkeypatch.setattr(load.subprocess, "Popen", Locust)
    run = load.start("http://127.0.0.1:1", "me", {}, users=1, seconds=1, warmup=0)
    assert run.folder.exists()
    assert run.wait()["requests"] == 1 and not run.folder.exists()
    Locust.writes = False
    try:
        failed = load.start("http://127.0.0.1:1", "me", {}, users=1, seconds=1, warmup=0)
        with pytest.raises(RuntimeError, match="locust wrote nothing"):
            failed.wait()
        assert (failed.folder / "me-1.log").exists()
    finally:
        Locust.writes = True
        shutil.rmtree(failed.folder, ignore_errors=True)
