"""A loopback image server that honours ``Range: bytes=A-B`` and counts what it sends (headers and bodies),
the requests it answers and the most it answered at once. For the adaptive-download tests and benchmarks.

``files`` maps a URL path's last segment to a file on disk; unknown names are 404. ``ranges=False`` makes it
ignore Range (a plain server: 200 and the whole file). ``corrupt`` maps a name to byte offsets served flipped.
"""

from __future__ import annotations

import os
import re
import threading
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
    def __init__(self, files: dict[str, Path], ranges: bool = True) -> None:
        self.files = dict(files)
        self.ranges = ranges
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
        flips = self.corrupt.get(name, set())
        fd = os.open(path, os.O_RDONLY)
        try:
            pos = start
            while pos < end:
                block = bytearray(os.pread(fd, min(BLOCK, end - pos), pos))
                for off in flips:
                    if pos <= off < pos + len(block):
                        block[off - pos] ^= 0xFF
                h.wfile.write(block)
                pos += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            os.close(fd)
