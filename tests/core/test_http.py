"""The bounded HTTP client: retries, deadlines, size caps, a server that trickles."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from tether.http import HttpError, request


class Handler(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/big":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"y" * 5000)
        elif self.path == "/flaky" and type(self).calls < 3:
            self.send_response(503)
            self.end_headers()
        elif self.path == "/missing":
            self.send_response(404)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    h = type("H", (Handler,), {"calls": 0})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_trickling_server_is_cut_off(base: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(HttpError, match="reading the response body: no answer within the time allowed"):
        request(base + "/trickle", timeout=1, retries=0)
    assert time.monotonic() - t0 < 4


def test_retries_5xx_then_succeeds(base: str) -> None:
    assert request(base + "/flaky", timeout=2, retries=3, sleep=0.05).body == b"ok"


def test_404_is_an_answer_not_retried(base: str) -> None:
    with pytest.raises(HttpError) as ei:
        request(base + "/missing", timeout=2, retries=5, sleep=0.5)
    assert ei.value.status == 404


def test_size_cap(base: str) -> None:
    with pytest.raises(HttpError, match="larger than 100 bytes"):
        request(base + "/big", max_body=100)


def test_deadline_stops_retries() -> None:
    t0 = time.monotonic()
    with pytest.raises(HttpError):
        request("http://127.0.0.1:9/", timeout=5, retries=50, sleep=0.2, deadline=time.monotonic() + 1)
    assert time.monotonic() - t0 < 2.5


def test_only_http_urls() -> None:
    with pytest.raises(HttpError, match="only http"):
        request("file:///etc/passwd")
