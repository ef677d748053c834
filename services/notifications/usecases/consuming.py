"""Consuming facts: the Kafka consumer's handler and the workflow's
notify_parent activity. Contacts and referral facts are remembered, then one
message per channel is made (queued, or dead-lettered if its template
fails); an event whose parent is not known yet is parked until it is."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.db import take_rows, unit_of_work
from kezek.events import Event, new_event, schema_for
from kezek.logging import get_logger
from kezek.outbox import sealed_payload
from kezek.sealing import ring_of
from kezek.tracing import current_context
from services.notifications import domain as d
from services.notifications.models import Contact, KnownApplication, KnownReferral, Message, ParkedEvent, outbox
from services.notifications.rendering import Renderer, stored_params, template_values
from services.notifications.usecases import moves
from services.notifications.usecases.common import MESSAGE_NS, SYSTEM, message_id, upsert, when

log = get_logger("services.notifications.service")

REFERRAL_FACTS = ("kindergarten_id", "kindergarten_name", "kindergarten_address", "office_address",
                  "needs_confirmation")
CONTACT_EVENTS = ("application.received.v1", "account.activation_issued.v1")
CONSUMED_TYPES = frozenset(d.RULES) | frozenset(CONTACT_EVENTS)
# The activity's claims in processed_events, apart from the Kafka consumer's.
ACTIVITY_CONSUMER = "notifications.notify_parent"
# session.info key of what `prepare` read for a batch.
_PREPARED = "notifications.prepared"
_PREPARED_ROWS = "notifications.prepared_rows"
# session.info keys: the events parked for the applications of a batch's
# received events (taken off by `prepare`, or parked during the batch before
# their received event), by application; and (the applications whose
# received event is still to come in the batch, those of them known before it).
_PARKED = "notifications.parked"
_AWAITED = "notifications.awaited"
# session.info key: the rows of events parked in a batch for applications its
# received events do not name, written together by `finish`.
_TO_PARK = "notifications.to_park"
# session.info key: the contacts and applications of the imported received
# events the batch has handled in a row, written together before anything
# else reads them.
_RECEIVED_ROWS = "notifications.received_rows"
# session.info key: the applications, new to this service, of that run's
# received events with parked events; their rows read together, and their
# parked events replayed, once the run's rows are written.
_REPLAY_DUE = "notifications.replay_due"
# session.info key: the messages made since the last write, by id, written
# together (with their outbox and audit rows) by `_write_made`.
_MADE = "notifications.made"
# session.info keys: the known referrals `prepare` read (locked) for the
# batch's referral events, by id (None: not known), and those learnt since;
# the contacts it read for the batch's events that may make messages.
_REFERRALS = "notifications.referrals"
_CONTACTS = "notifications.contacts"
# Fields the workflow sends as local wall time without an offset.
_LOCAL_TIMES = ("deadline", "stoplist_until")


@dataclass
class _Made:
    """A message made, not written yet: its row but its status and release,
    which `_write_made` works out with the batch's others on its phone."""
    row: dict
    now: datetime
    channel: d.Channel
    urgent: bool
    trace: dict


def _may_be_news(data: dict) -> bool:
    """A position event that can tell the parent something (`reached_top_ten`)."""
    position = data.get("position")
    return isinstance(position, int) and position <= d.TOP_TEN


class Consuming:
    """Part of NotificationService (service.py): what it needs from it."""

    sessions: sessionmaker[Session]
    tz: tzinfo
    cabinet_url: str
    renderer: Renderer
    limits: tuple[d.RateLimit, ...]
    clock: Any

    def prepare(self, session: Session, events: list[Event]) -> None:
        """Before a batch of the consumer's events (one transaction): the
        known applications its events name, locked in one statement, and
        which of their parents have contacts, so that a position event that
        is no news (nearly every one on a distribution day) costs its row's
        update and nothing else. Only a cache: `handle` reads what is not
        here, and an application whose received event is in the batch is
        left out (that event rewrites its row)."""
        received = {e.data.get("application_id") for e in events if e.type == "application.received.v1"}
        received.discard(None)
        if received:
            # What the batch's received events will replay, taken off in one
            # statement each: an import's received events come after their
            # children's first positions were parked, or with nothing parked
            # at all. And which of their applications are known already:
            # nothing before its received event in the batch makes one known.
            parked: dict[str, list[Event]] = {}
            taken = take_rows(session, ParkedEvent.event_id, (ParkedEvent.application_id, ParkedEvent.payload),
                              ParkedEvent.application_id.in_(sorted(received)), ParkedEvent.parked_at)
            for aid, payload in taken:
                parked.setdefault(aid, []).append(Event.from_json(payload))
            session.info[_PARKED] = parked
            session.info[_AWAITED] = (set(received), set(session.scalars(
                sa.select(KnownApplication.application_id).where(KnownApplication.application_id.in_(sorted(received))))))
        ids = sorted({aid for e in events if e.type in d.RULES and e.type != "application.received.v1"
                      and (aid := e.data.get("application_id")) and aid not in received})
        apps = session.scalars(sa.select(KnownApplication).where(KnownApplication.application_id.in_(ids))
                               .order_by(KnownApplication.application_id).with_for_update()).all() if ids else []
        parents = {a.parent_id for a in apps} | {e.data["parent_id"] for e in events if e.data.get("parent_id")}
        contacts = set(session.scalars(sa.select(Contact.parent_id).where(Contact.parent_id.in_(sorted(parents))))) \
            if ids else set()
        session.info[_PREPARED] = ({a.application_id for a in apps}, contacts, set(ids))
        # The referral facts of the batch's referral events, locked in one
        # statement (each event read and locked its own), and the contacts
        # of the parents its events may tell (opened: they are few): those
        # of its events other than positions, and of the positions in the
        # top ten (the only ones that can be news; on a distribution day,
        # the children moved into it in every pool).
        refs = sorted({rid for e in events if e.type.startswith("referral.") and (rid := e.data.get("referral_id"))})
        known = session.scalars(sa.select(KnownReferral).where(KnownReferral.referral_id.in_(refs))
                                .order_by(KnownReferral.referral_id).with_for_update()).all() if refs else []
        session.info[_REFERRALS] = {**dict.fromkeys(refs), **{k.referral_id: k for k in known}}
        apps_by_id = {a.application_id: a for a in apps}
        telling = {e.data.get("parent_id") or getattr(apps_by_id.get(e.data.get("application_id")), "parent_id", None)
                   for e in events if e.type in d.RULES and e.type != "application.received.v1"
                   and (e.type != "application.position_changed.v1" or _may_be_news(e.data))}
        # (not a parent whose contact an event of the batch rewrites: read when told)
        telling -= {e.data.get("parent_id") for e in events if e.type in CONTACT_EVENTS}
        telling = sorted((telling & contacts) - {None})
        session.info[_CONTACTS] = session.scalars(sa.select(Contact).where(Contact.parent_id.in_(telling))).all() \
            if telling else []
        # The session's identity map holds unchanged rows weakly: kept here,
        # they are there for `handle` (session.get, no statement).
        session.info[_PREPARED_ROWS] = list(apps)
        session.info[_TO_PARK] = []
        session.info[_RECEIVED_ROWS] = ([], [])
        session.info[_REPLAY_DUE] = {}

    def finish(self, session: Session, events: list[Event] | None = None) -> None:
        """After a prepared batch's events (and before anything that reads
        or deletes parked events, such as the retention job): the events it
        parked, written in one execution instead of a statement each (an
        import parks every child's first positions)."""
        self._write_received(session)
        self._write_made(session)
        rows = session.info.get(_TO_PARK)
        if rows:
            upsert(session, ParkedEvent, rows, ["event_id"])
            rows.clear()

    def _prepared(self, session: Session) -> tuple[set[str], set[str], set[str]]:
        """(applications locked by `prepare`, parents known to have a
        contact, applications it asked for: those of them it did not find
        are not known, as nothing in the batch makes them known)."""
        return session.info.get(_PREPARED, (set(), set(), set()))

    def handle(self, session: Session, event: Event) -> None:
        """One event: at most one message per channel (the caller's claim of
        the event id and this work commit together)."""
        if event.type != "application.received.v1":
            self._write_received(session)
        self._remember(session, event)
        if event.type == "application.received.v1":
            if not event.data.get("imported"):
                self._write_received(session)   # its messages are made now
            self._known_now(session, event.data)
        if event.type in d.RULES:
            self._notify(session, event)
        if event.type == "application.received.v1" \
                and event.data["application_id"] not in session.info.get(_REPLAY_DUE, ()):
            self._replay_parked(session, event.data["application_id"])
        if _PREPARED not in session.info:
            self._write_made(session)       # one event alone: written now (in a batch, by `finish`)

    def notify_parent(self, *, key: str, kind: str, referral_id: str, application_id: str,
                      parent_id: str | None, at: datetime, data: dict) -> bool:
        """The workflow's command to tell the parent about `kind`. Messages
        only for kinds in `domain.ACTIVITY_KINDS` (the others are told from
        their Kafka fact: acknowledged here, so never twice). Once per `key`:
        the key's claim and the messages commit together, and the message ids
        derive from the key as well. True if messages were made (or parked)."""
        if not d.told_by_activity(kind):
            log.info("notifications.activity_acknowledged", kind=kind, referral_id=referral_id)
            return False
        event_id = str(uuid.uuid5(MESSAGE_NS, f"activity:{key}"))
        allowed = schema_for(kind).get("properties", {})
        fields = {**data, "referral_id": referral_id, "application_id": application_id,
                  **({"parent_id": parent_id} if parent_id else {})}
        clean = {k: self._local_time(v) if k in _LOCAL_TIMES else v
                 for k, v in fields.items() if k in allowed and v not in (None, "-")}
        event = new_event(kind, f"referral:{referral_id}", clean, source="notifications", time=at,
                          event_id=event_id)
        with unit_of_work(self.sessions) as s:
            if not outbox.claim(s, ACTIVITY_CONSUMER, event_id):
                return False
            self.handle(s, event)
            return True

    def _local_time(self, value: Any) -> Any:
        """The workflow writes deadlines as local wall time without an offset."""
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=self.tz)).isoformat()

    def _notify(self, session: Session, event: Event) -> None:
        data = event.data
        if event.type == "application.position_changed.v1":
            # Whether the parent can be told, without opening the contact
            # (sealed at rest): most position events are no news.
            if not self._reachable(session, data):
                self._park(session, event)
                return
            if not self._top_ten_news(session, data):
                return
        recipient = self._recipient(session, event)
        if recipient is None:
            self._park(session, event)
            return
        if event.type == "application.received.v1" and data.get("imported"):
            return  # the old portal told the parent; the contacts are what counts
        facts = self._referral_facts(session, data)
        values = template_values({**facts, **data}, occurred_at=event.time, tz=self.tz,
                                 cabinet_url=self.cabinet_url)
        params = stored_params({**facts, **data}, event.time)
        for planned in d.plan_messages(event.type, recipient, event.time):
            self._create(session, event, planned, recipient, values,
                         params if planned.channel is d.Channel.INAPP else None)

    def _park(self, session: Session, event: Event) -> None:
        """Kept until the application's received event brings its parent."""
        application_id = event.data["application_id"]
        if application_id in session.info.get(_AWAITED, ((), ()))[0]:
            # Its received event comes later in this batch: replayed then,
            # as it would be from the table, without writing it there.
            session.info[_PARKED].setdefault(application_id, []).append(event)
            return
        row = {"event_id": event.id, "application_id": application_id,
               "payload": sealed_payload(ring_of(session), event.type, event.to_json()), "parked_at": self.clock()}
        if _TO_PARK in session.info:
            session.info[_TO_PARK].append(row)      # written by `finish`, with the batch's others
        else:
            upsert(session, ParkedEvent, row, ["event_id"])
        log.debug("notifications.parked", application_id=application_id)   # an import parks thousands: PARKED counts them

    def _reachable(self, session: Session, data: dict) -> bool:
        """`_recipient` would find the parent (the application known, its
        parent's contact there), told without reading the contact."""
        found, contacts, asked = self._prepared(session)
        aid = data["application_id"]
        if aid in asked and aid not in found:
            return False              # not known (yet): parked, without asking again
        awaited, known_before = session.info.get(_AWAITED, ((), ()))
        if aid in awaited and aid not in known_before:
            return False              # its received event, later in the batch, makes it known
        app = session.get(KnownApplication, aid)
        if app is None:
            return False
        parent_id = data.get("parent_id") or app.parent_id
        if parent_id in contacts:
            return True
        return session.scalar(sa.select(sa.func.count()).select_from(Contact)
                              .where(Contact.parent_id == parent_id)) > 0

    def _create(self, session: Session, event: Event, planned: d.PlannedMessage,
                recipient: d.Recipient, values: dict, params: str | None = None) -> None:
        """The message, rendered; written with the others made before the
        batch's end (`_write_made`), where its SMS slot is worked out."""
        now = self.clock()
        data = event.data
        rule = d.RULES[event.type]
        mid = message_id(event.id, planned.channel)
        made = session.info.setdefault(_MADE, {})
        if mid in made:
            return
        expires = (when(data.get("expires_at")) or planned.expires_at) if rule.ttl else None
        row = dict(
            id=mid, source_event_id=event.id, source_event_type=event.type, kind=planned.kind.value,
            channel=planned.channel.value, parent_id=recipient.parent_id,
            application_id=data.get("application_id"), referral_id=data.get("referral_id"),
            address=planned.address, locale=planned.locale, urgent=planned.urgent,
            attempts=0, expires_at=expires, created_at=now, subject=None, body="", params=params,
            sms_encoding=None, sms_segments=None,
        )
        try:
            rendered = self.renderer.render(planned.kind, planned.locale, planned.channel, values)
        except Exception as exc:  # a template bug must not lose the event silently
            self._write_made(session)       # the messages made before it come first
            if session.get(Message, mid) is not None:
                return
            log.error("notifications.render_failed", kind=planned.kind.value, locale=planned.locale, error=repr(exc))
            msg = Message(**row)
            session.add(msg)
            moves.queued(session, msg, now)
            moves.fail(session, msg, f"render failed: {exc!r}", now, SYSTEM)
            return
        row.update(subject=rendered.subject, body=rendered.body)
        if rendered.sms:
            row.update(sms_encoding=rendered.sms.encoding, sms_segments=rendered.sms.segments)
        made[mid] = _Made(row, now, planned.channel, planned.urgent, current_context())

    def _write_made(self, session: Session) -> None:
        """The messages made since the last write, in their order: those
        not there yet (a message id names one event's channel), each SMS
        released at its phone's next slot (quiet hours and daily limits, the
        earlier ones of the batch counted as taken), in one statement for
        the messages, one for their notification.queued.v1 and one for
        their audit rows, where each message had its own three, a read of
        its phone's slots and a flush."""
        made = session.info.get(_MADE)
        if not made:
            return
        items = list(made.values())
        made.clear()
        there = set(session.scalars(sa.select(Message.id).where(Message.id.in_([m.row["id"] for m in items]))))
        items = [m for m in items if m.row["id"] not in there]
        if not items:
            return
        sms = {m.row["address"] for m in items if m.channel is d.Channel.SMS}
        slots = moves.sms_slots_of(session, sms, min(m.now for m in items), self.limits) if sms else {}
        window = max(limit.window for limit in self.limits)
        ring = ring_of(session)
        rows, later = [], moves.Later()
        for m in items:
            taken = slots.get(m.row["address"], []) if m.channel is d.Channel.SMS else None
            release = d.schedule(m.channel, m.now, self.tz, urgent=m.urgent,
                                 sms_sent_at=[t for t in taken if t > m.now - window] if taken else (),
                                 limits=self.limits)
            if taken is not None:
                taken.append(release)       # the next SMS to this phone sees this slot taken
            row = {**m.row, "address_hash": ring.lookup("address", m.row["address"]),
                   "status": d.Status.QUEUED.value, "next_attempt_at": release}
            rows.append(row)
            msg = SimpleNamespace(**row)
            later.events.append(outbox.new("notification.queued.v1", msg.id, moves.queued_data(msg, release),
                                           trace=m.trace))
            moves.audited(session, SYSTEM, "notification.queued", msg, later=later, release_at=release.isoformat())
        session.execute(Message.__table__.insert(), rows)
        later.write(session)

    def _recipient(self, session: Session, event: Event) -> d.Recipient | None:
        data = event.data
        if event.type in ("registration.email_code_issued.v1", "account.activation_issued.v1",
                          "account.sign_in_failed.v1"):
            return d.Recipient(email=data["email"], locale=d.choose_locale(data.get("locale")))
        if event.type == "application.received.v1":
            return d.Recipient(parent_id=data["parent_id"], email=data.get("email"),
                               phone=self._phone(data.get("phone")), locale=d.choose_locale(data.get("locale")))
        # The application's own received event brings the contacts it was
        # filed with; until it has come (topics interleave freely) an account
        # activation may have made a contact with no phone, and telling the
        # parent from that would silently drop the SMS. So: park until then.
        app = session.get(KnownApplication, data["application_id"])
        if app is None:
            return None
        parent_id = data.get("parent_id") or app.parent_id
        self._write_received(session)   # a replay's news, in a run of received events: its contact written first
        contact = session.get(Contact, parent_id)      # read by `prepare` for the batch's events, mostly
        if contact is None:
            return None
        return d.Recipient(parent_id=parent_id, email=contact.email, phone=self._phone(contact.phone),
                           locale=contact.locale)

    @staticmethod
    def _phone(raw: str | None) -> str | None:
        if not raw:
            return None
        try:
            return d.normalize_phone(raw)
        except d.InvalidPhone:
            log.warning("notifications.phone_unusable")
            return None

    def _remember(self, session: Session, event: Event) -> None:
        data, now = event.data, self.clock()
        if event.type == "application.received.v1":
            contact = {"parent_id": data["parent_id"], "email": data.get("email"), "phone": data.get("phone"),
                       "locale": d.choose_locale(data.get("locale")), "updated_at": now}
            app = {"application_id": data["application_id"], "parent_id": data["parent_id"],
                   "imported": bool(data.get("imported"))}
            pending = session.info.get(_RECEIVED_ROWS)
            if pending is not None:
                pending[0].append(contact)      # written with the others of the run (`_write_received`)
                pending[1].append(app)
            else:
                upsert(session, Contact, contact, ["parent_id"])
                upsert(session, KnownApplication, app, ["application_id"], insert_only={"top_ten_told": False})
        elif event.type == "account.activation_issued.v1":
            upsert(session, Contact, {"parent_id": data["parent_id"], "email": data["email"],
                                       "locale": d.choose_locale(data.get("locale")), "updated_at": now},
                    ["parent_id"], insert_only={"phone": None})
        if event.type.startswith("referral.") and data.get("referral_id"):
            known = self._known_referral(session, data["referral_id"], lock=True)
            facts = dict(known.facts) if known else {}
            facts.update({k: data[k] for k in REFERRAL_FACTS if k in data})
            if event.type == "referral.privilege_confirmed.v1":
                facts["needs_confirmation"] = False  # the enrolment window follows
            if known is None:
                known = KnownReferral(referral_id=data["referral_id"], application_id=data["application_id"],
                                      facts=facts)
                session.add(known)
                if _REFERRALS in session.info:
                    session.info[_REFERRALS][known.referral_id] = known    # what its next event reads
            else:
                known.facts = facts

    @staticmethod
    def _known_referral(session: Session, referral_id: str, *, lock: bool = False) -> KnownReferral | None:
        """What is known of a referral: as `prepare` read it (locked) or the
        batch learnt it, else read now."""
        cached = session.info.get(_REFERRALS)
        if cached is not None and referral_id in cached:
            return cached[referral_id]
        return session.get(KnownReferral, referral_id, with_for_update=True if lock else None)

    def _referral_facts(self, session: Session, data: dict) -> dict:
        if not data.get("referral_id"):
            return {}
        known = self._known_referral(session, data["referral_id"])
        facts = dict(known.facts) if known else {}
        if "window" in data:
            # What this event is about decides the window, not what came before.
            facts.pop("needs_confirmation", None)
        return facts

    def _top_ten_news(self, session: Session, data: dict) -> bool:
        locked = data["application_id"] in self._prepared(session)[0]
        app = session.get(KnownApplication, data["application_id"], with_for_update=not locked)
        if app is None:
            return False
        previous = data.get("previous_position", app.last_position)
        if previous is None and app.imported:
            # The first position of a child moved from the old portal is the
            # one the parent already knew: telling every such parent at once
            # on the day of the move would be a flood, not news.
            previous = app.last_position if app.last_position is not None else data["position"]
        news = d.reached_top_ten(previous, data["position"], app.top_ten_told)
        app.last_position = data["position"]
        app.top_ten_told = app.top_ten_told or news
        return news

    def _write_received(self, session: Session) -> None:
        """The contacts and applications of the received events handled
        since the last write, in one execution each (in their order); then
        the rows of those new applications that have parked events, read in
        one statement, and their parked events replayed, in the run's order.
        Nothing between a run's received events reads what they write (the
        run ends before the next other event), so each replay waiting until
        then tells what it told right after its own received event, but the
        run costs three statements, not three for each such application (an
        import's every child has its first positions parked)."""
        pending = session.info.get(_RECEIVED_ROWS)
        if pending and pending[0]:
            contacts, apps = pending
            upsert(session, Contact, list(contacts), ["parent_id"])
            upsert(session, KnownApplication, list(apps), ["application_id"], insert_only={"top_ten_told": False})
            contacts.clear()
            apps.clear()
        due = session.info.get(_REPLAY_DUE)
        if due:
            ids = list(due)
            due.clear()
            session.info[_PREPARED_ROWS].extend(session.scalars(
                sa.select(KnownApplication).where(KnownApplication.application_id.in_(ids))
                .execution_options(populate_existing=True)))
            for aid in ids:
                self._replay_parked(session, aid)

    def _known_now(self, session: Session, data: dict) -> None:
        """After a received event's rows are written (and locked): what the
        batch's `prepare` read is told that its application and its parent's
        contact are there, so that its replayed and later events read nothing
        again. Its row is read once, fresh (the upsert rewrote it), when an
        event of the batch will need it: at once if it was known before, and
        with the run's others (`_write_received`) if it is new here and has
        parked events to replay."""
        prepared = session.info.get(_PREPARED)
        if prepared is None:
            return                  # not in a prepared batch
        aid = data["application_id"]
        awaited, known_before = session.info.get(_AWAITED, (set(), set()))
        awaited.discard(aid)
        found, contacts, _ = prepared
        found.add(aid)
        contacts.add(data["parent_id"])
        if aid in known_before:
            self._write_received(session)
            session.info[_PREPARED_ROWS].append(session.get(KnownApplication, aid, populate_existing=True))
        elif session.info.get(_PARKED, {}).get(aid):
            # New here, with parked events: read and replayed with the run's others (`_write_received`).
            session.info[_REPLAY_DUE][aid] = None

    def _replay_parked(self, session: Session, application_id: str) -> None:
        parked = session.info.get(_PARKED)
        if parked is not None:
            events = parked.pop(application_id, [])     # taken off by the batch's prepare, or parked since
        else:
            events = [Event.from_json(p) for p in take_rows(
                session, ParkedEvent.event_id, ParkedEvent.payload, ParkedEvent.application_id == application_id,
                ParkedEvent.parked_at)]
        for event in events:
            self._notify(session, event)
