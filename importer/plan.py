"""What an export means: rows checked one by one into what will be created
and what is refused, with the reason. No I/O: `kezek import` applies the
plan through the queue service's use cases, `kezek reconcile` recomputes it
to compare with what the system holds.

The queue's own rules decide (services.queue.domain: the PIN's birth date,
categories, ranking), so a row the queue would refuse is refused here first,
with a reason an operator can act on."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from kezek import calendar as kcal
from importer.export import Export
from services.queue import domain as d
from workflows.rules import CLOSED_STATES, LIVE_STATES

# And "expired": the old portal's name for a referral whose window ended.
ENDED_STATES = (*sorted(CLOSED_STATES), "expired")
IMPORTED_STATUSES = ("queued", "referred")
HISTORY_STATUSES = ("enrolled", "removed")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class Note:
    section: str
    row: str       # the row's id in the export (or its number)
    reason: str


@dataclass(frozen=True)
class Kindergarten:
    id: str
    name: str
    district: str
    address: str
    languages: tuple[str, ...]


@dataclass(frozen=True)
class Places:
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    free: int


@dataclass(frozen=True)
class Application:
    id: str              # the queue's id: "<source>-<old id>", the same on every run
    old_id: str
    pin: str
    surname: str
    name: str
    patronymic: str | None
    birth_date: date
    category: str
    queue_date: datetime
    language: str
    preferences: tuple[str, ...]
    parent_id: str | None

    def applicant(self) -> d.Applicant:
        return d.Applicant(self.id, self.birth_date, self.category, self.queue_date, self.language, self.preferences)


@dataclass(frozen=True)
class Referral(d.ImportReferral):
    """A live referral as the queue imports it (referral_id: "<source>-<old id>"),
    with its id in the export."""
    old_id: str = field(kw_only=True)


@dataclass(frozen=True)
class Parent:
    """A parent's account, for the registration service (which checks the
    names, PIN, phone and e-mail by its own rules)."""
    id: str              # "<source>-parent-<old id>": the queue entries' parent_id
    old_id: str
    email: str
    pin: str
    surname: str
    name: str
    patronymic: str | None
    phone: str


@dataclass
class Plan:
    kindergartens: list[Kindergarten] = field(default_factory=list)
    parents: list[Parent] = field(default_factory=list)
    places: list[Places] = field(default_factory=list)
    applications: list[Application] = field(default_factory=list)
    referrals: list[Referral] = field(default_factory=list)
    refused: list[Note] = field(default_factory=list)
    skipped: list[Note] = field(default_factory=list)   # valid, but not the queue's to keep


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def _moment(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _int(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _list(value) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [x.strip() for x in str(value or "").split(";") if x.strip()]


def make_plan(export: Export, policy: d.Policy, now: datetime | None = None) -> Plan:
    """What the import would do with the export, section by section: each
    row is taken, skipped (history that stays in the old archive) or refused
    with its reason. Later sections see only the rows earlier ones took."""
    p = _Planner(export, policy, now or datetime.now(UTC))
    p.kindergartens()
    p.places()
    p.children()
    p.applications(p.parents())
    p.referrals()
    return p.plan


class _Planner:
    def __init__(self, export: Export, policy: d.Policy, now: datetime):
        self.export, self.policy, self.now = export, policy, now
        self.plan = Plan()
        self.source = re.sub(r"[^a-z0-9]+", "-", export.source.lower()).strip("-") or "import"
        self.kgs: dict[str, Kindergarten] = {}
        self.children_by_id: dict[str, tuple[dict, date]] = {}
        self.apps: dict[str, Application] = {}

    def refuse(self, section: str, row: str, reason: str) -> None:
        self.plan.refused.append(Note(section, row, reason))

    def kindergartens(self) -> None:
        refuse, kgs = self.refuse, self.kgs
        for i, row in enumerate(self.export["kindergartens"], 1):
            kid = _text(row, "id") or f"#{i}"
            languages = tuple(_list(row.get("languages")))
            if not _text(row, "id"):
                refuse("kindergartens", kid, "id is empty")
            elif kid in kgs:
                refuse("kindergartens", kid, "duplicate kindergarten id")
            elif not _text(row, "name") or not _text(row, "district"):
                refuse("kindergartens", kid, "name or district is empty")
            elif not languages or not all(_LANGUAGE.match(x) for x in languages):
                refuse("kindergartens", kid, f"languages {row.get('languages')!r}: give language codes such as ky;ru")
            else:
                kgs[kid] = Kindergarten(kid, _text(row, "name"), _text(row, "district"), _text(row, "address"),
                                        languages)
        self.plan.kindergartens = list(kgs.values())

    def places(self) -> None:
        refuse, kgs, now, policy = self.refuse, self.kgs, self.now, self.policy
        pools: set[tuple] = set()
        for i, row in enumerate(self.export["places"], 1):
            kid, language = _text(row, "kindergarten"), _text(row, "language")
            cohort, free = _int(row.get("cohort")), _int(row.get("free"))
            category = _text(row, "category") or None
            key = (kid, cohort, language, category)
            where = f"#{i} {kid}/{cohort}/{language}"
            if kid not in kgs:
                refuse("places", where, f"unknown kindergarten {kid!r}")
            elif cohort is None or not 2000 <= cohort <= now.year:
                refuse("places", where, f"cohort {row.get('cohort')!r} is not a birth year")
            elif language not in kgs[kid].languages:
                refuse("places", where, f"kindergarten {kid} does not teach in {language!r}")
            elif category is not None and category not in policy.codes():
                refuse("places", where, f"unknown category {category!r}")
            elif free is None or free < 0:
                refuse("places", where, f"free {row.get('free')!r} is not a count")
            elif key in pools:
                refuse("places", where, "the same pool twice")
            else:
                pools.add(key)
                self.plan.places.append(Places(kid, cohort, language, category, free))

    def children(self) -> None:
        refuse, children, policy = self.refuse, self.children_by_id, self.policy
        pins: dict[str, str] = {}
        for i, row in enumerate(self.export["children"], 1):
            cid, pin = _text(row, "id") or f"#{i}", _text(row, "pin")
            if cid in children:
                refuse("children", cid, "duplicate child id")
                continue
            try:
                birth = d.birth_date_from_pin(pin, policy.country)
            except d.DomainError as exc:
                refuse("children", cid, str(exc))
                continue
            given = _text(row, "birth_date")
            if given and given != birth.isoformat() and policy.country == "KG":
                refuse("children", cid, f"birth_date {given} contradicts the PIN, which says {birth}")
            elif birth > self.now.date():
                refuse("children", cid, f"the PIN names a birth date in the future ({birth})")
            elif not _text(row, "surname") or not _text(row, "name"):
                refuse("children", cid, "surname or name is empty")
            elif pin in pins:
                refuse("children", cid, f"duplicate PIN: the same child as child {pins[pin]}")
            else:
                pins[pin] = cid
                children[cid] = (row, birth)

    def parents(self) -> dict[str, Parent]:
        parents: dict[str, Parent] = {}
        for i, row in enumerate(self.export["parents"], 1):
            pid = _text(row, "id") or f"#{i}"
            if not _text(row, "id"):
                self.refuse("parents", pid, "id is empty")
            elif pid in parents:
                self.refuse("parents", pid, "duplicate parent id")
            else:
                parents[pid] = Parent(id=f"{self.source}-parent-{pid}", old_id=pid, email=_text(row, "email"),
                                      pin=_text(row, "pin"), surname=_text(row, "surname"), name=_text(row, "name"),
                                      patronymic=_text(row, "patronymic") or None, phone=_text(row, "phone"))
        return parents

    def applications(self, parents: dict[str, Parent]) -> None:
        history: set[str] = set()
        by_child: dict[str, str] = {}
        for i, row in enumerate(self.export["applications"], 1):
            old = _text(row, "id") or f"#{i}"
            cid, status = _text(row, "child_id"), _text(row, "status") or "queued"
            if old in self.apps or old in history:
                self.refuse("applications", old, "duplicate application id")
            elif cid not in self.children_by_id:
                self.refuse("applications", old, f"child {cid!r} is unknown or was refused")
            elif status in HISTORY_STATUSES:
                history.add(old)
                self.plan.skipped.append(Note("applications", old, f"status {status}: no longer in the queue "
                                                                  "(history stays in the old portal's archive)"))
            elif status not in IMPORTED_STATUSES:
                self.refuse("applications", old, f"unknown status {status!r}")
            elif cid in by_child:
                self.refuse("applications", old, f"a second application of child {cid} (application "
                                                 f"{by_child[cid]} is in the queue; one entry per child)")
            elif (why := self._application_refusal(row)) is not None:
                self.refuse("applications", old, why)
            else:
                self.apps[old] = self._application(row, old)
                by_child[cid] = old
        # In rank order: each batch then joins behind the children imported
        # before it, and none of them moves. In the export's own order every
        # batch moved children of earlier ones, and each move is a position
        # event (3.1 a child over 10 batches, about 14 over 200).
        self.plan.applications = sorted(self.apps.values(), key=lambda a: d.rank_key(a.applicant(), self.policy))
        wanted = {a.parent_id for a in self.plan.applications}
        for parent in parents.values():
            if parent.id in wanted:
                self.plan.parents.append(parent)
            else:
                self.plan.skipped.append(Note("parents", parent.old_id, "no application of theirs is imported"))

    def _application_refusal(self, row: dict) -> str | None:
        cid, category, language = _text(row, "child_id"), _text(row, "category"), _text(row, "language")
        queue_date = _moment(_text(row, "queue_date"))
        prefs = tuple(_list(row.get("preferences")))
        if category not in self.policy.codes():
            return f"unknown category {category!r}; known: {', '.join(self.policy.codes())}"
        if queue_date is None:
            return f"queue_date {row.get('queue_date')!r} is not a moment with a UTC offset"
        if queue_date > self.now:
            return f"queue_date {queue_date.isoformat()} is in the future"
        birth = self.children_by_id[cid][1]
        if queue_date.date() < birth:
            return f"queue_date {queue_date.date()} is before the child's birth ({birth})"
        if not prefs or len(set(prefs)) != len(prefs):
            return "preferences are empty or list a kindergarten twice"
        if unknown := [k for k in prefs if k not in self.kgs]:
            return f"unknown kindergarten {unknown[0]!r} in the preferences"
        if untaught := [k for k in prefs if language not in self.kgs[k].languages]:
            return f"kindergarten {untaught[0]} does not teach in {language!r}"
        return None

    def _application(self, row: dict, old: str) -> Application:
        child, birth = self.children_by_id[_text(row, "child_id")]
        parent = _text(row, "parent_id")
        return Application(
            id=f"{self.source}-{old}", old_id=old, pin=_text(child, "pin"), surname=_text(child, "surname"),
            name=_text(child, "name"), patronymic=_text(child, "patronymic") or None, birth_date=birth,
            category=_text(row, "category"), queue_date=_moment(_text(row, "queue_date")).astimezone(UTC),
            language=_text(row, "language"), preferences=tuple(_list(row.get("preferences"))),
            parent_id=f"{self.source}-parent-{parent}" if parent else None)

    def referrals(self) -> None:
        live_for: dict[str, str] = {}
        seen: set[str] = set()
        for i, row in enumerate(self.export["referrals"], 1):
            old = _text(row, "id") or f"#{i}"
            state, app_old = _text(row, "state"), _text(row, "application_id")
            if old in seen:
                self.refuse("referrals", old, "duplicate referral id")
                continue
            seen.add(old)
            if state in ENDED_STATES:
                self.plan.skipped.append(Note("referrals", old, f"state {state}: ended (history stays in the archive)"))
            elif state not in LIVE_STATES:
                self.refuse("referrals", old, f"unknown state {state!r}")
            elif app_old not in self.apps:
                self.refuse("referrals", old, f"application {app_old!r} is unknown or was refused")
            elif (why := self._referral_refusal(row)) is not None:
                self.refuse("referrals", old, why)
            elif app_old in live_for:
                self.refuse("referrals", old, f"a second live referral of application {app_old} "
                                              f"(referral {live_for[app_old]})")
            elif (why := _progress_refusal(row, state, *self._moments(row), self.now)) is not None:
                self.refuse("referrals", old, why)
            else:
                live_for[app_old] = old
                self.plan.referrals.append(self._referral(row, old, state, self.apps[app_old]))

    @staticmethod
    def _moments(row: dict) -> tuple[datetime | None, datetime | None]:
        return _moment(_text(row, "issued_at")), _moment(_text(row, "deadline"))

    def _referral_refusal(self, row: dict) -> str | None:
        issued, deadline = self._moments(row)
        kid = _text(row, "kindergarten")
        if kid not in self.kgs:
            return f"unknown kindergarten {kid!r}"
        if issued is None or deadline is None:
            return "issued_at or deadline is not a moment with a UTC offset"
        if deadline <= issued:
            return f"deadline {deadline.isoformat()} is not after issued_at {issued.isoformat()}"
        return None

    def _referral(self, row: dict, old: str, state: str, app: Application) -> Referral:
        issued, deadline = self._moments(row)
        return Referral(
            referral_id=f"{self.source}-{old}", old_id=old, application_id=app.id,
            kindergarten=_text(row, "kindergarten"),
            cohort=_int(row.get("cohort")) or app.birth_date.year, language=_text(row, "language") or app.language,
            category=_text(row, "category") or app.category, for_category=None, state=state,
            issued_at=issued, deadline=deadline, needs_confirmation=_flag(row.get("needs_confirmation")),
            extended=_extended(row, state, issued, deadline, self.policy),
            confirmed_at=_moment(_text(row, "confirmed_at")) if _text(row, "confirmed_at") else None)


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _progress_refusal(row: dict, state: str, issued: datetime, deadline: datetime, now: datetime) -> str | None:
    """Why a live referral's progress (confirmation window, extension,
    confirmation) cannot be continued by a ReferralWorkflow, or None."""
    confirm = _flag(row.get("needs_confirmation"))
    if state == "awaiting_confirmation" and not confirm:
        return "state awaiting_confirmation, but needs_confirmation is false: no privilege to confirm"
    if _flag(row.get("extended")) and not confirm:
        return "extended, but needs_confirmation is false: only a confirmation window can be extended"
    if _text(row, "confirmed_at"):
        confirmed = _moment(_text(row, "confirmed_at"))
        if confirmed is None:
            return f"confirmed_at {row.get('confirmed_at')!r} is not a moment with a UTC offset"
        if state != "awaiting_enrolment" or not confirm:
            return "confirmed_at is given, but the referral is not waiting for enrolment after a confirmation"
        if not issued <= confirmed <= min(now, deadline):
            return f"confirmed_at {confirmed.isoformat()} is not between issued_at and the deadline (or now)"
    return None


def _extended(row: dict, state: str, issued: datetime, deadline: datetime, policy: d.Policy) -> bool:
    """The export's `extended`; an export without the column is read from the
    deadline: a confirmation window that ends well after its length from
    `issued_at` has been extended (the old portal's calendar may differ from
    ours by a day or two, hence the margin of half an extension)."""
    raw = _text(row, "extended")
    if raw:
        return _flag(raw)
    if state != "awaiting_confirmation":
        return False
    window = kcal.calendar(policy.country).window_end(issued, policy.confirm_working_days)
    return deadline > window + timedelta(days=policy.extension_days / 2)


def expected_positions(applications: list[Application], policy: d.Policy,
                       referred: set[str] = frozenset()) -> dict[str, int]:
    """Each waiting child's position for its first preference, as the queue
    computes it (services.queue.domain.explain_position): its rank among the
    waiting children of its cohort who list that kindergarten. One sort per
    kindergarten and cohort instead of one scan per child."""
    waiting = [a for a in applications if a.id not in referred]
    lists: dict[tuple[str, int], list[Application]] = {}
    for a in waiting:
        for kg in a.preferences:
            lists.setdefault((kg, a.birth_date.year), []).append(a)
    rank: dict[tuple[str, int], dict[str, int]] = {}
    for key, group in lists.items():
        group.sort(key=lambda a: d.rank_key(a.applicant(), policy))
        rank[key] = {a.id: i + 1 for i, a in enumerate(group)}
    return {a.id: rank[(a.preferences[0], a.birth_date.year)][a.id] for a in waiting}
