"""The signature of SMS delivery receipts: an HMAC of the body under the
shared secret, over its time; a forged, changed, stale or malformed one
does not hold."""
from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.notifications.devservers import DevSmsGateway
from services.notifications.signature import (
    DEFAULT_HEADER, BadSignature, development_secret, mac, sign, verify,
)

SECRET = b"a shared secret of the provider and us"
BODY = b'{"reference": "m-1", "status": "delivered"}'
NOW = 1_800_000_000


def code_of(header, body=BODY, secrets=(SECRET,), now=NOW) -> str:
    with pytest.raises(BadSignature) as refused:
        verify(header, body, secrets, now=now, tolerance=300)
    return refused.value.code


def test_a_receipt_signed_with_the_shared_secret_holds():
    signed = verify(sign(SECRET, BODY, NOW - 10), BODY, [SECRET], now=NOW, tolerance=300)
    assert signed.at == NOW - 10 and signed.digest == mac(SECRET, NOW - 10, BODY)


def test_a_receipt_without_a_signature_is_unsigned():
    assert code_of(None) == code_of("") == "receipt_unsigned"


def test_a_signature_with_another_secret_or_of_another_body_is_invalid():
    assert code_of(sign(b"guessed", BODY, NOW)) == "receipt_signature_invalid"
    assert code_of(sign(SECRET, BODY, NOW), body=BODY.replace(b"delivered", b"failed")) == "receipt_signature_invalid"
    # The time is signed too: moving it forward breaks the signature.
    digest = mac(SECRET, NOW - 1000, BODY)
    assert code_of(f"t={NOW},v1={digest}") == "receipt_signature_invalid"


def test_a_receipt_signed_outside_the_tolerance_is_stale_either_way():
    assert code_of(sign(SECRET, BODY, NOW - 301)) == "receipt_stale"
    assert code_of(sign(SECRET, BODY, NOW + 301)) == "receipt_stale"


@pytest.mark.parametrize("header", ["v1=abc", "t=now,v1=" + "0" * 64, "t=1", "x" * 2000, "t=-5,v1=" + "0" * 64])
def test_a_malformed_header_is_refused(header):
    assert code_of(header) == "receipt_signature_malformed"


def test_during_a_rotation_either_secret_and_either_signature_holds():
    old = b"the previous secret"
    assert verify(sign(old, BODY, NOW), BODY, [SECRET, old], now=NOW).at == NOW
    both = f"t={NOW},v1={mac(b'unknown', NOW, BODY)},v1={mac(SECRET, NOW, BODY)}"
    assert verify(both, BODY, [SECRET], now=NOW).digest == mac(SECRET, NOW, BODY)


def test_the_development_secret_follows_the_secret_key():
    assert development_secret("a") == development_secret("a") != development_secret("b")


def test_the_development_sms_gateway_signs_its_receipts():
    receipts: queue.Queue = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receipts.put((self.headers.get(DEFAULT_HEADER), body))
            self.send_response(204)
            self.end_headers()

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    gw = DevSmsGateway(receipt_secret=SECRET).start()
    try:
        httpx.post(gw.url, json={"to": "+996700123456", "text": "x", "reference": "m-1",
                                 "callback_url": f"http://127.0.0.1:{receiver.server_port}/receipts"}, timeout=5)
        header, body = receipts.get(timeout=10)
        assert json.loads(body)["reference"] == "m-1"
        assert verify(header, body, [SECRET], now=time.time()).digest
    finally:
        gw.stop()
        receiver.shutdown()
        receiver.server_close()
