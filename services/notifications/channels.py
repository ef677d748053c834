"""Transports behind one interface: `send(outgoing) -> Attempt`. A transport
never raises for a failed send; it says whether trying again can help.

Every send carries the message id as its idempotency key (SMTP Message-ID,
the SMS gateway's Idempotency-Key), so a send repeated after a crash between
the provider's answer and our record of it is dropped by the SMS gateway and
shows as one message in a mail reader. A mail server has no such key: the
dispatcher writes the acceptance the moment it comes (`note_accepted`), and
the SMTP transport answers it before it says goodbye to the server, so that
gap is one short database statement.
"""
from __future__ import annotations

import base64
import re
import smtplib
import sys
import threading
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol, TextIO

import httpx

from services.notifications.domain import Channel, Outcome
from services.notifications.service import Attempt, Outgoing


class Transport(Protocol):
    channel: Channel

    def send(self, msg: Outgoing) -> Attempt: ...

    def close(self) -> None: ...


def smtp_message_id(msg: Outgoing) -> str:
    return f"<{msg.id}@notifications.kezek>"


# An address written as it is in a header and an envelope: ASCII, no
# display name, nothing a header could be split at. Any other goes through
# the email package (SMTPUTF8, quoting).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
# The longest line SMTP carries (RFC 5321), less its CRLF.
_LONGEST_LINE = 998
_CRLF = "\r\n"


class SmtpEmail:
    channel = Channel.EMAIL

    def __init__(self, host: str, port: int, sender: str, *, timeout: float = 10, starttls: bool = False,
                 username: str | None = None, password: str | None = None):
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.starttls, self.username, self.password = starttls, username, password
        self._smtp: smtplib.SMTP | None = None
        self._envelope_from = parseaddr(sender)[1]
        # written once, by the email package (a name not in ASCII as RFC 2047 words)
        self._from_line = policy.SMTP.header_factory("From", sender).fold(policy=policy.SMTP).encode("ascii")

    def compose(self, msg: Outgoing) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = msg.address
        email["Subject"] = msg.subject or ""
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = smtp_message_id(msg)
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        email.set_content(msg.body)
        email["Content-Language"] = msg.locale  # after set_content, which drops Content-* headers
        return email

    def message_bytes(self, msg: Outgoing) -> bytes | None:
        """What `compose` makes, written out as SMTP carries it, for a plain
        address (None for any other: `compose` then). The email package
        took 1.6 ms of CPU a message to build and write one (its header
        registry and folding), this 0.1 ms; the parts are the same: a
        Subject in RFC 2047 words when it is not ASCII, the text as UTF-8,
        base64 when it is not ASCII or has a line too long for SMTP."""
        if not (msg.address and _PLAIN_ADDRESS.fullmatch(msg.address) and self._envelope_from.isascii()):
            return None
        subject = " ".join((msg.subject or "").splitlines())
        lines = msg.body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":
            lines.pop()                 # the text ends with one line end, as set_content writes it
        if msg.body.isascii() and all(len(line) <= _LONGEST_LINE for line in lines):
            cte, body = "7bit", _CRLF.join(lines) + _CRLF
        else:
            text = "\n".join(lines) + "\n"
            cte, body = "base64", base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", _CRLF)
        head = _CRLF.join((
            f"To: {msg.address}",
            f"Subject: {Header(subject, 'us-ascii' if subject.isascii() else 'utf-8').encode(linesep=_CRLF)}",
            f"Date: {formatdate(usegmt=True)}",
            f"Message-ID: {smtp_message_id(msg)}",
            "Auto-Submitted: auto-generated",   # RFC 3834: no vacation replies
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"',
            f"Content-Transfer-Encoding: {cte}",
            f"Content-Language: {msg.locale}",
        ))
        return self._from_line + f"{head}{_CRLF}{_CRLF}{body}".encode("ascii")

    def send(self, msg: Outgoing) -> Attempt:
        """One message over a connection kept open from one send to the next
        (this transport is used by one thread): no connect, greeting and
        QUIT per message, and nothing left to do with the server between its
        acceptance and the caller's record of it."""
        try:
            data = self.message_bytes(msg)
            if data is None:
                self._connection().send_message(self.compose(msg))
            else:
                self._transact(msg.address, data)
        except smtplib.SMTPRecipientsRefused as exc:   # the transaction has been reset
            code, text = next(iter(exc.recipients.values()))
            return Attempt(Outcome.PERMANENT if code >= 500 else Outcome.TRANSIENT, error=f"smtp {code} {text!r}")
        except smtplib.SMTPResponseException as exc:
            outcome = Outcome.PERMANENT if exc.smtp_code >= 500 else Outcome.TRANSIENT
            return Attempt(outcome, error=f"smtp {exc.smtp_code} {exc.smtp_error!r}")
        except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, dropped
            self._drop()
            return Attempt(Outcome.TRANSIENT, error=f"smtp {exc!r}")
        return Attempt(Outcome.SENT, provider_ref=smtp_message_id(msg))

    def _transact(self, to: str, data: bytes) -> None:
        """MAIL, RCPT and DATA, as smtplib's sendmail. A kept connection is
        not asked first whether it is still there (a NOOP, a round trip per
        message): if the server has closed it, or answers that it is closing
        it (421), its MAIL fails, which the server has taken nothing for, and
        the message goes on a new one."""
        smtp = self._smtp
        if smtp is not None:
            try:
                code, resp = smtp.mail(self._envelope_from)
            except (OSError, smtplib.SMTPServerDisconnected):
                code = 421
            if code == 421:
                self._drop()
                smtp = None
        if smtp is None:
            smtp = self._connection()
            code, resp = smtp.mail(self._envelope_from)
        if code != 250:
            self._reset_or_drop(smtp, code)
            raise smtplib.SMTPSenderRefused(code, resp, self._envelope_from)
        code, resp = smtp.rcpt(to)
        if code not in (250, 251):
            self._reset_or_drop(smtp, code)
            raise smtplib.SMTPRecipientsRefused({to: (code, resp)})
        code, resp = smtp.data(data)
        if code != 250:
            self._reset_or_drop(smtp, code)
            raise smtplib.SMTPDataError(code, resp)

    def _reset_or_drop(self, smtp: smtplib.SMTP, code: int) -> None:
        """After a refusal: a 421 is the server closing; else the
        transaction is reset, the connection kept for the next message."""
        if code == 421:
            self._drop()
            return
        try:
            smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _connection(self) -> smtplib.SMTP:
        """The open connection if the server still answers on it (servers
        close idle ones), else a new one, greeted."""
        if self._smtp is not None:
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.ehlo_or_helo_if_needed()
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()


class HttpSms:
    """An SMS gateway over HTTP: POST {to, text, sender, reference} with an
    Idempotency-Key; 2xx accepted, 408/429/5xx worth retrying, other 4xx not
    (a number the gateway refuses stays refused). Delivery receipts come back
    to this service's API (`callback_url`)."""

    channel = Channel.SMS
    # Sends may overlap (each thread sends on its own client; each send has
    # its own Idempotency-Key): the dispatcher keeps several in flight.
    concurrent = True
    # The gateway drops a repeat of a key it has accepted and answers as
    # before: a send repeated after a crash reaches the parent once, so the
    # dispatcher need not note each acceptance before its record.
    idempotent = True

    def __init__(self, url: str, *, sender: str = "Kezek", token: str | None = None, timeout: float = 10,
                 callback_url: str | None = None):
        self.url, self.sender, self.callback_url = url, sender, callback_url
        self._options = dict(timeout=timeout, headers={"Authorization": f"Bearer {token}"} if token else {})
        # A client (and its kept connection) for each sending thread: one
        # client shared by the dispatcher's 64 threads had them queue on its
        # pool's lock (py-spy: 70% of the sending threads' samples there).
        self._local = threading.local()
        self._clients: list[tuple[threading.Thread, httpx.Client]] = []
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """This thread's client. Those of threads that have ended (a round
        of `Dispatcher.run_once` sends from threads of its own) are closed
        when the next is made, so that their connections do not pile up."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(**self._options)
            with self._lock:
                ended = [c for thread, c in self._clients if not thread.is_alive()]
                self._clients = [(t, c) for t, c in self._clients if t.is_alive()]
                self._clients.append((threading.current_thread(), client))
            for old in ended:
                old.close()
        return client

    def send(self, msg: Outgoing) -> Attempt:
        body = {"to": msg.address, "text": msg.body, "sender": self.sender, "reference": msg.id}
        if self.callback_url:
            body["callback_url"] = self.callback_url
        try:
            r = self.client.post(self.url, json=body, headers={"Idempotency-Key": msg.id})
        except httpx.HTTPError as exc:
            return Attempt(Outcome.TRANSIENT, error=f"sms gateway {exc!r}")
        if r.is_success:
            try:
                answer = r.json()
            except ValueError:
                answer = {}
            outcome = Outcome.DELIVERED if answer.get("status") == "delivered" else Outcome.SENT
            return Attempt(outcome, provider_ref=str(answer.get("id") or msg.id))
        error = f"sms gateway {r.status_code} {r.text[:200]!r}"
        if r.status_code in (408, 425, 429) or r.status_code >= 500:
            return Attempt(Outcome.TRANSIENT, error=error)
        return Attempt(Outcome.PERMANENT, error=error)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for _thread, client in clients:
            client.close()


class InAppInbox:
    """The inbox is the messages table the cabinet reads through our API:
    making the message visible there is its delivery."""

    channel = Channel.INAPP
    # A send is the row already there: a dispatcher's round claims this many
    # at once. A round is two transactions (its claim, its record) whatever
    # its size: 100 a round, not 10, halved the CPU an in-app message costs
    # (bench/notifications_dispatch.py: 1.10 to 0.58 ms), and a distribution
    # day makes one for each referral.
    claims_at_once = 100

    def send(self, msg: Outgoing) -> Attempt:
        return Attempt(Outcome.DELIVERED, provider_ref=f"inbox:{msg.address}")

    def close(self) -> None:
        pass


class Console:
    """Prints SMS and e-mail instead of sending them (`make run`)."""

    def __init__(self, channel: Channel, stream: TextIO | None = None):
        self.channel = channel
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, msg: Outgoing) -> Attempt:
        head = f"--- {self.channel.value} to {msg.address} [{msg.locale}] {msg.id}"
        text = f"{head}\n{msg.subject}\n\n{msg.body}\n" if msg.subject else f"{head}\n{msg.body}\n"
        with self._lock:
            print(text, file=self.stream or sys.stdout, flush=True)
        return Attempt(Outcome.SENT, provider_ref=f"console:{msg.id}")

    def close(self) -> None:
        pass
