"""Event schemas only grow within a version: the suite fails on an
incompatible change against the frozen snapshot, and the checker catches
each kind of break."""
from __future__ import annotations

import copy
import json

import pytest

from kezek.events import compat
from kezek.events.compat import check, compare, load_current, load_lock

BASE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["child_ref", "cohort"],
    "properties": {
        "child_ref": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "cohort": {"type": "integer", "minimum": 1990},
        "district": {"type": ["string", "null"], "maxLength": 40},
        "state": {"type": "string", "enum": ["awaiting_enrolment", "enrolled"]},
        "preferences": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 100}},
        "place": {"type": "object", "properties": {"count": {"type": "number"}}},
    },
}


def changed(edit) -> dict:
    new = copy.deepcopy(BASE)
    edit(new)
    return new


def kinds(new: dict) -> set[str]:
    return {b.kind for b in compare(BASE, new)}


def test_every_schema_is_compatible_with_the_frozen_snapshot():
    breaks = check(load_lock(), load_current())
    assert not breaks, "incompatible schema changes (publish a new type version instead):\n" + \
        "\n".join(map(str, breaks))


def test_every_public_type_is_frozen():
    locked = load_lock()
    missing = [t for t in load_current() if t.startswith("public.") and t not in locked]
    assert not missing, f"run `kezek schemas-lock` to freeze {missing}"


def test_removed_property_is_a_break():
    assert kinds(changed(lambda s: s["properties"].pop("district"))) == {"removed_property"}


def test_removed_nested_property_is_a_break():
    assert kinds(changed(lambda s: s["properties"]["place"]["properties"].pop("count"))) == {"removed_property"}


def test_new_required_property_is_a_break():
    assert kinds(changed(lambda s: s["required"].append("district"))) == {"new_required"}


def test_narrowed_type_is_a_break():
    assert kinds(changed(lambda s: s["properties"]["district"].update(type="string"))) == {"narrowed_type"}
    assert kinds(changed(lambda s: s["properties"]["place"]["properties"]["count"].update(type="integer"))) \
        == {"narrowed_type"}


def test_narrowed_enum_is_a_break():
    assert kinds(changed(lambda s: s["properties"]["state"].update(enum=["enrolled"]))) == {"narrowed_enum"}
    assert kinds(changed(lambda s: s["properties"]["district"].update(enum=["a"]))) == {"narrowed_enum"}


def test_tightened_additional_properties_is_a_break():
    assert kinds(changed(lambda s: s["properties"]["place"].update(additionalProperties=False))) \
        == {"tightened_additional_properties"}
    assert kinds(changed(lambda s: s["properties"]["place"].update(additionalProperties={"type": "string"}))) \
        == {"tightened_additional_properties"}


def test_tightened_limits_are_breaks():
    assert kinds(changed(lambda s: s["properties"]["district"].update(maxLength=20))) == {"tightened_limit"}
    assert kinds(changed(lambda s: s["properties"]["cohort"].update(minimum=2000))) == {"tightened_limit"}
    assert kinds(changed(lambda s: s["properties"]["district"].update(pattern="^[0-9]+$"))) == {"tightened_limit"}
    assert kinds(changed(lambda s: s["properties"]["preferences"]["items"].update(maxLength=10))) \
        == {"tightened_limit"}


def test_removed_type_is_a_break():
    assert [b.kind for b in check({"public.x.v1": BASE}, {})] == ["removed_type"]


@pytest.mark.parametrize("edit", [
    lambda s: s["properties"].update(language={"type": "string"}),          # new optional property
    lambda s: s["properties"]["district"].update(type=["string", "null", "integer"]),  # wider type
    lambda s: s["properties"]["state"]["enum"].append("cancelled"),          # new enum value
    lambda s: s["properties"]["district"].update(maxLength=80),              # looser limit
    lambda s: s["properties"]["cohort"].pop("minimum"),                      # limit dropped
    lambda s: s["required"].remove("cohort"),                                 # no longer required
    lambda s: s.update(additionalProperties=True),                            # looser
    lambda s: s["properties"]["place"]["properties"]["count"].update(type="number", description="more words"),
], ids=["new-optional", "wider-type", "new-enum-value", "looser-limit", "dropped-limit", "optional-now",
        "additional-allowed", "description-only"])
def test_additive_changes_are_compatible(edit):
    assert compare(BASE, changed(edit)) == []


def test_lock_command_refuses_a_break_and_accepts_an_additive_change(tmp_path, capsys):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "public.x.v1.json").write_text(json.dumps(BASE))
    lock = tmp_path / "lock.json"
    args = ["--schemas", str(schemas), "--lock", str(lock), "--no-asyncapi"]
    assert compat.main(args) == 0 and "public.x.v1" in load_lock(lock)

    (schemas / "public.x.v1.json").write_text(json.dumps(changed(lambda s: s["required"].append("district"))))
    assert compat.main(args) == 1
    assert "INCOMPATIBLE" in capsys.readouterr().out
    assert load_lock(lock)["public.x.v1"] == BASE, "a refused lock leaves the snapshot as it was"
    assert compat.main(args + ["--accept-breaking", "public.x.v1"]) == 0, "escape hatch for a never-released type"

    additive = changed(lambda s: s["properties"].update(language={"type": "string"}))
    (schemas / "public.x.v1.json").write_text(json.dumps(additive))
    assert compat.main(args) == 0
    assert load_lock(lock)["public.x.v1"] == additive
