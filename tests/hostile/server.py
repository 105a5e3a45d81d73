"""A loopback server that answers every request badly, in one of several ways (``SCENARIOS``).

Written on raw sockets: a well-behaved HTTP server library cannot drip a header one byte at a time, send a
garbage status line or reset a connection mid-body. Every connection of one server gets the same treatment,
whatever the path, so every client meets the bad behaviour on its first request. The server stops everything
it started when it is closed (drips end, held connections are closed), so a test never wedges the run.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path

DRIP_PAUSE = 0.05          # seconds between two dripped bytes
HTML = b"<html><head><title>Sign in</title></head><body>Welcome to the hotel Wi-Fi</body></html>\n"

SCENARIOS = ("drip_headers", "drip_body", "garbage_status", "huge_headers", "huge_body", "endless_redirects",
             "https_to_http", "html", "reset_mid_body", "never_answers")


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made with the openssl tool."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


class HostileServer:
    def __init__(self, scenario: str, *, tls: tuple[Path, Path] | None = None, http_url: str = "") -> None:
        assert scenario in SCENARIOS, scenario
        self.scenario = scenario
        self.http_url = http_url            # where https_to_http sends its clients
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.requests = 0
        self.ctx: ssl.SSLContext | None = None
        if tls is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.ctx else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.ctx is not None:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            while not self.stop.is_set():
                path = self._read_request(conn)
                if path is None:
                    return
                self.requests += 1
                if not getattr(self, f"_{self.scenario}")(conn, path):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, conn: socket.socket) -> str | None:
        """The request's path, its head and body read (bounded); None when the client went away."""
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > 1 << 16:
                return None
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        while len(rest) < min(length, 1 << 20):
            chunk = conn.recv(4096)
            if not chunk:
                break
            rest += chunk
        parts = lines[0].split(" ")
        return parts[1] if len(parts) > 1 else "/"

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self.stop.wait(DRIP_PAUSE):
                return
            conn.sendall(data[i:i + 1])

    # -- scenarios: each returns True when the connection may serve another request ---------------

    def _drip_headers(self, conn: socket.socket, path: str) -> bool:
        self._drip(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Drip: " + b"a" * 100000)
        return False

    def _drip_body(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
        self._drip(conn, b"b" * 100000)
        return False

    def _garbage_status(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x1b[31m\r\n\r\n")
        return False

    def _huge_headers(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        for _ in range(100000):           # ~100 MB if nobody stops reading
            if self.stop.is_set():
                break
            conn.sendall(line)
        return False

    def _huge_body(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n"
        for _ in range(1 << 16):          # 4 GiB if nobody stops reading
            if self.stop.is_set():
                break
            conn.sendall(chunk)
        return False

    def _endless_redirects(self, conn: socket.socket, path: str) -> bool:
        n = int(path.rsplit("/hop", 1)[1]) + 1 if "/hop" in path else 1
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: /hop{n}\r\nContent-Length: 0\r\n\r\n".encode())
        return True

    def _https_to_http(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(f"HTTP/1.1 301 Moved\r\nLocation: {self.http_url}{path}\r\nContent-Length: 0\r\n\r\n"
                     .encode())
        return True

    def _html(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
                     + str(len(HTML)).encode() + b"\r\n\r\n" + HTML)
        return True

    def _reset_mid_body(self, conn: socket.socket, path: str) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n" + b"r" * 1000)
        # SO_LINGER 0: close sends a RST instead of a FIN
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _never_answers(self, conn: socket.socket, path: str) -> bool:
        self.stop.wait(60)
        return False
