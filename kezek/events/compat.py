"""Compatibility of event schemas across changes within one version.

The rule (docs/events/asyncapi.yaml, "Versioning rules"): within a version a
schema may only grow. A new schema is compatible with the old one when every
event the old one accepted is still accepted (archived events replay) and no
property a consumer relies on disappears. Breaks:

- a property removed, or a schema type removed altogether;
- a new required property;
- a type narrowed (a type dropped from the list; number -> integer), an enum
  value dropped, a const changed or added;
- additionalProperties tightened (allowed -> false, or -> a schema);
- a limit tightened (minLength/minimum/minItems up, maxLength/maximum/maxItems
  down, a pattern or a format added or changed, uniqueItems turned on).

Anything else is a new type version (`...v2`). `kezek schemas-lock` records
the current schemas in schemas.lock.json once they pass this check."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "schemas"
LOCK_PATH = Path(__file__).parent / "schemas.lock.json"

LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
EXACT = ("pattern", "format", "multipleOf")


@dataclass(frozen=True)
class Break:
    where: str   # "<type>: /data/child_ref"
    kind: str    # removed_property, new_required, narrowed_type, narrowed_enum, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


def _types(schema: dict) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None  # any type
    return {t} if isinstance(t, str) else set(t)


def _covers(new: set[str] | None, old: set[str] | None) -> list[str]:
    """Types of `old` that `new` no longer accepts."""
    if new is None:
        return []
    if old is None:
        return ["(any)"]
    lost = []
    for t in sorted(old):
        if t in new or (t == "integer" and "number" in new):
            continue
        lost.append(t)
    return lost


def _additional(schema: dict):
    return schema.get("additionalProperties", True)


def compare(old: dict, new: dict, where: str = "") -> list[Break]:
    """Every incompatible difference between two versions of one schema."""
    out: list[Break] = []
    path = where or "/"

    lost = _covers(_types(new), _types(old))
    if lost:
        out.append(Break(path, "narrowed_type", f"no longer accepts {', '.join(lost)}"))

    if "enum" in new:
        if "enum" not in old:
            out.append(Break(path, "narrowed_enum", "an enum was added"))
        else:
            gone = [v for v in old["enum"] if v not in new["enum"]]
            if gone:
                out.append(Break(path, "narrowed_enum", f"values removed: {json.dumps(gone, ensure_ascii=False)}"))
    if "const" in new and new.get("const") != old.get("const", object()):
        out.append(Break(path, "narrowed_enum", "const added or changed"))

    for key in LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            out.append(Break(path, "tightened_limit", f"{key} {old.get(key, 'none')} -> {new[key]}"))
    for key in UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            out.append(Break(path, "tightened_limit", f"{key} {old.get(key, 'none')} -> {new[key]}"))
    for key in EXACT:
        if key in new and new[key] != old.get(key):
            out.append(Break(path, "tightened_limit", f"{key} added or changed: {old.get(key)!r} -> {new[key]!r}"))
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        out.append(Break(path, "tightened_limit", "uniqueItems turned on"))

    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in old_props:
        if name not in new_props:
            out.append(Break(f"{where}/{name}", "removed_property", "the property was removed"))
        else:
            out += compare(old_props[name], new_props[name], f"{where}/{name}")
    added_required = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    if added_required:
        out.append(Break(path, "new_required", f"now required: {', '.join(added_required)}"))

    old_add, new_add = _additional(old), _additional(new)
    if isinstance(old_add, dict) and isinstance(new_add, dict):
        out += compare(old_add, new_add, f"{where}/*")
    elif old_add is not False and new_add is not True:
        out.append(Break(path, "tightened_additional_properties",
                         f"additionalProperties {json.dumps(old_add)} -> {json.dumps(new_add)}"))
    # A property the old schema let through as "additional" must still pass.
    if old_add is not False:
        for name in new_props:
            if name not in old_props and isinstance(old_add, dict):
                out += compare(old_add, new_props[name], f"{where}/{name}")

    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        out += compare(old["items"], new["items"], f"{where}[]")
    elif "items" in new and "items" not in old:
        out.append(Break(path, "narrowed_type", "items constrained"))
    return out


def load_current(schema_dir: Path = SCHEMA_DIR) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(schema_dir.glob("*.json"))}


def load_lock(lock_path: Path = LOCK_PATH) -> dict[str, dict]:
    return json.loads(lock_path.read_text())["schemas"] if lock_path.is_file() else {}


def check(locked: dict[str, dict], current: dict[str, dict]) -> list[Break]:
    """Breaks of the current schemas against the snapshot. New types are fine."""
    out: list[Break] = []
    for event_type, old in sorted(locked.items()):
        if event_type not in current:
            out.append(Break(event_type, "removed_type", "the schema file was removed"))
            continue
        out += [Break(f"{event_type}: {b.where}", b.kind, b.detail) for b in compare(old, current[event_type])]
    return out


def render_lock(current: dict[str, dict]) -> str:
    return json.dumps({"about": "Frozen event schemas: kezek/events/compat.py compares the schemas with this "
                                "snapshot; refresh it with `kezek schemas-lock` after an additive change.",
                       "schemas": current}, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """`kezek schemas-lock`: refresh the snapshot (and the AsyncAPI document)
    after additive changes; refuse incompatible ones."""
    import argparse

    parser = argparse.ArgumentParser(prog="kezek schemas-lock", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a break")
    parser.add_argument("--accept-breaking", action="append", default=[], metavar="TYPE",
                        help="lock TYPE despite a break (only for a type never released)")
    parser.add_argument("--schemas", type=Path, default=SCHEMA_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--lock", type=Path, default=LOCK_PATH, help=argparse.SUPPRESS)
    parser.add_argument("--no-asyncapi", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    current, locked = load_current(args.schemas), load_lock(args.lock)
    breaks = check(locked, current)
    accepted = [b for b in breaks if b.where.split(":")[0] in args.accept_breaking]
    refused = [b for b in breaks if b not in accepted]
    for b in refused:
        print(f"INCOMPATIBLE {b}")
    for b in accepted:
        print(f"accepted break {b}")
    added = sorted(set(current) - set(locked))
    changed = sorted(t for t in current if t in locked and current[t] != locked[t])
    if refused:
        print(f"{len(refused)} incompatible change(s): publish a new type version (...v2) instead; lock not written")
        return 1
    if args.check:
        if added or changed:
            print(f"lock out of date (additive): new {added or '-'}, changed {changed or '-'}")
        return 0
    text = render_lock(current)
    if not args.lock.is_file() or args.lock.read_text() != text:
        args.lock.write_text(text)
    print(f"locked {len(current)} schemas; new: {', '.join(added) or '-'}; changed: {', '.join(changed) or '-'}")
    if not args.no_asyncapi:
        from kezek.wiring import public_contract

        contract = public_contract()
        if contract is not None and contract.write_asyncapi():
            print(f"rewrote {contract.ASYNCAPI_PATH}")
    return 0
