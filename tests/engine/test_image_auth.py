"""Image servers that need credentials get them from configuration, never from the URL; image URLs (which may
carry tokens in their query) are shown redacted in errors and logs. Loopback only."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tether.engine import oci_config, preflight
from tether.engine.hostconfig import OsImage
from tether.engine.images import ImageHashError
from tether.engine.sources import ImageSourceError, open_source
from tether.target import Target

USER, PASSWORD = "fleet", "s3cret-Image-Pass"
BODY = os.urandom(256 << 10)


@pytest.fixture
def server() -> Iterator[str]:
    want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.headers.get("Authorization") != want:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="images"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        oci_config.use(None)


def _read(url: str) -> bytes:
    src = open_source(url, timeout=5, retries=1)
    out = bytearray()
    buf = memoryview(bytearray(1 << 16))
    try:
        while n := src.readinto(buf):
            out += buf[:n]
    finally:
        src.close()
    return bytes(out)


def test_credentials_come_from_the_configuration_not_the_url(server: str, tmp_path: Path) -> None:
    root = Target.at(tmp_path / "root")
    oci_config.use(root)
    url = f"http://{server}/v2.img"
    with pytest.raises(ImageSourceError, match="401"):
        _read(url)
    root.write(oci_config.REGISTRIES_FILE, json.dumps({"auths": {server: {"username": USER,
                                                                          "password": PASSWORD}}}), mode=0o600)
    assert _read(url) == BODY
    # a credentials file others can read is refused, with the reason
    os.chmod(root.path(oci_config.REGISTRIES_FILE), 0o644)
    with pytest.raises(oci_config.RegistryConfigError) as e:
        _read(url)
    assert PASSWORD not in str(e.value)


def test_image_urls_are_redacted_in_errors_and_logs(server: str, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    root = Target.at(tmp_path / "root")
    oci_config.use(root)
    root.write(oci_config.REGISTRIES_FILE, json.dumps({"auths": {server: {"username": USER,
                                                                          "password": PASSWORD}}}), mode=0o600)
    token = "sig=Tok3nValue"
    image = OsImage(url=f"http://{server}/v2.img?{token}", sha256="0" * 64)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageHashError) as e:
        preflight.verify_hash(image, {"timeout": 5.0, "retries": 1.0})
    assert "nothing was written" in str(e.value) and "v2.img" in str(e.value)
    assert token not in str(e.value) and token not in caplog.text and PASSWORD not in caplog.text
    good = OsImage(url=f"http://{server}/v2.img?{token}", sha256=hashlib.sha256(BODY).hexdigest())
    preflight.verify_hash(good, {"timeout": 5.0, "retries": 1.0})
    assert "verified before writing" in caplog.text and token not in caplog.text
