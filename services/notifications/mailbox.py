"""The development mailbox (`kezek mailbox`, started by `kezek run`): the
SMTP server and the SMS gateway that development sends to (devservers.py),
with a page that shows every e-mail and SMS they received, newest first,
links clickable — the activation link and the e-mail code are a click away
instead of inside a log. Never in production: the command refuses to start
there, and production sends over a real SMTP relay and SMS provider
(runtime.build_transports).

Messages are kept as JSON Lines in `<state>/mailbox/messages.jsonl`, so the
page survives a restart of the mailbox and shows what came before."""
from __future__ import annotations

import argparse
import html
import json
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from kezek.i18n import negotiate

KEEP = 500           # the page shows the newest; the file is cut back to them now and then
LANGUAGES = ("ky", "ru", "kk", "en")

# The page's few words, in the four languages of the portal.
TEXTS = {
    "title": {"en": "Development mailbox", "ru": "Почтовый ящик разработки", "ky": "Иштеп чыгуунун почта кутусу",
              "kk": "Әзірлеудің пошта жәшігі"},
    "lead": {"en": "Every e-mail and SMS that Kezek sent in development, newest first. Production never shows this "
                   "page: there, messages go to the real mail server and SMS provider.",
             "ru": "Все письма и SMS, которые Kezek отправил в режиме разработки, новые сверху. В рабочей системе этой "
                   "страницы нет: там сообщения уходят на настоящий почтовый сервер и SMS-провайдеру.",
             "ky": "Kezek иштеп чыгуу режиминде жөнөткөн бардык каттар жана SMS, жаңылары үстүндө. Иштеп турган "
                   "системада бул барак жок: ал жерде билдирүүлөр чыныгы почта серверине жана SMS провайдерине кетет.",
             "kk": "Kezek әзірлеу режимінде жіберген барлық хаттар мен SMS, жаңалары жоғарыда. Жұмыс жүйесінде бұл бет "
                   "жоқ: онда хабарламалар нақты пошта серверіне және SMS провайдеріне кетеді."},
    "email": {"en": "E-mail", "ru": "Письмо", "ky": "Кат", "kk": "Хат"},
    "sms": {"en": "SMS", "ru": "SMS", "ky": "SMS", "kk": "SMS"},
    "to": {"en": "To", "ru": "Кому", "ky": "Кимге", "kk": "Кімге"},
    "at": {"en": "Received", "ru": "Получено", "ky": "Алынды", "kk": "Алынды"},
    "none": {"en": "Nothing yet. Apply on the portal and press \"Get code\": the letter appears here.",
             "ru": "Пока пусто. Подайте заявление на портале и нажмите «Получить код»: письмо появится здесь.",
             "ky": "Азырынча бош. Порталда арыз берип, «Код алуу» баскычын басыңыз: кат ушул жерде пайда болот.",
             "kk": "Әзірге бос. Порталда өтініш беріп, «Код алу» батырмасын басыңыз: хат осы жерде пайда болады."},
    "all": {"en": "All", "ru": "Все", "ky": "Баары", "kk": "Барлығы"},
    "refresh": {"en": "Refresh", "ru": "Обновить", "ky": "Жаңылоо", "kk": "Жаңарту"},
    "count": {"en": "messages", "ru": "сообщений", "ky": "билдирүү", "kk": "хабарлама"},
}
LANGUAGE_NAMES = {"ky": "Кыргызча", "ru": "Русский", "kk": "Қазақша", "en": "English"}


@dataclass(frozen=True)
class Letter:
    id: str
    at: float
    channel: str          # email | sms
    to: str
    subject: str
    body: str
    locale: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


class Mailbox:
    """What the development SMTP server and SMS gateway received, on disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, channel: str, to: str, body: str, subject: str = "", locale: str = "") -> Letter:
        letter = Letter(str(uuid.uuid4()), time.time(), channel, to, subject, body, locale)
        line = json.dumps(letter.as_dict(), ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)
        return letter

    def letters(self, limit: int = KEEP, channel: str | None = None) -> list[Letter]:
        """Newest first."""
        with self._lock:
            lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
            if len(lines) > 2 * KEEP:
                lines = lines[-KEEP:]
                self.path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        out = []
        for line in reversed(lines):
            try:
                letter = Letter(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if channel is None or letter.channel == channel:
                out.append(letter)
            if len(out) >= limit:
                break
        return out


# ------------------------------------------------------------------ the page

_URL = re.compile(r"https?://[^\s<>\"']+")
_CODE = re.compile(r"(?<![\d/=?&.-])(\d{6})(?![\d/])")


def linked(text: str) -> str:
    """The text, escaped, with its links clickable and six-digit codes bold."""
    out, last = [], 0
    for m in _URL.finditer(text):
        out.append(_CODE.sub(r"<strong class='code'>\1</strong>", html.escape(text[last:m.start()])))
        url = m.group(0).rstrip(".,;)")
        out.append(f'<a href="{html.escape(url)}">{html.escape(url)}</a>')
        out.append(html.escape(m.group(0)[len(url):]))
        last = m.end()
    out.append(_CODE.sub(r"<strong class='code'>\1</strong>", html.escape(text[last:])))
    return "".join(out)


def pick_language(query: dict, accept: str) -> str:
    return negotiate(LANGUAGES, (query.get("lang") or [""])[0], accept=accept, default="ru")


def page(mailbox: Mailbox, lang: str, channel: str | None = None) -> str:
    t = {k: v[lang] for k, v in TEXTS.items()}
    letters = mailbox.letters(channel=channel)
    rows = []
    for letter in letters:
        when = time.strftime("%d.%m.%Y %H:%M:%S", time.localtime(letter.at))
        kind = t["email"] if letter.channel == "email" else t["sms"]
        subject = f"<h2>{html.escape(letter.subject)}</h2>" if letter.subject else ""
        locale = html.escape(letter.locale or lang)
        rows.append(
            f'<article class="letter {letter.channel}" id="m-{letter.id}" data-channel="{letter.channel}">'
            f'<p class="meta"><span class="kind">{kind}</span> · {t["to"]}: <strong>{html.escape(letter.to)}'
            f'</strong> · {t["at"]}: <time>{when}</time> · <code>{locale}</code></p>'
            f'<div lang="{locale}">{subject}<pre>{linked(letter.body)}</pre></div></article>')
    keep = f"&channel={channel}" if channel else ""
    langs = " ".join(f'<a href="?lang={code}{keep}" lang="{code}"{" aria-current=true" if code == lang else ""}>'
                     f"{name}</a>" for code, name in LANGUAGE_NAMES.items())
    tabs = " · ".join(f'<a href="?lang={lang}{f"&channel={c}" if c else ""}"{" aria-current=true" if c == channel else ""}>'
                      f"{label}</a>" for c, label in ((None, t["all"]), ("email", t["email"]), ("sms", t["sms"])))
    body = "".join(rows) or f'<p class="empty">{t["none"]}</p>'
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t["title"]} · Kezek</title>
<style>
body {{ margin: 0; font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1b1b1b; background: #f4f6f9; line-height: 1.5; }}
header {{ background: #5a3d8a; color: #fff; padding: .6rem 1rem; display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; }}
header a {{ color: #fff; }} header .langs {{ margin-left: auto; }} a[aria-current] {{ font-weight: bold; }}
main {{ max-width: 60rem; margin: 0 auto; padding: 1rem; }}
.letter {{ background: #fff; border: 1px solid #c9cfd8; border-left: 6px solid #0b4f9c; border-radius: 6px; padding: .5rem 1rem; margin: 0 0 1rem; }}
.letter.sms {{ border-left-color: #0a6b2f; }} .letter h2 {{ font-size: 1.1rem; margin: .2rem 0; }}
.meta {{ color: #4a4a4a; margin: 0; font-size: .92rem; }} .kind {{ font-weight: bold; text-transform: uppercase; }}
pre {{ white-space: pre-wrap; word-break: break-word; font-family: inherit; margin: .4rem 0; }}
.code {{ background: #fff3b0; padding: 0 .3rem; font-size: 1.15rem; letter-spacing: .1rem; }}
</style></head>
<body><header><strong>Kezek · {t["title"]}</strong><nav>{tabs}</nav><nav class="langs">{langs}</nav></header>
<main><p>{t["lead"]}</p><p><a href="?lang={lang}{keep}">{t["refresh"]}</a> · {len(letters)} {t["count"]}</p>{body}</main>
</body></html>"""


# ------------------------------------------------------------------ the command

def main(argv: list[str]) -> int:
    from kezek.settings import Settings
    from services.notifications import signature
    from services.notifications.devservers import DevSmsGateway, DevSmtpServer

    p = argparse.ArgumentParser(prog="kezek mailbox", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.parse_args(argv)
    settings = Settings()
    if not allowed(settings):
        raise SystemExit("kezek mailbox is for development only: production sends over SMTP and an SMS provider")
    mailbox = Mailbox(settings.state_dir / "mailbox" / "messages.jsonl")
    smtp = DevSmtpServer(settings.smtp_host, settings.smtp_port, mailbox=mailbox).start()
    secret = signature.development_secret(settings.secret_key.get_secret_value())
    sms = DevSmsGateway(settings.host, settings.mailbox_port, receipt_secret=secret, mailbox=mailbox).start()
    print(f"[mailbox] page and SMS gateway on http://{settings.host}:{sms.port}/, SMTP on "
          f"{settings.smtp_host}:{smtp.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sms.stop()
    smtp.stop()
    return 0


def allowed(settings) -> bool:
    """The mailbox shows every code and link it receives: development and tests only."""
    return settings.env != "production"


def query_of(path: str) -> tuple[str, dict]:
    parsed = urlparse(path)
    return parsed.path, parse_qs(parsed.query)
