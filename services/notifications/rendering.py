"""Message texts from templates: one file per kind and language
(templates/<kind>/<locale>.j2), with a block per channel: `sms`, `subject`,
`email`, `inapp`. Dates are formatted by Babel in the parent's language and
local time zone."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime, format_skeleton

from kezek.i18n import CompiledTemplates
from services.notifications.domain import Channel, Kind, SmsSize, sms_size, sms_text
from workflows.rules import last_day

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str
    sms: SmsSize | None = None


def _local(value: datetime | date, ctx) -> datetime | date:
    if isinstance(value, datetime):
        return value.astimezone(ctx["tz"])
    return value


@jinja2.pass_context
def _day(ctx, value) -> str:
    """Day and month, as short as the language allows: SMS and subjects."""
    v = _local(value, ctx)
    return format_skeleton("MMMMd", v if isinstance(v, datetime) else datetime.combine(v, datetime.min.time()),
                           locale=ctx["locale"])


# CLDR's long Russian date ends in "г." and a sentence ending in it gets two
# dots; parents' letters write "8 марта 2027" anyway.
_LONG_DATE = {"ru": "d MMMM y"}


@jinja2.pass_context
def _date(ctx, value) -> str:
    return format_date(_local(value, ctx), _LONG_DATE.get(ctx["locale"], "long"), locale=ctx["locale"])


@jinja2.pass_context
def _datetime(ctx, value) -> str:
    v = _local(value, ctx)
    day = format_date(v, _LONG_DATE.get(ctx["locale"], "long"), locale=ctx["locale"])
    return f"{day}, {format_datetime(v, 'HH:mm', locale=ctx['locale'])}"


@jinja2.pass_context
def _plural(ctx, n: int, **forms: str) -> str:
    """`{{ n|plural(one=..., few=..., many=..., other=...) }}` by the CLDR
    plural rules of the language (Russian has three forms, English two)."""
    form = Locale.parse(ctx["locale"]).plural_form(n)
    return f"{n} {forms.get(form) or forms.get('other') or forms.get('many')}"


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def template_values(data: dict[str, Any], *, occurred_at: datetime, tz: tzinfo, cabinet_url: str) -> dict[str, Any]:
    """Every name a template may use, from the event's data (merged with what
    is known of its referral); optional ones are None, so StrictUndefined
    still catches a misspelt name."""
    deadline = _when(data.get("deadline"))
    expires_at = _when(data.get("expires_at"))
    return {
        "cabinet_url": cabinet_url,
        "child_name": data.get("child_name"),
        "queue_date": _when(data.get("queue_date")) or occurred_at,
        "kindergarten": data.get("kindergarten_name") or data.get("kindergarten_id"),
        "address": data.get("kindergarten_address"),
        "office": data.get("office_address"),
        "needs_confirmation": (data["window"] == "confirmation") if data.get("window")
        else bool(data.get("needs_confirmation")),
        "deadline": deadline,
        "last": last_day(deadline.astimezone(tz)) if deadline else None,
        "days_left": data.get("working_days_left", 2),
        "reason": data.get("reason"),
        "until": _when(data.get("stoplist_until")),
        "position": data.get("position"),
        "code": data.get("code"),
        "minutes": max(1, round((expires_at - occurred_at).total_seconds() / 60)) if expires_at else None,
        "expires_at": expires_at,
        "activation_url": data.get("activation_url"),
        "decision": data.get("decision"),
        "benefit_type": data.get("benefit_type"),
        "decision_number": data.get("decision_number"),
        "failures": data.get("failures"),
        # The child reached school age and left the queue (application.aged_out,
        # or a referral that ended after that birthday).
        "aged_out": bool(data.get("aged_out")),
        "school_age": data.get("school_age_years"),
    }


# What an in-app message keeps to be rendered again (the template values'
# inputs, never a code or a link: those go by e-mail only).
_NOT_KEPT = ("code", "activation_url", "sealed", "email", "phone")


def stored_params(data: dict[str, Any], occurred_at: datetime) -> str:
    """The inputs of `template_values`, as JSON, for `render_again`."""
    kept = {k: v for k, v in data.items() if k not in _NOT_KEPT}
    return json.dumps({"data": kept, "occurred_at": occurred_at.isoformat()}, default=str, ensure_ascii=False)


_COMPILED = CompiledTemplates()   # every renderer's templates, compiled once a process


class Renderer:
    def __init__(self, tz: tzinfo, directory: Path = TEMPLATES):
        self.tz = tz
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty gap in an SMS
            autoescape=False,                  # plain text only
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
            bytecode_cache=_COMPILED,
            # The templates ship with the code and change with a restart. With
            # auto_reload every load of a template (several a message) asked
            # the file system for its time: py-spy found the consumer's thread
            # there in 3 of 8 dumps of a distribution day, each a wait for the
            # GIL again behind the dispatcher's threads.
            auto_reload=False,
        )
        self.env.filters.update(day=_day, date=_date, datetime=_datetime, plural=_plural)

    def has(self, kind: Kind, locale: str, block: str) -> bool:
        return block in self.env.get_template(f"{kind.value}/{locale}.j2").blocks

    def block(self, kind: Kind, locale: str, block: str, values: dict[str, Any]) -> str:
        template = self.env.get_template(f"{kind.value}/{locale}.j2")
        ctx = template.new_context({**values, "locale": locale, "tz": self.tz})
        return "".join(template.blocks[block](ctx)).strip()

    def render_again(self, kind: Kind, locale: str, params: str, cabinet_url: str) -> Rendered:
        """An in-app message in another language, from its stored parameters."""
        stored = json.loads(params)
        values = template_values(stored["data"], occurred_at=datetime.fromisoformat(stored["occurred_at"]),
                                 tz=self.tz, cabinet_url=cabinet_url)
        return self.render(kind, locale, Channel.INAPP, values)

    def render(self, kind: Kind, locale: str, channel: Channel, values: dict[str, Any]) -> Rendered:
        if channel is Channel.SMS:
            text = sms_text(self.block(kind, locale, "sms", values))
            return Rendered(None, text, sms_size(text))
        subject = " ".join(self.block(kind, locale, "subject", values).split())
        body = self.block(kind, locale, "email" if channel is Channel.EMAIL else "inapp", values)
        return Rendered(subject, body)
