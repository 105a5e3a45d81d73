"""A loopback HTTP server for images, with Range support and injected faults.

Paths: ``/<name>`` serves a file; ``/drop-once@N/<name>`` closes the Nth request from byte 0 half-way;
``/stall-once@N/<name>`` stops sending half-way for ``stall`` seconds on the Nth request from byte 0; ``/long/<name>``
announces more bytes than it has (wrong Content-Length); ``/norange/<name>`` ignores Range;
anything unknown is a 404.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FaultServer:
    def __init__(self, files: dict[str, Path], stall: float = 3.0) -> None:
        self.files = files
        self.stall = stall
        self.requests: list[tuple[str, str | None]] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def nth(self, key: str, n: int) -> bool:
        """True on the nth full (non-Range) request for ``key``."""
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            return self._seen[key] == n

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        rng = h.headers.get("Range")
        self.requests.append((h.path, rng))
        parts = h.path.strip("/").split("/")
        fault, name = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        fault, _, nth = fault.partition("@")
        fire = int(nth or 1)
        path = self.files.get(name)
        if path is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = path.read_bytes()
        start = 0
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and fault != "norange":
            start = int(m.group(1))
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        body = data[start:]
        claimed = len(body) + (65536 if fault == "long" else 0)
        h.send_header("Content-Length", str(claimed))
        h.send_header("ETag", '"v1"')
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        half = len(body) // 2
        try:
            if fault == "drop-once" and start == 0 and self.nth(h.path, fire):
                h.wfile.write(body[:half])
                h.wfile.flush()
                h.close_connection = True
                return
            if fault == "stall-once" and start == 0 and self.nth(h.path, fire):
                h.wfile.write(body[:half])
                h.wfile.flush()
                time.sleep(self.stall)
                h.close_connection = True
                return
            h.wfile.write(body)
            if fault == "long":
                h.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass
