"""Calls between services (kezek/client.py): a call that gets no answer is a
503 and is logged, since the called service has nothing to log; and a
client lets an idle connection go before the service would close it, so
that no call is sent on a connection being closed under it."""
from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from structlog.testing import capture_logs

from kezek.client import KEEP_ALIVE, SERVER_KEEP_ALIVE, ServiceClient, SyncServiceClient, UpstreamError
from kezek.commands import serve
from kezek.infra.procs import free_port
from kezek.trust import ServiceKeys

KEYS = ServiceKeys.derived("service-client-tests")


class Counting(ThreadingHTTPServer):
    """An HTTP/1.1 server keeping connections open, counting them."""
    daemon_threads = True
    connections = 0


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.connections += 1

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Counting(("127.0.0.1", 0), Answer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_call_that_gets_no_answer_is_a_503_and_is_logged_with_its_error():
    client = SyncServiceClient(f"http://127.0.0.1:{free_port()}", keys=KEYS, caller="gateway", audience="queue",
                               timeout=2)
    with capture_logs() as logs, pytest.raises(UpstreamError) as refused:
        client.call("GET", "/api/v1/queue-entries/e1")
    client.close()
    assert refused.value.status == 503
    [logged] = [e for e in logs if e["event"] == "client.no_answer"]
    assert logged["method"] == "GET" and logged["path"] == "/api/v1/queue-entries/e1"
    assert "ConnectError" in logged["error"] and logged["log_level"] == "warning"


def test_an_async_call_that_gets_no_answer_is_a_503_and_is_logged():
    async def call():
        client = ServiceClient(f"http://127.0.0.1:{free_port()}", keys=KEYS, caller="gateway", audience="queue",
                               timeout=2)
        try:
            await client.call("GET", "/api/v1/me")
        finally:
            await client.aclose()
    with capture_logs() as logs, pytest.raises(UpstreamError) as refused:
        asyncio.run(call())
    assert refused.value.status == 503 and [e["path"] for e in logs if e["event"] == "client.no_answer"] == ["/api/v1/me"]


def test_a_connection_idle_longer_than_the_clients_keep_alive_is_not_used_again(server):
    assert KEEP_ALIVE < SERVER_KEEP_ALIVE, "the client lets go before `kezek serve` closes"
    client = SyncServiceClient(f"http://127.0.0.1:{server.server_address[1]}", keys=KEYS, caller="gateway",
                               audience="queue")
    client.call("GET", "/a")
    client.call("GET", "/b")
    assert server.connections == 1, "kept from one call to the next"
    time.sleep(KEEP_ALIVE + 0.3)
    client.call("GET", "/c")
    client.close()
    assert server.connections == 2, "idle past the client's keep-alive: a new connection"


def test_kezek_serve_keeps_an_idle_connection_longer_than_the_clients_do(monkeypatch):
    """What the clients' keep-alive is measured against is what `kezek
    serve` gives uvicorn, for one process and for several workers."""
    started = []
    monkeypatch.setattr(serve, "app", lambda service=None: object())
    monkeypatch.setattr(serve.uvicorn, "run", lambda target, **options: started.append(options))
    monkeypatch.setenv(serve._SERVICE, "")         # set by the workers' start: restored after the test
    for workers in ("1", "2"):
        monkeypatch.setenv("KEZEK_GATEWAY_WORKERS", workers)
        assert serve.main(["gateway"]) == 0
    assert [o["timeout_keep_alive"] for o in started] == [SERVER_KEEP_ALIVE, SERVER_KEEP_ALIVE]
    assert [o.get("workers", 1) for o in started] == [1, 2]
