"""A loopback image server that honours ``Range: bytes=A-B`` and counts what it sends (headers and bodies),
the requests it answers and the most it answered at once. For the adaptive-download tests and benchmarks.

``python -m tests.engine.rangeserver FILE...`` serves files in a process of its own (it prints its port); GET
``/_stats`` answers the counters as JSON, ``/_reset`` clears them first.

``files`` maps a URL path's last segment to a file on disk; unknown names are 404. ``ranges=False`` makes it
ignore Range (a plain server: 200 and the whole file); ``multi=False`` answers a request for several ranges
with the whole file (200), as some servers do; otherwise several ranges are answered as
``multipart/byteranges``. ``corrupt`` maps a name to byte offsets served flipped.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
BLOCK = 1 << 20


class _Counting:
    def __init__(self, inner: BinaryIO, server: RangeServer) -> None:
        self.inner = inner
        self.server = server

    def write(self, b: bytes | memoryview) -> int:
        n = self.inner.write(b)
        with self.server.lock:
            self.server.bytes_sent += len(b)
        return n

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RangeServer:
    def __init__(self, files: dict[str, Path], ranges: bool = True, multi: bool = True) -> None:
        self.files = dict(files)
        self.ranges = ranges
        self.multi = multi
        self.corrupt: dict[str, set[int]] = {}
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self.requests: list[tuple[str, str | None]] = []
        self.active = 0
        self.peak = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True   # as production servers do on kept-alive connections

            def setup(self) -> None:
                super().setup()
                self.wfile = _Counting(self.wfile, server)  # type: ignore[assignment]

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with server.lock:
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    server.handle(self)
                finally:
                    with server.lock:
                        server.active -= 1

        class Httpd(ThreadingHTTPServer):
            request_queue_size = 4096
            daemon_threads = True

        self.httpd = Httpd(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.requests.clear()
            self.peak = self.active

    def __enter__(self) -> RangeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        rng = h.headers.get("Range")
        name = h.path.rsplit("/", 1)[-1]
        if name in ("_stats", "_reset"):   # for benchmarks that run the server in another process
            if name == "_reset":
                self.reset()
            with self.lock:
                body = json.dumps({"bytes": self.bytes_sent, "requests": len(self.requests),
                                   "peak": self.peak}).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        with self.lock:
            self.requests.append((name, rng))
        path = self.files.get(name)
        if path is None or not path.exists():
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        size = path.stat().st_size
        start, end = 0, size
        spans = _spans(rng or "", size) if self.ranges and self.multi else None
        if spans is not None and len(spans) > 1:
            self._multipart(h, path, name, spans, size)
            return
        m = _RANGE.match(rng or "")
        if m and self.ranges:
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            if start >= size or end <= start:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(end - start))
        h.send_header("ETag", f'"{int(path.stat().st_mtime_ns)}"')
        h.send_header("Accept-Ranges", "bytes" if self.ranges else "none")
        h.end_headers()
        self._send(h, path, name, [(start, end)], lambda _s, _e: b"")

    def _multipart(self, h: BaseHTTPRequestHandler, path: Path, name: str, spans: list[tuple[int, int]],
                   size: int) -> None:
        boundary = "tether-test-boundary"

        def head(s: int, e: int) -> bytes:
            return (f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Range: bytes {s}-{e - 1}/{size}\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        length = sum(len(head(s, e)) + e - s for s, e in spans) + len(tail)
        h.send_response(206)
        h.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        h.send_header("Content-Length", str(length))
        h.end_headers()
        self._send(h, path, name, spans, head)
        h.wfile.write(tail)

    def _send(self, h: BaseHTTPRequestHandler, path: Path, name: str, spans: list[tuple[int, int]],
              head: Callable[[int, int], bytes]) -> None:
        flips = self.corrupt.get(name, set())
        fd = os.open(path, os.O_RDONLY)
        try:
            for start, end in spans:
                out = bytearray(head(start, end))
                pos = start
                while pos < end:
                    block = bytearray(os.pread(fd, min(BLOCK, end - pos), pos))
                    for off in flips:
                        if pos <= off < pos + len(block):
                            block[off - pos] ^= 0xFF
                    out += block
                    pos += len(block)
                    if len(out) >= BLOCK:
                        h.wfile.write(out)
                        out = bytearray()
                if out:
                    h.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            os.close(fd)


def _spans(rng: str, size: int) -> list[tuple[int, int]] | None:
    """[start, end) of each range of ``bytes=A-B,C-D``; None when it is not such a header."""
    if not rng.startswith("bytes="):
        return None
    out = []
    for part in rng[6:].split(","):
        a, sep, b = part.strip().partition("-")
        if not sep or not a.isdigit() or not (b.isdigit() or b == ""):
            return None
        out.append((int(a), min(size, int(b) + 1) if b else size))
    return out


def main(argv: list[str]) -> None:
    files = {Path(a).name: Path(a) for a in argv}
    with RangeServer(files) as srv:
        print(srv.httpd.server_address[1], flush=True)
        sys.stdin.read()   # until the parent closes our stdin


if __name__ == "__main__":
    main(sys.argv[1:])
