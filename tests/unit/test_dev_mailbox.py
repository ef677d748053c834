"""The development mailbox: what the notifications service sends through
its real SMTP and SMS transports reaches the development SMTP server and SMS
gateway, and one page shows every e-mail and SMS, newest first, with the
activation link clickable and the e-mail code in bold, in the reader's
language; `kezek run` points e-mail and SMS at it and prints its address;
production never runs it."""
from __future__ import annotations

import re
import httpx
import pytest

from kezek import supervisor as sup
from kezek.settings import Settings
from services.notifications import mailbox as mb
from services.notifications.channels import HttpSms, SmtpEmail
from services.notifications.devservers import DevSmsGateway, DevSmtpServer
from services.notifications.domain import Channel
from services.notifications.service import Outgoing


def outgoing(channel: str, address: str, body: str, subject: str | None = None, locale: str = "ky") -> Outgoing:
    return Outgoing(id=f"m-{channel}-{len(body)}", channel=Channel(channel), address=address, locale=locale,
                    subject=subject, body=body, urgent=False, expires_at=None, attempts=0)


@pytest.fixture
def servers(tmp_path):
    box = mb.Mailbox(tmp_path / "mailbox" / "messages.jsonl")
    smtp = DevSmtpServer(mailbox=box).start()
    sms = DevSmsGateway(mailbox=box, receipts=False).start()
    yield box, smtp, sms
    sms.stop()
    smtp.stop()


def page(sms: DevSmsGateway, **params) -> httpx.Response:
    return httpx.get(f"http://{sms.host}:{sms.port}/", params=params)


def test_every_email_and_sms_is_on_the_page_newest_first_with_links_and_codes(servers):
    box, smtp, sms = servers
    email = SmtpEmail(smtp.host, smtp.port, "Kezek <noreply@kezek.kg>")
    assert email.send(outgoing("email", "parent@example.kg", "Код: 482913. Ал 10 мүнөт жарактуу.",
                               subject="Электрондук почтаны ырастоо коду")).outcome.value == "sent"
    assert email.send(outgoing("email", "parent@example.kg", "Сырсөз коюу: https://kezek.example.kg/activate?"
                               "token=abc_DEF-123 (3 күн).", subject="Жеке кабинет")).outcome.value == "sent"
    text = HttpSms(sms.url).send(outgoing("sms", "+996555123456", "Kezek: Айбекке жолдомо берилди."))
    assert text.outcome.value == "sent"
    r = page(sms, lang="ky")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<html lang="ky">' in html and "Иштеп чыгуунун почта кутусу" in html
    order = [m.start() for m in (re.search("Kezek: Айбекке", html), re.search("Жеке кабинет", html),
                                  re.search("Электрондук почтаны ырастоо", html))]
    assert order == sorted(order), "newest first"
    assert '<a href="https://kezek.example.kg/activate?token=abc_DEF-123">' in html
    assert "<strong class='code'>482913</strong>" in html
    assert "+996555123456" in html and "parent@example.kg" in html
    assert len(box.letters()) == 3 and [m.channel for m in box.letters()] == ["sms", "email", "email"]


@pytest.mark.parametrize("lang,title", [("ru", "Почтовый ящик разработки"), ("kk", "Әзірлеудің пошта жәшігі"),
                                        ("en", "Development mailbox")])
def test_the_page_speaks_the_readers_language_and_filters_by_channel(servers, lang, title):
    box, _smtp, sms = servers
    box.add("email", "a@example.kg", "one", subject="Letter")
    box.add("sms", "+77011234567", "two")
    r = page(sms, lang=lang, channel="sms")
    assert f'<html lang="{lang}">' in r.text and title in r.text
    assert "two" in r.text and "Letter" not in r.text
    assert httpx.get(f"http://{sms.host}:{sms.port}/", headers={"accept-language": f"{lang};q=1"}).text.count(title)


def test_the_mailbox_keeps_its_letters_across_a_restart(tmp_path):
    path = tmp_path / "messages.jsonl"
    mb.Mailbox(path).add("sms", "+996700000001", "first")
    assert [m.body for m in mb.Mailbox(path).letters()] == ["first"]


def test_kezek_run_sends_email_and_sms_to_the_mailbox_and_prints_it(tmp_path, monkeypatch, capsys):
    for key in ("KEZEK_SMS_GATEWAY_URL", "KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings(_env_file=None, state_dir=tmp_path, mailbox_port=18005)
    run = sup.Supervisor(settings, postgres=False)
    assert run.env["KEZEK_SMS_GATEWAY_URL"] == "http://127.0.0.1:18005/send"
    assert run.env["KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT"] == "smtp"
    assert ["mailbox"] in [p.args for p in run.plan()]
    run.print_urls()
    assert re.search(r"^\s+Mailbox\s+http://127.0.0.1:18005/$", capsys.readouterr().out, re.M)


def test_production_never_runs_the_mailbox(monkeypatch, tmp_path):
    monkeypatch.setenv("KEZEK_ENV", "production")
    for key, value in dict(KEZEK_SECRET_KEY="s" * 40, KEZEK_PSEUDONYM_KEY="p" * 40,
                           KEZEK_DATABASE_URL="postgresql+psycopg://kezek_{service}@db:5432/kezek_{service}",
                           KEZEK_PUBLIC_URL="https://kezek.example", KEZEK_SERVICE_KEYS_DIR=str(tmp_path),
                           KEZEK_STATE_DIR=str(tmp_path)).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit, match="development only"):
        mb.main([])
    assert not (tmp_path / "mailbox").exists()
    production = Settings(_env_file=None, env="production", secret_key="s" * 40, pseudonym_key="p" * 40,
                          database_url="postgresql+psycopg://kezek_{service}@db:5432/kezek_{service}",
                          public_url="https://kezek.example", service_keys_dir=str(tmp_path), state_dir=tmp_path)
    assert ["mailbox"] not in [p.args for p in sup.Supervisor(production, postgres=False).plan()]
