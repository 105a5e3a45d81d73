"""One HTTP/1.1 connection whose every wait ends at a deadline on the monotonic clock.

Name resolution, connect, the TLS handshake and every read take the time left until the caller's deadline as
their socket timeout, recomputed before each call, so a server that sends one byte a second cannot stretch a
wait: the deadline passes and the read fails. The response head (status line and headers) is capped in bytes and
lines, the body by the caller's byte limit. Bodies are read as they arrive (Content-Length, chunked, or until
the server closes); nothing here buffers more than one read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.http.urls import Target

MAX_HEAD = 64 * 1024          # status line + headers
MAX_HEADER_LINES = 100
MAX_CHUNK_LINE = 1024
READ_SIZE = 65536


class WireError(Exception):
    """What went wrong on the wire; ``kind`` tells the client whether a retry can help."""

    def __init__(self, message: str, kind: str = "net") -> None:
        super().__init__(message)
        # "net", "timeout": another try may help; "protocol" (a malformed or oversized head), "size" (the body
        # is over the caller's limit): it will not
        self.kind = kind


def _left(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise WireError(f"{what}: no answer within the time allowed", "timeout")
    return left


def _addresses(host: str, port: int, deadline: float) -> list[tuple[int, Any]]:
    """getaddrinfo bounded by the deadline: a numeric host needs no lookup; a name is resolved in a helper
    thread that the caller stops waiting for at the deadline (the C resolver cannot be interrupted)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [(fam, addr) for fam, _, _, _, addr in infos]
    except socket.gaierror:
        pass
    box: list[object] = []

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as e:
            box.append(e)

    import threading

    t = threading.Thread(target=lookup, name="tether-dns", daemon=True)
    t.start()
    t.join(_left(deadline, f"resolving {host}"))
    if not box:
        raise WireError(f"resolving {host}: no answer within the time allowed", "timeout")
    got = box[0]
    if isinstance(got, OSError):
        raise WireError(f"cannot resolve {host} ({got})")
    assert isinstance(got, list)
    return [(fam, addr) for fam, _, _, _, addr in got]


def open_socket(target: Target, deadline: float, proxy: Target | None = None) -> socket.socket:
    """A connected socket (TLS-wrapped and verified for https), within the deadline; through ``proxy`` when
    given (an https target through a CONNECT tunnel)."""
    sock = _tcp(proxy or target, deadline)
    if proxy is not None and target.scheme == "https":
        _tunnel(sock, target, proxy, deadline)
    if target.scheme != "https":
        return sock
    return _tls(sock, target, deadline)


def _tunnel(sock: socket.socket, target: Target, proxy: Target, deadline: float) -> None:
    host = f"[{target.host}]" if ":" in target.host else target.host
    lines = [f"CONNECT {host}:{target.port} HTTP/1.1", f"Host: {host}:{target.port}"]
    if proxy.auth:
        lines.append(f"Proxy-Authorization: {proxy.auth}")
    conn = Conn(sock, proxy.origin)
    try:
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), deadline)
        head = conn.read_head(deadline)
    except WireError as e:
        sock.close()
        raise WireError(f"proxy {proxy.host}:{proxy.port}: {e}", e.kind) from None
    if head.status != 200 or conn.buf:
        sock.close()
        raise WireError(f"proxy {proxy.host}:{proxy.port} refused a tunnel to {target.host}:{target.port} "
                        f"(HTTP {head.status})", "protocol")


def _tcp(target: Target, deadline: float) -> socket.socket:
    last: Exception | None = None
    sock: socket.socket | None = None
    for family, addr in _addresses(target.host, target.port, deadline):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.settimeout(_left(deadline, f"connecting to {target.host}:{target.port}"))
            s.connect(addr)
            sock = s
            break
        except WireError:
            s.close()
            raise
        except TimeoutError:
            s.close()
            last = TimeoutError("timed out")
        except OSError as e:
            s.close()
            last = e
    if sock is None:
        if isinstance(last, TimeoutError):
            raise WireError(f"connecting to {target.host}:{target.port}: no answer within the time allowed",
                            "timeout")
        why = last.strerror if isinstance(last, OSError) and last.strerror else last
        raise WireError(f"unreachable: cannot connect to {target.host}:{target.port} ({why})")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _tls(sock: socket.socket, target: Target, deadline: float) -> socket.socket:
    import ssl  # here: most requests (metadata) are plain http, and ssl costs at import

    ctx = ssl.create_default_context()      # certificate and host name verified; never turned off
    try:
        tls = ctx.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
        # CPython's handshake keeps one deadline across its reads, so this timeout bounds the whole handshake
        tls.settimeout(_left(deadline, "TLS handshake"))
        tls.do_handshake()
        return tls
    except ssl.SSLCertVerificationError as e:
        sock.close()
        raise WireError(f"TLS certificate not trusted ({e.verify_message})", "protocol") from None
    except TimeoutError:
        sock.close()
        raise WireError("TLS handshake: no answer within the time allowed", "timeout") from None
    except (OSError, ValueError) as e:
        sock.close()
        raise WireError(f"TLS handshake failed ({e})") from None


@dataclass
class Head:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)   # lower-case names; repeated ones joined by ", "
    version: str = "HTTP/1.1"


class Conn:
    """A socket with a read buffer; every read waits at most until the deadline given to it."""

    def __init__(self, sock: socket.socket, origin: tuple[str, str, int]) -> None:
        self.sock = sock
        self.origin = origin
        self.buf = bytearray()
        self.reusable = False
        self.used = 0

    def close(self) -> None:
        self.reusable = False
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self.sock.settimeout(_left(deadline, "sending the request"))
            try:
                n = self.sock.send(view)
            except TimeoutError:
                raise WireError("sending the request: no progress within the time allowed", "timeout") from None
            except OSError as e:
                raise WireError(f"sending the request failed ({e})") from None
            view = view[n:]

    def fill(self, deadline: float, what: str) -> bool:
        """Read what has arrived into the buffer; False at end of stream."""
        self.sock.settimeout(_left(deadline, what))
        try:
            data = self.sock.recv(READ_SIZE)
        except TimeoutError:
            raise WireError(f"{what}: no answer within the time allowed", "timeout") from None
        except OSError as e:
            raise WireError(f"{what}: connection failed ({e})") from None
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self, deadline: float) -> Head:
        """Status line and headers; interim 1xx answers are skipped."""
        while True:
            head = self._head_once(deadline)
            if not 100 <= head.status < 200:
                return head

    def _head_once(self, deadline: float) -> Head:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                raw, cut = bytes(self.buf[:end]), end + 4
                break
            end = self.buf.find(b"\n\n")
            if end >= 0:
                raw, cut = bytes(self.buf[:end]), end + 2
                break
            if len(self.buf) > MAX_HEAD:
                raise WireError(f"response headers larger than {MAX_HEAD} bytes", "protocol")
            if not self.fill(deadline, "waiting for the response headers"):
                if not self.buf:
                    raise WireError("the server closed the connection without answering")
                raise WireError("the server closed the connection in the middle of the response headers",
                                "protocol")
        if cut > MAX_HEAD:
            raise WireError(f"response headers larger than {MAX_HEAD} bytes", "protocol")
        del self.buf[:cut]
        lines = raw.decode("latin-1").replace("\r\n", "\n").split("\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise WireError(f"not an HTTP response (status line {_show(lines[0])})", "protocol")
        head = Head(int(parts[1]), parts[2].strip() if len(parts) > 2 else "", {}, parts[0])
        if len(lines) - 1 > MAX_HEADER_LINES:
            raise WireError(f"more than {MAX_HEADER_LINES} response headers", "protocol")
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise WireError(f"malformed response header line {_show(line)}", "protocol")
            key = name.lower()
            value = value.strip()
            head.headers[key] = f"{head.headers[key]}, {value}" if key in head.headers else value
        return head


def _show(text: str) -> str:
    """Server bytes in a message: quoted, control characters escaped, cut short."""
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


class Body:
    """A response body read as it arrives. ``deadline()`` gives the moment the next read must end by."""

    def __init__(self, conn: Conn, head: Head, method: str, limit: int, deadline: Callable[[], float]) -> None:
        self.conn = conn
        self.limit = limit
        self.deadline = deadline
        self.read_total = 0
        self.done = False
        self.chunked = False
        self.remaining: int | None = None        # bytes left in the body (or in this chunk when chunked)
        te = head.headers.get("transfer-encoding", "").lower()
        keep = head.version == "HTTP/1.1" and "close" not in head.headers.get("connection", "").lower()
        if method == "HEAD" or head.status in (204, 304):
            self.done = True
        elif te and te != "identity":
            if te.split(",")[-1].strip() != "chunked":
                raise WireError(f"unsupported Transfer-Encoding {_show(te)}", "protocol")
            self.chunked = True
            self.remaining = 0
        elif "content-length" in head.headers:
            cl = head.headers["content-length"].split(",")[0].strip()
            if not cl.isdigit():
                raise WireError(f"invalid Content-Length {_show(cl)}", "protocol")
            self.remaining = int(cl)
            if self.remaining > limit:
                raise WireError(f"response larger than {limit} bytes (Content-Length {self.remaining})", "size")
            self.done = self.remaining == 0
        else:
            keep = False           # the body ends when the server closes
        self.keep_alive = keep

    @property
    def length(self) -> int | None:
        return None if self.chunked else (self.remaining if self.read_total == 0 else None)

    def _count(self, n: int) -> None:
        self.read_total += n
        if self.read_total > self.limit:
            raise WireError(f"response larger than {self.limit} bytes", "size")

    def _need(self, what: str) -> None:
        if not self.conn.fill(self.deadline(), what):
            raise WireError(f"connection closed after {self.read_total} bytes of the body", "net")

    def _chunk_line(self) -> bytes:
        while True:
            i = self.conn.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.conn.buf[:i]).strip()
                del self.conn.buf[:i + 1]
                return line
            if len(self.conn.buf) > MAX_CHUNK_LINE:
                raise WireError("chunk size line too long", "protocol")
            self._need("reading the response body")

    def _next_chunk(self) -> None:
        if self.read_total:
            if self._chunk_line():                  # the CRLF after the previous chunk's data
                raise WireError("malformed chunked body", "protocol")
        line = self._chunk_line().split(b";", 1)[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            raise WireError(f"malformed chunk size {_show(line.decode('latin-1'))}", "protocol") from None
        if size == 0:
            for _ in range(MAX_HEADER_LINES):       # trailers, up to the empty line
                if not self._chunk_line():
                    self.done = True
                    return
            raise WireError(f"more than {MAX_HEADER_LINES} trailer lines", "protocol")
        self.remaining = size

    def read(self, n: int = READ_SIZE) -> bytes:
        """Up to ``n`` bytes of the body, b"" at its end."""
        while not self.done:
            if self.chunked and self.remaining == 0:
                self._next_chunk()
                continue
            if not self.conn.buf:
                if self.remaining is None:
                    if not self.conn.fill(self.deadline(), "reading the response body"):
                        self.done = True
                        return b""
                else:
                    self._need("reading the response body")
            take = min(n, len(self.conn.buf))
            if self.remaining is not None:
                take = min(take, self.remaining)
            data = bytes(self.conn.buf[:take])
            del self.conn.buf[:take]
            if self.remaining is not None:
                self.remaining -= take
                if self.remaining == 0 and not self.chunked:
                    self.done = True
            self._count(take)
            return data
        self.conn.reusable = self.keep_alive and not self.conn.buf
        return b""

    def read_all(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            data = self.read()
            if not data:
                return b"".join(chunks)
            chunks.append(data)
