"""The message templates: every kind in every language on every channel of
its rule, in the parent's language, with SMS kept to two UCS-2 segments."""
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from kezek.events import schema_for
from services.notifications.domain import LOCALES, RULES, Channel, Kind
from services.notifications.rendering import TEMPLATES, Renderer, template_values

TZ = ZoneInfo("Asia/Bishkek")
NOW = datetime(2027, 3, 1, 4, tzinfo=UTC)
CASES = [(rule.kind, locale, channel) for rule in RULES.values() for locale in LOCALES for channel in rule.channels]

# Realistic worst cases: a long kindergarten name and office address.
LONG = {
    "referral_id": "r1", "application_id": "a1", "kindergarten_id": "k1",
    "kindergarten_name": "№112 «Балапан»", "kindergarten_address": "Бишкек, ул. Токтогула, 125",
    "office_address": "ул. А. Мамбетова, 1", "deadline": "2027-03-08T18:00:00Z", "needs_confirmation": True,
    "stoplist_until": "2027-03-18T04:00:00Z", "position": 7, "code": "482913",
    "expires_at": "2027-03-01T04:10:00Z", "activation_url": "https://kezek.kg/activate/abc",
    "child_name": "Айбек", "reason": "справка просрочена", "working_days_left": 2,
    "decision": "approved", "benefit_type": "partial", "decision_number": 1234, "failures": 12,
}
SAMPLE = {"referral_id": "r1", "application_id": "a1", "parent_id": "p1", "kindergarten_id": "k-17",
          "deadline": "2027-03-08T18:00:00Z", "position": 3, "code": "482913", "email": "a@example.kg",
          "expires_at": "2027-03-01T04:10:00Z", "activation_url": "https://kezek.kg/activate/abc",
          "locale": "ru", "decision": "rejected", "decision_number": 7,
          "decided_at": "2027-03-01T04:00:00Z", "failures": 3, "at": "2027-03-01T04:00:00Z",
          "aged_out_at": "2027-03-01T18:00:00Z", "school_age_years": 7}
KIND_EVENT = {rule.kind: event_type for event_type, rule in RULES.items()}


def minimal(kind):
    """Only the fields the event's schema requires (for a choice of fields,
    the one in clear: sealed fields are opened before rendering)."""
    schema = schema_for(KIND_EVENT[kind])
    fields = list(schema["required"])
    for choice in schema.get("anyOf", []):
        fields += next((b["required"] for b in choice.get("anyOf", [choice]) if "sealed" not in b["required"]), [])
    return {f: SAMPLE[f] for f in fields}
RULES_BY_KIND = {rule.kind: rule for rule in RULES.values()}


@pytest.fixture(scope="module")
def renderer():
    return Renderer(TZ)


def values(data):
    return template_values(data, occurred_at=NOW, tz=TZ, cabinet_url="https://kezek.kg/cabinet")


def test_there_is_one_template_per_kind_and_language():
    assert {(p.parent.name, p.stem) for p in TEMPLATES.glob("*/*.j2") if not p.parent.name.startswith("_")} == {
        (k.value, loc) for k in Kind for loc in LOCALES}


@pytest.mark.parametrize("kind, locale, channel", CASES)
@pytest.mark.parametrize("full", [True, False], ids=["long", "required_only"])
def test_every_message_renders_on_each_channel_of_its_rule(renderer, kind, locale, channel, full):
    out = renderer.render(kind, locale, channel, values(LONG if full else minimal(kind)))
    assert out.body and "{{" not in out.body and "None" not in out.body and ".." not in out.body
    if channel is not Channel.SMS:
        assert out.subject and "\n" not in out.subject


def _letters(text):
    return set(text.lower())


@pytest.mark.parametrize("kind", list(Kind))
def test_each_language_has_its_own_text_in_its_own_alphabet(renderer, kind):
    texts = {}
    for locale in LOCALES:
        parts = []
        for channel in RULES_BY_KIND[kind].channels:
            out = renderer.render(kind, locale, channel, values(minimal(kind)))
            parts += [out.subject or "", out.body]
        texts[locale] = " ".join(parts)
    assert len(set(texts.values())) == len(LOCALES)
    cyrillic = set("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")
    assert not _letters(texts["en"]) & cyrillic
    assert _letters(texts["ru"]) & cyrillic and not _letters(texts["ru"]) & set("әғқңөұүһі")
    assert _letters(texts["ky"]) & set("ңөү") and not _letters(texts["ky"]) & set("әғқұһі")
    assert _letters(texts["kk"]) & set("әғқұһі")


@pytest.mark.parametrize("kind, locale", [(k, loc) for k, loc, ch in CASES if ch is Channel.SMS])
def test_sms_fits_two_ucs2_segments_even_with_long_names(renderer, kind, locale):
    out = renderer.render(kind, locale, Channel.SMS, values(LONG))
    assert out.sms.segments <= 2, (out.sms, out.body)


def test_english_sms_with_latin_names_travels_as_one_gsm7_segment(renderer):
    data = {**LONG, "kindergarten_name": "Sun", "office_address": "1 Mambetov St", "needs_confirmation": False}
    out = renderer.render(Kind.REFERRAL_ISSUED, "en", Channel.SMS, values(data))
    assert (out.sms.encoding, out.sms.segments) == ("GSM-7", 1)


def test_deadline_is_shown_as_the_last_local_day_in_the_parents_language(renderer):
    # 2027-03-08T18:00Z is 24:00 local on 8 March: the last day is 8 March.
    data = {**LONG, "deadline": "2027-03-08T18:00:00Z", "needs_confirmation": False}
    ru = renderer.render(Kind.REFERRAL_ISSUED, "ru", Channel.SMS, values(data)).body
    ky = renderer.render(Kind.REFERRAL_ISSUED, "ky", Channel.SMS, values(data)).body
    kk = renderer.render(Kind.REFERRAL_ISSUED, "kk", Channel.EMAIL, values(data)).body
    en = renderer.render(Kind.REFERRAL_ISSUED, "en", Channel.INAPP, values(data)).body
    assert "8 марта" in ru and "8-март" in ky and "8 наурыз" in kk and "March 8, 2027" in en


def test_confirmation_referral_sms_names_the_office_and_asks_for_the_certificate(renderer):
    ru = renderer.render(Kind.REFERRAL_ISSUED, "ru", Channel.SMS, values(LONG)).body
    assert "ул. А. Мамбетова, 1" in ru and "справк" in ru and "льгот" in ru


def test_email_code_carries_the_code_and_its_lifetime(renderer):
    out = renderer.render(Kind.EMAIL_CODE, "ky", Channel.EMAIL, values(LONG))
    assert "482913" in out.subject and "482913" in out.body and "10 мүнөт" in out.body


def test_activation_mail_sends_a_link_never_a_password(renderer):
    out = renderer.render(Kind.ACCOUNT_ACTIVATION, "ru", Channel.EMAIL, values(LONG))
    assert "https://kezek.kg/activate/abc" in out.body and "Ваш пароль:" not in out.body


@pytest.mark.parametrize("n, word", [(1, "рабочий день"), (2, "рабочих дня"), (5, "рабочих дней")])
def test_russian_day_counts_take_the_right_plural(renderer, n, word):
    out = renderer.render(Kind.DEADLINE_NEAR, "ru", Channel.INAPP, values({**LONG, "working_days_left": n}))
    assert f"{n} {word}" in out.body


def test_deadline_warning_follows_the_window_not_the_original_referral(renderer):
    after_confirmation = {**LONG, "needs_confirmation": True, "window": "enrolment"}
    out = renderer.render(Kind.DEADLINE_NEAR, "ru", Channel.SMS, values(after_confirmation)).body
    assert "Сдайте документы" in out and "льгот" not in out


def test_a_renderer_keeps_the_templates_it_read_until_the_process_restarts(tmp_path):
    """The templates ship with the code: a message is never rendered from a
    file half-written under a running service, and no template load asks
    the file system whether it changed."""
    (tmp_path / "referral_issued").mkdir()
    template = tmp_path / "referral_issued" / "en.j2"
    template.write_text("{% block sms %}first{% endblock %}")
    renderer = Renderer(ZoneInfo("Asia/Bishkek"), directory=tmp_path)
    assert renderer.block(Kind.REFERRAL_ISSUED, "en", "sms", {}) == "first"
    template.write_text("{% block sms %}second, edited{% endblock %}")
    assert renderer.block(Kind.REFERRAL_ISSUED, "en", "sms", {}) == "first"
