"""The transports against real local servers: aiosmtpd for e-mail, the
development SMS gateway over HTTP (which records requests and fails on
demand)."""
from __future__ import annotations

import io
import json
import queue
import smtplib
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kezek.infra.procs import free_port, wait_until
from services.notifications.channels import Console, HttpSms, InAppInbox, SmtpEmail
from services.notifications.devservers import DevSmsGateway, DevSmtpServer
from services.notifications.domain import Channel, Outcome
from services.notifications.service import Outgoing


def outgoing(channel=Channel.EMAIL, address="parent@example.kg", subject="Жолдомо", body="Саламатсызбы!\nТекст",
             locale="ky", mid="7d1e5a8e-0000-4000-8000-000000000001"):
    return Outgoing(mid, channel, address, locale, subject, body, False,
                    datetime.now(UTC) + timedelta(minutes=5), 0)


@pytest.fixture
def smtp():
    server = DevSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def gateway():
    gw = DevSmsGateway(receipts=False).start()
    yield gw
    gw.stop()


def test_email_is_sent_over_smtp_in_utf8_with_a_stable_message_id(smtp):
    attempt = SmtpEmail("127.0.0.1", smtp.port, "Kezek <noreply@kezek.kg>").send(outgoing())
    assert attempt.outcome is Outcome.SENT
    [mail] = smtp.to("parent@example.kg")
    assert mail["Subject"] == "Жолдомо" and "Саламатсызбы!" in mail.get_content()
    assert mail["Message-ID"] == attempt.provider_ref == "<7d1e5a8e-0000-4000-8000-000000000001@notifications.kezek>"
    assert mail["Content-Language"] == "ky" and mail["Auto-Submitted"] == "auto-generated"


LONG_LINE = "word " * 250


@pytest.mark.parametrize("subject, body", [
    ("Жолдомо", "Саламатсызбы!\nТекст"),
    ("Направление в детский сад №12 «Солнышко»: подтвердите до 12.12.2026 в личном кабинете", "Здравствуйте!\r\n"),
    ("Your code", "Your code is 123456.\n.\nA line with a dot alone above."),
    ("", LONG_LINE + "\nshort"),
    ("Two\nlines", "no newline at the end"),
])
def test_an_email_written_out_by_hand_reads_as_the_one_the_email_package_writes(subject, body):
    transport = SmtpEmail("127.0.0.1", 25, "Кезек <noreply@kezek.kg>")
    msg = outgoing(subject=subject, body=body)
    raw = transport.message_bytes(msg)
    assert raw is not None and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    mine, theirs = (message_from_bytes(b, policy=default_policy)
                    for b in (raw, transport.compose(outgoing(subject=" ".join(subject.splitlines()), body=body))
                              .as_bytes(policy=default_policy.clone(linesep="\r\n"))))
    for header in ("From", "To", "Subject", "Message-ID", "Auto-Submitted", "Content-Language", "MIME-Version"):
        assert mine[header] == theirs[header], header
    assert mine.get_content_type() == "text/plain" and mine.get_content_charset() == "utf-8"
    # the same lines (an 8bit text read back keeps the wire's CRLF, a base64 one its own)
    assert mine.get_content().splitlines() == theirs.get_content().splitlines()


@pytest.mark.parametrize("address", ["parent@пример.кг", "Ата-эне <parent@example.kg>",
                                     "parent@example.kg\r\nBcc: other@example.kg", ""])
def test_an_address_not_plain_is_left_to_the_email_package(address):
    assert SmtpEmail("127.0.0.1", 25, "noreply@kezek.kg").message_bytes(outgoing(address=address)) is None


def test_a_kept_connection_takes_the_next_message_without_a_noop_first(smtp, monkeypatch):
    """A NOOP before each message was a round trip each; a connection the
    server has closed shows at MAIL, which commits the server to nothing."""
    noops = []
    monkeypatch.setattr(smtplib.SMTP, "noop", lambda self: noops.append(1) or (250, b"OK"))
    transport = SmtpEmail("127.0.0.1", smtp.port, "noreply@kezek.kg")
    for i in (1, 2, 3):
        assert transport.send(outgoing(mid=f"7d1e5a8e-0000-4000-8000-00000000000{i}")).outcome is Outcome.SENT
    transport.close()
    assert noops == [] and len(smtp.messages) == 3


def test_a_kept_connection_the_server_is_closing_sends_the_message_on_a_new_one(smtp):
    """A server may answer 421 on a connection idle too long, then close it:
    the message goes at once on a new connection, not as a failed attempt."""
    transport = SmtpEmail("127.0.0.1", smtp.port, "noreply@kezek.kg")
    assert transport.send(outgoing(mid="7d1e5a8e-0000-4000-8000-000000000001")).outcome is Outcome.SENT
    kept = transport._smtp
    kept.mail = lambda *_args, **_kw: (421, b"4.4.2 idle too long, closing")
    assert transport.send(outgoing(mid="7d1e5a8e-0000-4000-8000-000000000002")).outcome is Outcome.SENT
    assert transport._smtp is not kept and len(smtp.messages) == 2
    transport.close()


def test_temporary_smtp_refusal_is_worth_a_retry(smtp):
    smtp.fail_next(1)
    transport = SmtpEmail("127.0.0.1", smtp.port, "noreply@kezek.kg")
    assert transport.send(outgoing()).outcome is Outcome.TRANSIENT
    assert transport.send(outgoing()).outcome is Outcome.SENT


def test_permanent_smtp_refusal_is_not_retried(smtp):
    smtp.fail_next(1, "550 5.1.1 no such mailbox")
    assert SmtpEmail("127.0.0.1", smtp.port, "noreply@kezek.kg").send(outgoing()).outcome is Outcome.PERMANENT


def test_email_transport_keeps_its_connection_and_comes_back_after_the_server_dropped_it(smtp):
    transport = SmtpEmail("127.0.0.1", smtp.port, "noreply@kezek.kg")
    first = transport.send(outgoing(mid="7d1e5a8e-0000-4000-8000-000000000001"))
    kept = transport._smtp
    second = transport.send(outgoing(mid="7d1e5a8e-0000-4000-8000-000000000002"))
    assert first.outcome is second.outcome is Outcome.SENT and transport._smtp is kept
    kept.sock.close()                                       # the server closed an idle connection
    assert transport.send(outgoing(mid="7d1e5a8e-0000-4000-8000-000000000003")).outcome is Outcome.SENT
    transport.close()
    assert [m["Message-ID"][1:37] for m in smtp.messages] == [
        f"7d1e5a8e-0000-4000-8000-00000000000{i}" for i in (1, 2, 3)]


def test_email_refused_once_leaves_the_connection_usable_for_the_next(smtp):
    smtp.fail_next(1)
    transport = SmtpEmail("127.0.0.1", smtp.port, "noreply@kezek.kg")
    assert transport.send(outgoing()).outcome is Outcome.TRANSIENT
    assert transport.send(outgoing()).outcome is Outcome.SENT and len(smtp.messages) == 1
    transport.close()


def test_mail_server_down_is_worth_a_retry():
    attempt = SmtpEmail("127.0.0.1", free_port(), "noreply@kezek.kg", timeout=2).send(outgoing())
    assert attempt.outcome is Outcome.TRANSIENT and attempt.error


def test_sms_goes_to_the_gateway_with_the_message_id_as_idempotency_key(gateway):
    sms = HttpSms(gateway.url, sender="Kezek")
    msg = outgoing(Channel.SMS, "+996700123456", None, "Жолдомо берилди.")
    assert sms.send(msg).outcome is Outcome.SENT
    assert sms.send(msg).outcome is Outcome.SENT        # a repeat after a crash
    assert len(gateway.requests) == 2 and gateway.delivered_to("+996700123456") == ["Жолдомо берилди."]
    assert gateway.requests[0].key == msg.id and gateway.requests[0].sender == "Kezek"


def test_each_sending_thread_sends_on_a_client_of_its_own_and_an_ended_threads_client_is_closed(gateway):
    """The dispatcher's sending threads do not queue on one client's pool:
    a thread keeps its client (and connection) from one send to the next;
    the clients of threads that ended are closed, not kept."""
    sms = HttpSms(gateway.url)
    seen: dict[str, list] = {}
    all_sent = threading.Barrier(3)

    def sender(name: str) -> None:
        for n in range(2):
            assert sms.send(outgoing(Channel.SMS, "+996700123456", None, f"{name} {n}")).outcome is Outcome.SENT
            seen.setdefault(name, []).append(sms.client)
        all_sent.wait(timeout=30)   # no thread ends (its client then closable) before each has made its own
    threads = [threading.Thread(target=sender, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clients = [c for kept in seen.values() for c in kept]
    assert all(kept[0] is kept[1] for kept in seen.values()), "a thread keeps its client"
    assert len({id(c) for c in clients}) == 3 and len(gateway.requests) == 6
    assert not any(c.is_closed for c in clients), "kept while their threads are there to reuse them"
    assert sms.send(outgoing(Channel.SMS, "+996700123456", None, "from the main thread")).outcome is Outcome.SENT
    assert all(c.is_closed for c in clients), "the ended threads' clients closed when the next was made"
    main = sms.client
    sms.close()
    assert main.is_closed


@pytest.mark.parametrize("status, outcome", [(503, Outcome.TRANSIENT), (500, Outcome.TRANSIENT),
                                             (429, Outcome.TRANSIENT), (400, Outcome.PERMANENT),
                                             (422, Outcome.PERMANENT)])
def test_gateway_errors_are_classed_as_worth_retrying_or_not(gateway, status, outcome):
    gateway.fail_next(1, status)
    assert HttpSms(gateway.url).send(outgoing(Channel.SMS, "+996700123456", None, "x")).outcome is outcome


class ReceiptsTaker:
    """Takes receipts as the notifications API does, refusing the first
    `refuse` with 503 (and `retry_after`, if any) and noting each try."""

    def __init__(self, refuse: int = 0, retry_after: str | None = None, pause: float = 0.0):
        self.tries: list[tuple[float, str, int]] = []   # when, reference, status answered
        self.in_hand = self.most_in_hand = 0
        lock = threading.Lock()
        taker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                reference = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["reference"]
                with lock:
                    taker.in_hand += 1
                    taker.most_in_hand = max(taker.most_in_hand, taker.in_hand)
                    status = 503 if len(taker.tries) < refuse else 204
                    taker.tries.append((time.monotonic(), reference, status))
                time.sleep(pause)
                with lock:
                    taker.in_hand -= 1
                self.send_response(status)
                if status == 503 and retry_after:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/receipts"

    def taken(self) -> list[str]:
        return sorted(ref for _, ref, status in self.tries if status == 204)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_sms(gw: DevSmsGateway, refs, callback_url: str) -> None:
    with httpx.Client() as client:
        for ref in refs:
            client.post(gw.url, json={"to": "+996700123456", "text": "x", "reference": ref,
                                      "callback_url": callback_url}, headers={"Idempotency-Key": ref}).raise_for_status()


def test_the_gateway_posts_receipts_from_a_few_senders_and_sends_a_refused_one_again_after_its_retry_after():
    taker = ReceiptsTaker(refuse=5, retry_after="1", pause=0.02)
    gw = DevSmsGateway(receipt_senders=3).start()
    try:
        refs = [f"m-{n:02}" for n in range(40)]
        send_sms(gw, refs, taker.url)
        wait_until(lambda: taker.taken() == refs, 20, "every receipt taken")
        senders = [t for t in threading.enumerate() if t.name.startswith("dev-sms-receipts")]
        assert taker.most_in_hand <= 3 and len(senders) == 3
        assert gw.receipts_waiting == 0
        for when, ref, status in taker.tries:
            if status == 503:
                again = next(w for w, r, s in taker.tries if r == ref and s == 204)
                assert again - when >= 0.95, ref     # not before the Retry-After
    finally:
        gw.stop()
        taker.close()


def test_a_receipt_the_service_keeps_refusing_is_tried_after_doubling_pauses_until_patience_runs_out():
    taker = ReceiptsTaker(refuse=1000)
    gw = DevSmsGateway(receipt_senders=2, receipt_patience=3.0).start()
    try:
        send_sms(gw, ["m-1"], taker.url)
        wait_until(lambda: gw.receipts_given_up == 1, 20, "the receipt given up")
        tries = [when for when, _, _ in taker.tries]
        pauses = [b - a for a, b in zip(tries, tries[1:])]
        assert len(tries) >= 2 and all(p >= 0.45 * 2 ** n for n, p in enumerate(pauses)), pauses
        assert gw.receipts_waiting == 0 and taker.taken() == []
    finally:
        gw.stop()
        taker.close()


def test_an_accepted_sms_gets_its_receipt_even_when_the_sender_hangs_up_before_the_answer(monkeypatch):
    receipts: queue.Queue = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            receipts.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    gw = DevSmsGateway().start()
    answer = BaseHTTPRequestHandler.end_headers

    def sender_gone(handler):   # the sender was killed: writing the answer breaks
        if handler.server is gw._server:
            raise BrokenPipeError(32, "Broken pipe")
        answer(handler)
    monkeypatch.setattr(BaseHTTPRequestHandler, "end_headers", sender_gone)
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.post(gw.url, json={"to": "+996700123456", "text": "x", "reference": "m-1",
                                     "callback_url": f"http://127.0.0.1:{receiver.server_port}/receipts"},
                       headers={"Idempotency-Key": "m-1"}, timeout=5)
        assert receipts.get(timeout=10) == {"id": "gw-m-1", "reference": "m-1", "status": "delivered"}
    finally:
        gw.stop()
        receiver.shutdown()
        receiver.server_close()


def test_unreachable_gateway_is_worth_a_retry():
    with socket.socket() as s:  # a port that accepts nothing
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempt = HttpSms(f"http://127.0.0.1:{port}/send", timeout=2).send(outgoing(Channel.SMS, "+77012345678", None, "x"))
    assert attempt.outcome is Outcome.TRANSIENT


def test_inapp_delivery_is_storing_it_in_the_inbox():
    assert InAppInbox().send(outgoing(Channel.INAPP, "p1")).outcome is Outcome.DELIVERED


def test_console_channel_prints_the_message():
    out = io.StringIO()
    attempt = Console(Channel.SMS, out).send(outgoing(Channel.SMS, "+996700123456", None, "Жолдомо"))
    assert attempt.outcome is Outcome.SENT and "+996700123456" in out.getvalue() and "Жолдомо" in out.getvalue()


def test_the_dev_sms_gateway_keeps_a_senders_connection_open_and_closes_it_when_stopped():
    """As a provider's gateway: the dispatcher's sends reuse one connection
    (under HTTP/1.0 each connected anew), and a gateway stopped is gone for
    a client that kept its connection."""
    gw = DevSmsGateway(receipts=False).start()
    sms = HttpSms(gw.url)
    for n in range(3):
        assert sms.send(outgoing(Channel.SMS, "+996700123456", None, f"SMS {n}")).outcome is Outcome.SENT
    assert len(gw._connections) == 1
    gw.stop()
    assert sms.send(outgoing(Channel.SMS, "+996700123456", None, "after")).outcome is Outcome.TRANSIENT
    sms.close()
