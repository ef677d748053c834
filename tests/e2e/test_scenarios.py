"""`kezek scenario`: every example of examples/scenarios/ (one per rule of
DOMAIN.md section 4) prints exactly its expected .jsonl, byte for byte; an
invalid file exits 2 with a message naming its line."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenario.cli import run_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenarios"
SCENARIOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def test_every_rule_of_domain_section_4_has_an_example_scenario():
    names = {p.stem for p in SCENARIOS}
    for rule in ("general_enrolment", "expiry_stoplist_resume", "privilege_confirmed", "certificate_out_of_date",
                 "privilege_rejected", "extension", "cancel_next_preference", "no_child_passed_over",
                 "min_age_midnight_birthday", "withdraw_places", "holidays_kg", "holidays_kz", "child_leaves",
                 "aged_out"):
        assert any(n.endswith(rule) for n in names), rule
    for p in SCENARIOS:
        assert p.with_suffix(".jsonl").exists(), f"{p.name} has no expected output"


# A scenario that runs (not refused as invalid) starts Temporal's
# time-skipping server: marked `integration` by hand, as no fixture starts it.
@pytest.mark.integration
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_example_scenario_prints_its_expected_output(scenario):
    out = io.StringIO()
    assert run_file(str(scenario), out) == 0
    expected = scenario.with_suffix(".jsonl").read_text(encoding="utf-8")
    assert out.getvalue() == expected


@pytest.mark.integration
@pytest.mark.parametrize("sandbox", ["full"])
def test_scenario_gives_the_same_output_with_the_workflow_sandbox_of_production(sandbox):
    scenario = EXAMPLES / "04_certificate_out_of_date.yaml"
    out = io.StringIO()
    assert run_file(str(scenario), out, sandbox=sandbox) == 0
    assert out.getvalue() == scenario.with_suffix(".jsonl").read_text(encoding="utf-8")


def test_output_lines_follow_the_spec_field_for_field():
    allowed = {"at", "event", "child", "kindergarten", "cohort", "language", "deadline", "reason", "until", "step"}
    events = {"application.queued", "referral.issued", "referral.privilege_confirmed",
              "referral.certificate_requested", "referral.privilege_rejected", "referral.extended",
              "referral.cancelled", "referral.expired", "referral.enrolled",
              "application.returned_to_general_queue", "application.paused", "application.resumed",
              "application.removed", "application.left", "application.aged_out", "place.returned", "place.freed", "step.refused"}
    seen = set()
    for expected in EXAMPLES.glob("*.jsonl"):
        lines = [json.loads(x) for x in expected.read_text().splitlines()]
        *body, final = lines
        assert list(final) == ["event", "at", "children", "places"] and final["event"] == "final"
        for child in final["children"].values():
            assert set(child) == {"status", "kindergarten", "position"}
            assert child["status"] in {"queued", "referred", "enrolled", "paused", "removed", "left", "aged_out"}
            assert child["position"] is None or child["status"] == "queued"
            assert child["kindergarten"] is None or child["status"] in ("referred", "enrolled")
        for place in final["places"].values():
            assert set(place) == {"free", "held", "enrolled"}
        ats = [x["at"] for x in body]
        assert ats == sorted(ats), f"{expected.name}: not in time order"
        for x in body:
            assert list(x)[:2] == ["at", "event"] and set(x) <= allowed and x["event"] in events
            seen.add(x["event"])
    assert seen == events, f"no example shows {events - seen}"


# ------------------------------------------------------------ invalid files

VALID = """\
country: KG
start: "2027-03-01T09:00:00"
until: "2027-03-10T00:00:00"
kindergartens:
  - {id: sun, languages: [ru]}
children:
  - id: aibek
    pin: "21506202400011"
    category: general
    applied: "2026-01-10T10:00:00"
    preferences: [sun]
    language: ru
steps:
  - {at: "2027-03-01T10:00:00", do: publish_places, kindergarten: sun, cohort: 2024, language: ru, places: 1}
  - {at: "2027-03-02T10:00:00", do: enrol, child: aibek}
"""


def invalid(tmp_path, capsys, text: str, name: str = "bad.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    out = io.StringIO()
    assert run_file(str(path), out) == 2
    assert out.getvalue() == "", "nothing runs for an invalid file"
    return capsys.readouterr().err


def test_unknown_child_alias_exits_2_naming_the_line(tmp_path, capsys):
    err = invalid(tmp_path, capsys, VALID.replace("child: aibek}", "child: bob}"))
    assert "bad.yaml:15:" in err and "unknown child alias 'bob'" in err


def test_bad_pin_exits_2_naming_the_line(tmp_path, capsys):
    err = invalid(tmp_path, capsys, VALID.replace('"21506202400011"', '"21532202400011"'))
    assert "bad.yaml:8:" in err and "bad PIN" in err and "impossible birth date" in err
    err = invalid(tmp_path, capsys, VALID.replace('"21506202400011"', '"2150620240001"'))
    assert "bad.yaml:8:" in err and "14 digits" in err


def test_steps_out_of_order_exit_2_naming_the_line(tmp_path, capsys):
    err = invalid(tmp_path, capsys, VALID.replace('"2027-03-02T10:00:00", do: enrol', '"2027-03-01T09:30:00", do: enrol'))
    assert "bad.yaml:15:" in err and "steps out of order" in err


@pytest.mark.parametrize("change, line, words", [
    (('kindergarten: sun, cohort', 'kindergarten: moon, cohort'), 14, "unknown kindergarten 'moon'"),
    (("do: enrol", "do: enroll"), 15, "unknown step 'enroll'"),
    (("category: general", "category: veteran"), 9, "unknown category 'veteran'"),
    (('language: ru, places: 1', 'language: ky, places: 1'), 14, "teaches in ru, not 'ky'"),
    (('until: "2027-03-10T00:00:00"', 'until: "2027-02-10T00:00:00"'), 3, "must be after start"),
    (('start: "2027-03-01T09:00:00"', 'start: "2027-03-01T09:00:00+06:00"'), 2, "without an offset"),
    (("    language: ru\n", "    language: ru\n    colour: red\n"), 13, "unknown field"),
    (("places: 1}", "places: 0}"), 14, "must be at least 1"),
    (("applied: \"2026-01-10T10:00:00\"", "applied: \"2027-03-05T10:00:00\""), 10, "add an `apply` step"),
])
def test_invalid_file_exits_2_naming_the_line(tmp_path, capsys, change, line, words):
    err = invalid(tmp_path, capsys, VALID.replace(*change))
    assert f"bad.yaml:{line}:" in err and words in err


def test_invalid_yaml_and_json_exit_2_naming_the_line(tmp_path, capsys):
    err = invalid(tmp_path, capsys, VALID.replace("  - {id: sun, languages: [ru]}", "  - {id: sun, languages: [ru]"))
    assert "bad.yaml:6:" in err and "not valid YAML or JSON" in err
    err = invalid(tmp_path, capsys, '{"country": "KG",\n "start": "2027-03-01T09:00:00",\n "until": }\n', "bad.json")
    assert "bad.json:3:" in err and "not valid JSON" in err


@pytest.mark.integration
def test_kezek_scenario_command_prints_json_lines_and_exits_0():
    example = EXAMPLES / "01_general_enrolment.yaml"
    r = subprocess.run([sys.executable, "-m", "kezek.cli", "scenario", str(example)], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == example.with_suffix(".jsonl").read_text()
    assert r.stderr == ""


def test_kezek_scenario_command_exits_2_with_the_line_on_stderr(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("child: aibek}", "child: bob}"))
    r = subprocess.run([sys.executable, "-m", "kezek.cli", "scenario", str(bad)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 2
    assert r.stdout == ""
    assert f"{bad}:15: steps[1].child: unknown child alias 'bob'" in r.stderr


@pytest.mark.integration
def test_a_busy_year_prints_the_same_lines_on_every_run(tmp_path):
    # Many workflows act at the same moments; their lines must not depend on
    # which one the server happens to run first.
    sys.path.insert(0, str(ROOT / "bench"))
    import yaml
    from scenario_year import build

    path = tmp_path / "year.yaml"
    path.write_text(yaml.safe_dump(build(80, seed=7), sort_keys=False))
    runs = []
    for _ in range(2):
        out = io.StringIO()
        assert run_file(str(path), out) == 0
        runs.append(out.getvalue())
    assert runs[0] == runs[1]
    events = [json.loads(x)["event"] for x in runs[0].splitlines()]
    assert events.count("referral.issued") > 40 and "step.refused" not in events
