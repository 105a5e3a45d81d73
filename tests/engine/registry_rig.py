"""A real distribution registry (Debian's ``docker-registry``) on a random loopback port, a pusher speaking the
OCI distribution push API, and a token service for the registry's ``auth: token`` mode (JWTs signed with openssl).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tether.http import request

REGISTRY_BIN = "/usr/bin/docker-registry"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"     # what `oras push REF file` gives a file
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_registry() -> None:
    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} is missing (Debian package docker-registry; scripts/setup-env installs it)")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Registry:
    """One registry process; ``auth`` is the registry's ``auth:`` section (None: anonymous)."""

    work: Path
    auth: dict[str, Any] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    push_auth: str | None = None      # the Authorization header the pusher sends

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def start(self) -> Registry:
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cfg: dict[str, Any] = {
            "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.work / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "test-secret-not-used-for-anything"},
        }
        if self.auth:
            cfg["auth"] = self.auth
        conf = self.work / "config.yml"
        conf.write_text(json.dumps(cfg))   # JSON is YAML
        log = open(self.work / "registry.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(conf)], stdout=log, stderr=log)
        log.close()
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.work / 'registry.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.work / "storage/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    # --- pushing (OCI distribution spec: POST + PUT monolithic uploads, PUT manifest) -----------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self.push_auth:
            h["Authorization"] = self.push_auth
        return h

    def push_blob(self, repo: str, data: bytes) -> dict[str, Any]:
        digest = sha256(data)
        resp = request(f"{self.base}/v2/{repo}/blobs/uploads/", method="POST", headers=self._headers(), data=b"",
                       timeout=30)
        assert resp.status == 202, resp.status
        loc = urllib.parse.urljoin(self.base, resp.headers["location"])
        sep = "&" if "?" in loc else "?"
        resp = request(f"{loc}{sep}digest={urllib.parse.quote(digest)}", method="PUT", data=data, timeout=60,
                       headers=self._headers({"Content-Type": "application/octet-stream"}))
        assert resp.status == 201, resp.status
        return {"mediaType": LAYER_TYPE, "digest": digest, "size": len(data)}

    def push_manifest(self, repo: str, ref: str, doc: dict[str, Any]) -> str:
        body = json.dumps(doc).encode()
        resp = request(f"{self.base}/v2/{repo}/manifests/{ref}", method="PUT", data=body, timeout=30,
                       headers=self._headers({"Content-Type": str(doc["mediaType"])}))
        assert resp.status == 201, resp.status
        return sha256(body)

    def push_artifact(self, repo: str, tag: str, data: bytes, title: str,
                      media_type: str = LAYER_TYPE) -> tuple[str, str]:
        """What ``oras push REPO:TAG title`` makes: an empty config and one layer. (manifest, layer) digests."""
        config = self.push_blob(repo, b"{}")
        layer = self.push_blob(repo, data)
        layer.update(mediaType=media_type, annotations={"org.opencontainers.image.title": title})
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.tether.test",
               "config": {**config, "mediaType": EMPTY_CONFIG}, "layers": [layer]}
        return self.push_manifest(repo, tag, doc), layer["digest"]


@contextlib.contextmanager
def running(work: Path, auth: dict[str, Any] | None = None, push_auth: str | None = None) -> Iterator[Registry]:
    need_registry()
    reg = Registry(work, auth, push_auth=push_auth).start()
    try:
        yield reg
    finally:
        reg.stop()


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (the registry's htpasswd auth accepts only bcrypt)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # libxcrypt's bcrypt; the module is deprecated (gone in Python 3.13)
        except ImportError:
            crypt = None  # type: ignore[assignment]
    if crypt is not None:
        return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"
    if shutil.which("htpasswd") is None:
        pytest.skip("no bcrypt for the htpasswd file: neither Python's crypt module nor htpasswd (apache2-utils)")
    return subprocess.run(["htpasswd", "-nbB", user, password], check=True, capture_output=True,
                          text=True).stdout.strip() + "\n"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- token service ------------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Issues registry JWTs (RS256, x5c header) to one user; anonymous requests get 401."""

    work: Path
    user: str
    password: str
    service: str = "tether-test-registry"
    issuer: str = "tether-test-issuer"
    port: int = 0
    asked: list[dict[str, Any]] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self.key = self.work / "token.key"
        self.cert = self.work / "token.crt"
        self.work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=tether-test-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert)}}

    def mint(self, scope: str) -> str:
        kind, name, actions = scope.split(":", 2)
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": self.user, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": _b64(hashlib.sha256(f"{now}{scope}".encode()).digest()[:12]),
                  "access": [{"type": kind, "name": name, "actions": actions.split(",")}]}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing.encode(),
                             check=True, capture_output=True).stdout
        self.minted.append(f"{signing}.{_b64(sig)}")
        return self.minted[-1]

    def start(self) -> TokenService:
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                got = self.headers.get("Authorization")
                svc.asked.append({"query": q, "authorization": got})
                if got != basic(svc.user, svc.password):
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": svc.mint(q["scope"]), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Front:
    """A loopback server in front of a registry: passes requests through, and on blob GETs either redirects to
    ``storage`` (another origin, as hosted registries send blobs to object storage) or, ``drop_after`` set, sends
    only that many bytes of the first full answer and closes the connection."""

    upstream: Registry
    storage: str | None = None
    drop_after: int | None = None
    refuse: int = 0        # blob requests after the first (resumes, seeks) answered 401 as if the token expired
    port: int = 0
    blob_gets: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Front:
        import http.client
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _pass(self, method: str) -> None:
                if front.refuse and "/blobs/" in self.path and (method == "HEAD" or self.headers.get("Range")):
                    front.refuse -= 1
                    probe = http.client.HTTPConnection("127.0.0.1", front.upstream.port, timeout=30)
                    probe.request("GET", self.path)   # no credentials: the registry's own challenge
                    challenge = probe.getresponse().getheader("WWW-Authenticate", "")
                    probe.close()
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", challenge)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if method == "GET" and "/blobs/" in self.path:
                    front.blob_gets.append({"range": self.headers.get("Range", "")})
                    if front.storage is not None:
                        self.send_response(307)
                        self.send_header("Location", front.storage + self.path)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                conn = http.client.HTTPConnection("127.0.0.1", front.upstream.port, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization", "range")}
                conn.request(method, self.path, headers=hdrs)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                drop = (front.drop_after is not None and method == "GET" and "/blobs/" in self.path
                        and resp.status == 200 and len(body) > front.drop_after)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                if drop:
                    self.send_header("Connection", "close")
                self.end_headers()
                if method == "HEAD":
                    return
                if drop:
                    assert front.drop_after is not None
                    self.wfile.write(body[:front.drop_after])
                    front.drop_after = None   # once
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self._pass("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._pass("HEAD")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
