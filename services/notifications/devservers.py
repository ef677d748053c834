"""Local stand-ins for the SMS gateway and the mail server, for development
and the tests: real servers on loopback that record what they receive and
fail on demand. The SMS gateway behaves like a real one in the two ways that
matter here: it drops a repeated Idempotency-Key, and it posts a delivery
receipt to the `callback_url` of each accepted SMS, signed the way a
provider signs them (signature.py) with `receipt_secret`: by default the
secret a development service derives from the default secret key. Like a
provider's, its receipts go out from a few senders in turn, and one the
service does not take (an error, a 429 or 5xx) is sent again later: after
the answer's Retry-After, or a pause that doubles from half a second to
30 s, for ten minutes. (It once started a thread a receipt, each retrying
every half second through one client: at 10,000 SMS its process held 8,665
threads, spent a core waiting for connections, and had 1,901 receipts
taken in ten minutes; bench/receipts.py.)

Given a `Mailbox` (mailbox.py), both record what they accept there, and the
SMS gateway's HTTP server also answers GET / with the mailbox's page (what
`kezek mailbox` runs for `kezek run`)."""
from __future__ import annotations

import heapq
import itertools
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from kezek.settings import DEV_SECRET
from services.notifications import signature


@dataclass
class SmsRequest:
    key: str
    to: str
    text: str
    sender: str
    reference: str | None
    at: float


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5, for a dispatcher with 16
    # sends in flight (each connecting anew, under HTTP/1.0) and the receipts:
    # on a distribution day 50 of 500 SMS met "connection reset by peer"
    # and waited out a retry. A provider's gateway takes far more at once.
    request_queue_size = 128
    daemon_threads = True


@dataclass
class DevSmsGateway:
    host: str = "127.0.0.1"
    port: int = 0
    receipts: bool = True            # post delivery receipts to callback_url
    receipt_secret: bytes = field(default_factory=lambda: signature.development_secret(DEV_SECRET))
    signature_header: str = signature.DEFAULT_HEADER
    mailbox: object = None           # a mailbox.Mailbox: accepted SMS recorded there, its page at GET /
    requests: list[SmsRequest] = field(default_factory=list)   # every request, repeats included
    accepted: dict[str, SmsRequest] = field(default_factory=dict)  # by Idempotency-Key
    _fail: list[int] = field(default_factory=list)
    _down_status: int | None = None
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    receipt_senders: int = 8         # receipts posted at once
    receipt_patience: float = 600    # seconds a receipt is tried for
    _receipts: "ReceiptSender | None" = None
    # The connections open to it: closed by `stop`, so that a client with a
    # kept connection finds the gateway gone, as it would a provider's.
    _connections: set = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/send"

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * count)

    def down(self, status: int = 503) -> None:
        """Every request fails with `status` until `up()`."""
        self._down_status = status

    def up(self) -> None:
        self._down_status = None

    def delivered_to(self, phone: str) -> list[str]:
        return [r.text for r in self.accepted.values() if r.to == phone]

    def start(self) -> "DevSmsGateway":
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            # Connections kept open from one request to the next, as a
            # provider's gateway keeps them: a dispatcher's sends and the
            # receipts' client reuse theirs (every answer has its length).
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with gateway._lock:
                    gateway._connections.add(self.connection)

            def finish(self):
                with gateway._lock:
                    gateway._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                from services.notifications import mailbox as mb

                path, query = mb.query_of(self.path)
                if path == "/health":
                    return self._answer(200, {"status": "ok", "service": "mailbox"})
                if path != "/" or gateway.mailbox is None:
                    return self._answer(404, {"error": "not found"})
                channel = (query.get("channel") or [None])[0]
                text = mb.page(gateway.mailbox, mb.pick_language(query, self.headers.get("Accept-Language", "")),
                               channel if channel in ("email", "sms") else None).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(text)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(text)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                    req = SmsRequest(self.headers.get("Idempotency-Key") or str(uuid.uuid4()), body["to"],
                                     body["text"], body.get("sender", ""), body.get("reference"), time.time())
                except (ValueError, KeyError):
                    return self._answer(400, {"error": "to and text are required"})
                with gateway._lock:
                    gateway.requests.append(req)
                    status = gateway._down_status or (gateway._fail.pop(0) if gateway._fail else None)
                    if status is None:
                        first = req.key not in gateway.accepted
                        gateway.accepted.setdefault(req.key, req)
                        if first and gateway.mailbox is not None:
                            gateway.mailbox.add("sms", req.to, req.text)
                if status is not None:
                    return self._answer(status, {"error": "gateway failure on demand"})
                provider_id = f"gw-{req.key}"
                # Accepted is accepted: the receipt goes out even if the client
                # hangs up before reading our answer (killed mid-send).
                if first and gateway.receipts and body.get("callback_url"):
                    gateway._receipt(body["callback_url"], provider_id, req)
                self._answer(200, {"id": provider_id, "status": "accepted", "duplicate": not first})

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="dev-sms-gateway").start()
        return self

    def _receipt(self, url: str, provider_id: str, req: SmsRequest) -> None:
        body = json.dumps({"id": provider_id, "reference": req.reference, "status": "delivered"}).encode()
        with self._lock:
            if self._receipts is None:
                self._receipts = ReceiptSender(self.receipt_secret, self.signature_header, self.receipt_senders,
                                               self.receipt_patience)
        self._receipts.post(url, body)

    @property
    def receipts_waiting(self) -> int:
        """Receipts not yet taken by the service (sending or to send again)."""
        return self._receipts.waiting if self._receipts else 0

    @property
    def receipts_given_up(self) -> int:
        """Receipts the service kept refusing until the patience ran out."""
        return self._receipts.given_up if self._receipts else 0

    def stop(self) -> None:
        if self._receipts:
            self._receipts.stop()
            self._receipts = None
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            with self._lock:
                kept, self._connections = list(self._connections), set()
            for conn in kept:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class ReceiptSender:
    """Signed receipts posted by `senders` threads, each due one first; one
    the service does not take is due again after its Retry-After or a pause
    that doubles (FIRST_PAUSE to LONGEST_PAUSE), until `patience` runs out."""

    FIRST_PAUSE = 0.5
    LONGEST_PAUSE = 30.0

    def __init__(self, secret: bytes, header: str, senders: int, patience: float, clock=time.monotonic):
        self.secret, self.header, self.patience, self.clock = secret, header, patience, clock
        self._due: list[tuple[float, int, str, bytes, float, float]] = []   # due, seq, url, body, since, pause
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._stopped = False
        # One client for every receipt: httpx.post made a client a receipt, and
        # each loaded the CA bundle (ssl.create_default_context, milliseconds of
        # CPU under the GIL the answers to the sends wait on).
        self.client = httpx.Client(timeout=5)
        self.given_up = 0
        for n in range(senders):
            threading.Thread(target=self._send, daemon=True, name=f"dev-sms-receipts-{n}").start()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._due) + self._busy

    def post(self, url: str, body: bytes) -> None:
        now = self.clock()
        self._push(now, url, body, now, 0.0)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.client.close()

    def _push(self, due: float, url: str, body: bytes, since: float, pause: float) -> None:
        with self._cond:
            heapq.heappush(self._due, (due, next(self._seq), url, body, since, pause))
            self._cond.notify()

    def _next(self):
        with self._cond:
            while not self._stopped:
                wait = self._due[0][0] - self.clock() if self._due else None
                if wait is not None and wait <= 0:
                    self._busy += 1
                    return heapq.heappop(self._due)
                self._cond.wait(wait)
            return None

    def _send(self) -> None:
        while (item := self._next()) is not None:
            _, _, url, body, since, pause = item
            try:
                again = self._try(url, body)
            finally:
                with self._cond:
                    self._busy -= 1
            if again is None:
                continue
            pause = min(max(pause * 2, self.FIRST_PAUSE), self.LONGEST_PAUSE)
            now = self.clock()
            if now - since > self.patience:
                self.given_up += 1
            else:
                self._push(now + (again or pause), url, body, since, pause)

    def _try(self, url: str, body: bytes) -> float | None:
        """None once the service took it (or refused it for good); otherwise
        the seconds its Retry-After asks for (0: none given)."""
        try:
            # Signed afresh for each try, as a provider does: a retry is
            # not a replay, and its timestamp stays current.
            signed = signature.sign(self.secret, body, int(time.time()))
            r = self.client.post(url, content=body, headers={"Content-Type": "application/json", self.header: signed})
        except httpx.HTTPError:
            return 0.0
        if r.status_code < 500 and r.status_code != 429:
            return None
        try:
            return min(max(float(r.headers.get("Retry-After", 0)), 0.0), self.LONGEST_PAUSE)
        except ValueError:
            return 0.0


@dataclass
class DevSmtpServer:
    """aiosmtpd on loopback; `fail_next(n)` answers the next n messages with
    a 451 (try again later)."""
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    mailbox: object = None           # a mailbox.Mailbox: every accepted letter recorded there
    _fail: list[str] = field(default_factory=list)
    _controller: object = None

    def fail_next(self, count: int, reply: str = "451 4.3.0 temporary failure on demand") -> None:
        self._fail.extend([reply] * count)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def start(self) -> "DevSmtpServer":
        from aiosmtpd.controller import Controller

        from kezek.infra.procs import free_port

        server = self

        class Handler:
            async def handle_DATA(self, _server, _session, envelope):
                if server._fail:
                    return server._fail.pop(0)
                message = message_from_bytes(envelope.content, policy=default_policy)
                server.messages.append(message)
                if server.mailbox is not None:
                    body = message.get_body(("plain",))
                    server.mailbox.add("email", str(message["To"] or ", ".join(envelope.rcpt_tos)),
                                       body.get_content() if body is not None else "",
                                       subject=str(message["Subject"] or ""),
                                       locale=str(message["Content-Language"] or ""))
                return "250 OK"

        self.port = self.port or free_port()
        self._controller = Controller(Handler(), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
