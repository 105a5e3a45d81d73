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


# -- the one client: keep-alive, framing, redirects, credentials, TLS, streams ----------------------------------


class Raw:
    """A loopback server that answers each connection with a canned byte script (one per request)."""

    def __init__(self, answers: list[bytes], keep: bool = True) -> None:
        import socket

        self.answers = answers
        self.keep = keep
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        conn.settimeout(5)
        with conn:
            data = b""
            while self.answers:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                self.requests.append(head)
                conn.sendall(self.answers.pop(0))
                if not self.keep:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_keep_alive_session_reuses_one_connection() -> None:
    from tether.http import Session

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv = Raw([ok, ok, ok])
    try:
        with Session() as s:
            assert [s.call(srv.url + f"/{i}", timeout=2).body for i in range(3)] == [b"ok"] * 3
        assert srv.connections == 1
    finally:
        srv.close()


def test_stale_kept_alive_connection_is_replaced_once() -> None:
    from tether.http import Session

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv = Raw([ok, ok], keep=False)            # the server closes after each answer, without saying so
    try:
        with Session() as s:
            assert s.call(srv.url + "/a", timeout=2).body == b"ok"
            assert s.call(srv.url + "/b", timeout=2).body == b"ok"
        assert srv.connections == 2
    finally:
        srv.close()


def test_chunked_body_interim_answer_and_repeated_headers() -> None:
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
              b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: t\r\n\r\n")
    srv = Raw([answer])
    try:
        resp = request(srv.url + "/", timeout=2, retries=0)
        assert resp.body == b"hello, world"
        assert resp.headers["x-a"] == "1, 2"
    finally:
        srv.close()


def test_body_until_close_and_content_length_over_cap() -> None:
    srv = Raw([b"HTTP/1.0 200 OK\r\n\r\nuntil the end"], keep=False)
    big = Raw([b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n"])
    try:
        assert request(srv.url + "/", timeout=2, retries=0).body == b"until the end"
        t0 = time.monotonic()
        with pytest.raises(HttpError, match=r"larger than 1000 bytes \(Content-Length 999999999\)") as ei:
            request(big.url + "/", timeout=2, retries=3, max_body=1000)
        assert not ei.value.retryable and big.connections == 1 and time.monotonic() - t0 < 1
    finally:
        srv.close()
        big.close()


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size 'zz'"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response header line 'no colon here'"),
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n", "more than 100"),
    (b"\x1b[2J\x00HTTP\r\n\r\n", r"not an HTTP response \(status line '\\x1b\[2J\\x00HTTP'\)"),
])
def test_malformed_answers_are_one_clear_error(answer: bytes, message: str) -> None:
    srv = Raw([answer, answer, answer])
    try:
        with pytest.raises(HttpError, match=message) as ei:
            request(srv.url + "/x", timeout=2, retries=2, sleep=0.01)
        assert not ei.value.retryable and srv.connections == 1
    finally:
        srv.close()


def test_redirects_followed_bounded_and_credentials_kept_on_their_origin() -> None:
    other = Raw([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthere"])
    srv = Raw([b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 3\r\n\r\nabc",
               f"HTTP/1.1 307 Temporary\r\nLocation: {other.url}/c?t=1\r\nContent-Length: 0\r\n\r\n".encode()])
    try:
        resp = request(srv.url + "/a", headers={"Authorization": "Bearer SECRET", "X-Api-Key": "KEY",
                                                "Range": "bytes=5-"}, timeout=2, retries=0)
        assert (resp.body, resp.url) == (b"there", other.url + "/c?t=1")
        assert all(b"Bearer SECRET" in r and b"KEY" in r for r in srv.requests) and srv.connections == 1
        assert b"SECRET" not in other.requests[0] and b"KEY" not in other.requests[0]   # not to another origin
        assert b"\r\nRange: bytes=5-" in other.requests[0]      # a resume survives a redirect to a CDN
        assert other.requests[0].startswith(b"GET /c?t=1 HTTP/1.1\r\n")
    finally:
        srv.close()
        other.close()
    loop = Raw([b"HTTP/1.1 301 Moved\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"] * 10)
    try:
        with pytest.raises(HttpError, match=r"more than 3 redirects \(the last to http://127\.0\.0\.1:\d+/again\)"):
            request(loop.url + "/", timeout=2, retries=2, max_redirects=3)
        assert len(loop.requests) == 4
    finally:
        loop.close()


def test_userinfo_becomes_basic_auth_and_never_shows() -> None:
    srv = Raw([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"])
    try:
        url = srv.url.replace("http://", "http://alice:s3cret@") + "/seed/?token=TOKEN123"
        with pytest.raises(HttpError) as ei:
            request(url, timeout=2, retries=0)
        assert b"\r\nAuthorization: Basic YWxpY2U6czNjcmV0" in srv.requests[0]   # alice:s3cret
        assert b"GET /seed/?token=TOKEN123 HTTP/1.1" in srv.requests[0]
        text = str(ei.value)
        assert text == f"{srv.url}/seed/?…: HTTP 403" and ei.value.url == f"{srv.url}/seed/?…"
    finally:
        srv.close()


def test_header_injection_is_refused_before_sending() -> None:
    srv = Raw([])
    try:
        with pytest.raises(HttpError, match="values may not contain line breaks"):
            request(srv.url + "/", headers={"X-Token": "a\r\nEvil: 1"}, timeout=1, retries=0)
        with pytest.raises(HttpError, match="names and values must be ASCII"):
            request(srv.url + "/", headers={"X-Token": "\u2603"}, timeout=1, retries=0)
        with pytest.raises(HttpError, match="non-ASCII characters"):
            request(srv.url + "/caf\u00e9", timeout=1, retries=0)
        assert srv.requests == [] and srv.connections == 0
    finally:
        srv.close()


def test_backoff_doubles_and_never_passes_the_deadline() -> None:
    from tether.http import backoff

    assert [backoff(i, 0.5) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff(3, 0.1, cap=1.0) == 0.8 and backoff(4, 0.1, cap=1.0) == 1.0
    assert backoff(0, 7.0) == 7.0
    t0 = time.monotonic()
    with pytest.raises(HttpError, match="unreachable: cannot connect to 127.0.0.1:9"):
        request("http://127.0.0.1:9/", timeout=5, retries=50, sleep=0.3, deadline=time.monotonic() + 1)
    assert time.monotonic() - t0 < 1.2


def test_tls_is_verified(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    from tests.hostile.server import make_cert

    cert, key = make_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Handler,), {"calls": 0}))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}/ok"
    try:
        with pytest.raises(HttpError, match=r"TLS certificate not trusted \(self.signed certificate"):
            request(url, timeout=2, retries=2)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert request(url, timeout=2, retries=0).body == b"ok"
    finally:
        srv.shutdown()
        srv.server_close()


def test_stream_needs_a_minimum_rate_not_just_some_bytes(base: str) -> None:
    from tether.http import Stream

    s = Stream(base + "/trickle", timeout=0.5, min_rate=100)   # 5 bytes a second against 100 wanted
    t0 = time.monotonic()
    got = 0
    with pytest.raises(HttpError, match=r"the body arrived slower than 100 bytes/s for 0.5s") as ei:
        while s.read(4096):
            got += 1
    assert ei.value.retryable and 0.4 < time.monotonic() - t0 < 1.2 and got >= 1
    fast = Stream(base + "/big", timeout=0.5, min_rate=100)
    assert fast.read(100000) and fast.length is None
    fast.close()


def _drip_relay(upstream: tuple[str, int], stop: threading.Event) -> int:
    """A TCP relay that passes the client's bytes on at once and the server's one byte every 20 ms."""
    import socket

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def pump(src: socket.socket, dst: socket.socket, drip: bool) -> None:
        try:
            while not stop.is_set():
                data = src.recv(4096)
                if not data:
                    return
                for i in range(len(data)) if drip else [None]:
                    if i is None:
                        dst.sendall(data)
                    elif stop.wait(0.02):
                        return
                    else:
                        dst.sendall(data[i:i + 1])
        except OSError:
            return

    def accept() -> None:
        conn, _ = lsock.accept()
        up = socket.create_connection(upstream)
        threading.Thread(target=pump, args=(conn, up, False), daemon=True).start()
        pump(up, conn, True)

    threading.Thread(target=accept, daemon=True).start()
    port: int = lsock.getsockname()[1]
    return port


def test_a_dripped_tls_handshake_ends_at_the_deadline(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    from tests.hostile.server import make_cert

    cert, key = make_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Handler,), {"calls": 0}))
    # the handshake in the handler's thread: serve_forever must not sit in accept() behind the relay's drip
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stop = threading.Event()
    try:
        port = _drip_relay(("127.0.0.1", srv.server_address[1]), stop)
        t0 = time.monotonic()
        with pytest.raises(HttpError, match=r"TLS handshake: no answer within the time allowed"):
            request(f"https://127.0.0.1:{port}/ok", timeout=0.5, retries=0)
        assert time.monotonic() - t0 < 0.9          # the certificate alone takes ~20 s at this pace
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()


def test_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    from tether.http import Session

    proxy = Raw([b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nproxied"] * 2)
    try:
        monkeypatch.setenv("http_proxy", proxy.url.replace("http://", "http://pu:pp@"))
        monkeypatch.setenv("no_proxy", "localhost,.internal.example")
        resp = request("http://files.example:8080/a?x=1", timeout=2, retries=0)
        assert resp.body == b"proxied"
        head = proxy.requests[0]
        assert head.startswith(b"GET http://files.example:8080/a?x=1 HTTP/1.1\r\nHost: files.example:8080\r\n")
        assert b"\r\nProxy-Authorization: Basic cHU6cHA=" in head
        # no_proxy, and callers that never use one (metadata services), go direct
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert request(base + "/ok", timeout=2, retries=0).body == b"ok"
        monkeypatch.setenv("no_proxy", "")
        with Session(proxies=False) as s:
            assert s.call(base + "/ok", timeout=2).body == b"ok"
        assert len(proxy.requests) == 1
    finally:
        proxy.close()


def test_https_through_a_proxy_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = Raw([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"])
    try:
        monkeypatch.setenv("https_proxy", refused.url)
        with pytest.raises(HttpError, match=r"proxy 127\.0\.0\.1:\d+ refused a tunnel to secure\.example:443 "
                                             r"\(HTTP 403\)"):
            request("https://secure.example/x", timeout=2, retries=0)
        assert refused.requests[0].startswith(b"CONNECT secure.example:443 HTTP/1.1\r\n")
    finally:
        refused.close()


def test_https_through_a_working_tunnel_is_still_verified(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import ssl

    from tests.hostile.server import make_cert

    cert, key = make_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Handler,), {"calls": 0}))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    seen: list[bytes] = []

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def proxy() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            seen.append(head)
            host, port = head.split(b" ")[1].decode().rsplit(":", 1)
            up = socket.create_connection((host, int(port)))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=pump, args=(up, conn), daemon=True).start()
            threading.Thread(target=pump, args=(conn, up), daemon=True).start()

    threading.Thread(target=proxy, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}/ok"
    try:
        monkeypatch.setenv("https_proxy", f"127.0.0.1:{lsock.getsockname()[1]}")
        with pytest.raises(HttpError, match="TLS certificate not trusted"):
            request(url, timeout=2, retries=0)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert request(url, timeout=2, retries=0).body == b"ok"
        assert [h.split(b"\r\n", 1)[0] for h in seen] == [f"CONNECT 127.0.0.1:{srv.server_address[1]} HTTP/1.1"
                                                          .encode()] * 2
    finally:
        lsock.close()
        srv.shutdown()
        srv.server_close()
