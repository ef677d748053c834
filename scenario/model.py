"""Reading a scenario file (SCENARIOS.md): YAML or JSON, checked before the
run starts. Every problem is a ScenarioError naming the line it is on.

The file is read as a YAML node tree (JSON is YAML too), so every value
keeps its line, and scalars are taken as written: a PIN stays a string of
digits, "no" stays "no", a time stays local time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from services.queue.domain import DomainError, Policy, birth_date_from_pin

STEP_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required fields, optional fields) besides `at` and `do`
    "apply": ({"child"}, set()),
    "publish_places": ({"kindergarten", "cohort", "language", "places"}, {"for_category"}),
    "withdraw_places": ({"kindergarten", "cohort", "language", "places"}, {"for_category"}),
    "confirm_privilege": ({"child", "certificate_issued"}, set()),
    "reject_privilege": ({"child"}, {"reason"}),
    "extend_referral": ({"child"}, set()),
    "cancel_referral": ({"child"}, set()),
    "enrol": ({"child"}, set()),
    "remove_from_queue": ({"child"}, set()),
    "leave": ({"child"}, set()),
}
TOP_FIELDS = {"country", "start", "until", "policy", "kindergartens", "children", "steps"}
KINDERGARTEN_FIELDS = {"id", "name", "district", "address", "languages"}
CHILD_FIELDS = {"id", "pin", "category", "applied", "preferences", "language", "birth_date", "name"}


class ScenarioError(Exception):
    """An invalid scenario file; `line` is 1-based (0: the whole file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message

    def format(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.message}" if self.line else f"{filename}: {self.message}"


@dataclass(frozen=True)
class Kindergarten:
    id: str
    languages: tuple[str, ...]
    district: str = ""
    line: int = 0


@dataclass(frozen=True)
class ChildSpec:
    alias: str
    pin: str
    birth_date: date
    category: str
    applied: datetime | None      # local time; None: joins with an `apply` step
    preferences: tuple[str, ...]
    language: str
    line: int = 0


@dataclass(frozen=True)
class Step:
    index: int
    at: datetime                  # local time
    do: str
    line: int
    child: str | None = None
    kindergarten: str | None = None
    cohort: int | None = None
    language: str | None = None
    places: int | None = None
    for_category: str | None = None
    certificate_issued: date | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Scenario:
    country: str
    start: datetime               # local, naive
    until: datetime
    policy: Policy
    kindergartens: dict[str, Kindergarten]
    children: dict[str, ChildSpec]   # file order
    steps: tuple[Step, ...] = field(default_factory=tuple)


# --------------------------------------------------------------- node access


class _Node:
    """A YAML node with its line and typed accessors that fail with it."""

    def __init__(self, node: yaml.Node, what: str) -> None:
        self.node, self.what = node, what
        self.line = node.start_mark.line + 1

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(self.line, f"{self.what}: {message}")

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag.endswith(":null")

    def mapping(self, allowed: set[str]) -> dict[str, "_Node"]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail("expected a mapping")
        out: dict[str, _Node] = {}
        for k, v in self.node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            where = f"{self.what}.{key}" if self.what else str(key)
            if key is None:
                raise ScenarioError(k.start_mark.line + 1, f"{self.what}: keys must be plain names")
            if key in out:
                raise ScenarioError(k.start_mark.line + 1, f"{where}: given twice")
            if key not in allowed:
                raise ScenarioError(k.start_mark.line + 1,
                                    f"{where}: unknown field; expected one of {', '.join(sorted(allowed))}")
            out[key] = _Node(v, where)
        return out

    def items(self) -> list["_Node"]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail("expected a list")
        return [_Node(v, f"{self.what}[{i}]") for i, v in enumerate(self.node.value)]

    def text(self) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.is_null() or self.node.value == "":
            raise self.fail("expected a value")
        return self.node.value

    def integer(self, low: int | None = None) -> int:
        raw = self.text()
        try:
            value = int(raw, 10)
        except ValueError:
            raise self.fail(f"expected a whole number, got {raw!r}") from None
        if low is not None and value < low:
            raise self.fail(f"must be at least {low}")
        return value

    def boolean(self) -> bool:
        raw = self.text().lower()
        if raw in ("true", "yes"):
            return True
        if raw in ("false", "no"):
            return False
        raise self.fail(f"expected true or false, got {raw!r}")

    def moment(self) -> datetime:
        raw = self.text()
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise self.fail(f"expected a local time like 2027-03-01T09:00:00, got {raw!r}") from None
        if value.tzinfo is not None:
            raise self.fail(f"{raw!r}: give local time without an offset")
        return value.replace(microsecond=0)

    def day(self) -> date:
        raw = self.text()
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise self.fail(f"expected a date like 2027-02-27, got {raw!r}") from None

    def strings(self) -> tuple[str, ...]:
        return tuple(n.text() for n in self.items())


# ------------------------------------------------------------------ reading


def load(path: str | Path) -> Scenario:
    text = Path(path).read_text(encoding="utf-8")
    return parse(text)


def parse(text: str) -> Scenario:
    if text.lstrip().startswith(("{", "[")):
        # JSON: its own parser first, which is stricter than YAML's reading of it.
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(e.lineno, f"not valid JSON: {e.msg}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ScenarioError(mark.line + 1 if mark else 0, f"not valid YAML or JSON: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(0, f"not valid YAML or JSON: {e}") from None
    if root is None:
        raise ScenarioError(0, "the file is empty")
    top = _Node(root, "").mapping(TOP_FIELDS)
    for required in ("country", "start", "until", "children", "steps"):
        if required not in top:
            raise ScenarioError(root.start_mark.line + 1, f"{required}: missing")

    country = top["country"].text()
    if country not in ("KG", "KZ"):
        raise top["country"].fail(f"must be KG or KZ, not {country!r}")
    start, until = top["start"].moment(), top["until"].moment()
    if until <= start:
        raise top["until"].fail("must be after start")

    policy = _policy(top.get("policy"), country)
    kindergartens = _kindergartens(top.get("kindergartens"))
    children = _children(top["children"], country, policy, kindergartens, start)
    steps = _steps(top["steps"], policy, kindergartens, children, start, until)

    joins = {s.child for s in steps if s.do == "apply"}
    for child in children.values():
        if child.applied is None and child.alias not in joins:
            raise ScenarioError(child.line, f"child {child.alias!r}: no `applied` time and no `apply` step")
    return Scenario(country, start, until, policy, kindergartens, children, steps)


def _policy(node: _Node | None, country: str) -> Policy:
    fields = {"min_age_years", "confirm_working_days", "enrol_working_days", "certificate_valid_days",
              "extension_days", "stoplist_days", "school_age_years", "categories"}
    overrides: dict[str, Any] = {"country": country}
    if node is None or node.is_null():
        return Policy(country=country)
    for key, value in node.mapping(fields).items():
        if key == "categories":
            cats = []
            for item in value.items():
                m = item.mapping({"code", "rank", "needs_confirmation"})
                if "code" not in m or "rank" not in m:
                    raise item.fail("a category needs a code and a rank")
                cats.append({"code": m["code"].text(), "rank": m["rank"].integer(),
                             "needs_confirmation": m["needs_confirmation"].boolean()
                             if "needs_confirmation" in m else False})
            overrides[key] = tuple(cats)
        else:
            overrides[key] = value.integer(0)
    try:
        return Policy().replace(**overrides)
    except DomainError as e:
        raise node.fail(str(e)) from None


def _kindergartens(node: _Node | None) -> dict[str, Kindergarten]:
    out: dict[str, Kindergarten] = {}
    if node is None or node.is_null():
        return out
    for item in node.items():
        m = item.mapping(KINDERGARTEN_FIELDS)
        if "id" not in m:
            raise item.fail("id: missing")
        kid = m["id"].text()
        if kid in out:
            raise m["id"].fail(f"kindergarten {kid!r} is listed twice")
        if "languages" not in m:
            raise item.fail("languages: missing")
        languages = m["languages"].strings()
        if not languages:
            raise m["languages"].fail("at least one language")
        out[kid] = Kindergarten(kid, languages, m["district"].text() if "district" in m else "", item.line)
    return out


def _children(node: _Node, country: str, policy: Policy, kindergartens: dict[str, Kindergarten],
              start: datetime) -> dict[str, ChildSpec]:
    out: dict[str, ChildSpec] = {}
    pins: dict[str, str] = {}
    for item in node.items():
        m = item.mapping(CHILD_FIELDS)
        for required in ("id", "pin", "category", "language"):
            if required not in m:
                raise item.fail(f"{required}: missing")
        alias = m["id"].text()
        if alias in out:
            raise m["id"].fail(f"child alias {alias!r} is used twice")
        pin = m["pin"].text()
        try:
            born = birth_date_from_pin(pin, country)
        except DomainError as e:
            raise m["pin"].fail(f"bad PIN {pin!r}: {str(e).removeprefix('pin: ')}") from None
        if "birth_date" in m:
            given = m["birth_date"].day()
            if country == "KG" and given != born:
                raise m["birth_date"].fail(f"contradicts the PIN, which gives {born}")
            born = given  # a Kazakh IIN's date is only a hint
        if pin in pins:
            raise m["pin"].fail(f"PIN {pin} is already the PIN of child {pins[pin]!r}")
        pins[pin] = alias
        category = m["category"].text()
        try:
            policy.category(category)
        except DomainError as e:
            raise m["category"].fail(str(e)) from None
        applied = m["applied"].moment() if "applied" in m and not m["applied"].is_null() else None
        if applied is not None and applied > start:
            raise m["applied"].fail("is after start; leave it out and add an `apply` step instead")
        if applied is not None and born > applied.date():
            raise m["pin"].fail(f"bad PIN {pin!r}: the birth date {born} is after the child joins the queue")
        prefs = m["preferences"].strings() if "preferences" in m and not m["preferences"].is_null() else ()
        for i, kg in enumerate(prefs):
            if kg not in kindergartens:
                raise m["preferences"].items()[i].fail(f"unknown kindergarten {kg!r}")
        if len(set(prefs)) != len(prefs):
            raise m["preferences"].fail("a kindergarten is listed twice")
        out[alias] = ChildSpec(alias, pin, born, category, applied, prefs, m["language"].text(), item.line)
    return out


def _steps(node: _Node, policy: Policy, kindergartens: dict[str, Kindergarten],
           children: dict[str, ChildSpec], start: datetime, until: datetime) -> tuple[Step, ...]:
    steps: list[Step] = []
    previous: datetime | None = None
    if node.is_null():
        return ()
    for index, item in enumerate(node.items()):
        if not isinstance(item.node, yaml.MappingNode):
            raise item.fail("expected a mapping with `at` and `do`")
        raw = {k.value: v for k, v in item.node.value if isinstance(k, yaml.ScalarNode)}
        do_node = raw.get("do")
        if do_node is None:
            raise item.fail("do: missing")
        do = _Node(do_node, f"steps[{index}].do").text()
        if do not in STEP_FIELDS:
            raise _Node(do_node, f"steps[{index}].do").fail(
                f"unknown step {do!r}; expected one of {', '.join(STEP_FIELDS)}")
        required, optional = STEP_FIELDS[do]
        m = item.mapping(required | optional | {"at", "do"})
        for name in sorted(required | {"at"}):
            if name not in m:
                raise item.fail(f"{name}: missing for {do}")
        at = m["at"].moment()
        if previous is not None and at < previous:
            raise m["at"].fail(f"steps out of order: {at.isoformat()} is before the previous step "
                               f"({previous.isoformat()})")
        if at < start:
            raise m["at"].fail(f"{at.isoformat()} is before start")
        if at > until:
            raise m["at"].fail(f"{at.isoformat()} is after until")
        previous = at
        values: dict[str, Any] = {}
        if "child" in m:
            alias = m["child"].text()
            if alias not in children:
                raise m["child"].fail(f"unknown child alias {alias!r}")
            values["child"] = alias
            if do == "apply" and children[alias].applied is None and at.date() < children[alias].birth_date:
                raise m["at"].fail(f"child {alias!r} is not born yet")
        if "kindergarten" in m:
            kg = m["kindergarten"].text()
            if kg not in kindergartens:
                raise m["kindergarten"].fail(f"unknown kindergarten {kg!r}")
            values["kindergarten"] = kg
            values["cohort"] = m["cohort"].integer(1900)
            language = m["language"].text()
            if language not in kindergartens[kg].languages:
                raise m["language"].fail(f"kindergarten {kg!r} teaches in {', '.join(kindergartens[kg].languages)}, "
                                         f"not {language!r}")
            values["language"] = language
            values["places"] = m["places"].integer(1)
        if "for_category" in m and not m["for_category"].is_null():
            cat = m["for_category"].text()
            try:
                policy.category(cat)
            except DomainError as e:
                raise m["for_category"].fail(str(e)) from None
            values["for_category"] = cat
        if "certificate_issued" in m:
            values["certificate_issued"] = m["certificate_issued"].day()
        if "reason" in m and not m["reason"].is_null():
            values["reason"] = m["reason"].text()
        steps.append(Step(index=index, at=at, do=do, line=item.line, **values))
    return tuple(steps)
