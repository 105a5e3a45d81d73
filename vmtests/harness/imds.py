"""A loopback metadata server that speaks EC2 IMDSv2: ``PUT /latest/api/token`` first, then every GET must carry
``X-aws-ec2-metadata-token`` (401 otherwise). Answers can change while a test runs (``set``/``update``), and every
request is logged for assertions. Bound to 127.0.0.1 only; guests reach it through the relay (relay.py)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSIONS = ("latest", "2021-03-23", "2018-09-24", "2016-09-02", "2009-04-04")
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


@dataclass
class Request:
    method: str
    path: str
    status: int
    token_ok: bool
    at: float


def ec2_tree(instance_id: str, hostname: str, mac: str, public_key: str | None = None,
             user_data: str | None = None, region: str = "eu-test-1") -> dict[str, Any]:
    """A typical instance's metadata, shaped as nested dicts (directories) and strings (files)."""
    meta: dict[str, Any] = {
        "ami-id": "ami-0123456789abcdef0",
        "instance-id": instance_id,
        "instance-type": "t3.micro",
        "local-hostname": hostname,
        "hostname": hostname,
        "local-ipv4": "169.254.2.15",
        "mac": mac,
        "placement": {"availability-zone": f"{region}a", "region": region},
        "network": {"interfaces": {"macs": {mac: {
            "device-number": "0", "interface-id": "eni-0123456789abcdef0", "local-ipv4s": "169.254.2.15",
            "mac": mac, "subnet-ipv4-cidr-block": "169.254.0.0/16", "vpc-ipv4-cidr-block": "169.254.0.0/16",
        }}}},
        "services": {"domain": "amazonaws.com", "partition": "aws"},
    }
    if public_key:
        meta["public-keys"] = {"0=vmtest": {"openssh-key": public_key}}
    document = {"instanceId": instance_id, "region": region, "availabilityZone": f"{region}a",
                "instanceType": "t3.micro", "imageId": "ami-0123456789abcdef0", "architecture": "x86_64"}
    tree: dict[str, Any] = {"meta-data": meta, "dynamic": {"instance-identity": {"document": json.dumps(document)}}}
    if user_data is not None:
        tree["user-data"] = user_data
    return tree


@dataclass
class ImdsServer:
    tree: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    require_token: bool = True
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._server: ThreadingHTTPServer | None = None

    # ---- answers -------------------------------------------------------------------------------------------
    def update(self, tree: Mapping[str, Any]) -> None:
        with self._lock:
            self.tree = dict(tree)

    def set(self, path: str, value: Any) -> None:
        """Set one answer, e.g. ``set("meta-data/instance-id", "i-2")``; intermediate directories are created."""
        parts = path.strip("/").split("/")
        with self._lock:
            node = self.tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value

    def lookup(self, path: str) -> tuple[int, str]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if not parts:
            return 200, "\n".join(VERSIONS) + "\n"
        if parts[0] not in VERSIONS:
            return 404, "Not Found\n"
        node: Any = self.tree
        for part in parts[1:]:
            if not isinstance(node, dict) or part not in node:
                return 404, "Not Found\n"
            node = node[part]
        if isinstance(node, dict):
            return 200, "\n".join(k + ("/" if isinstance(v, dict) else "") for k, v in node.items())
        return 200, str(node)

    # ---- tokens ---------------------------------------------------------------------------------------------
    def new_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self._tokens.get(token, 0) > time.monotonic()

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> int:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0].rstrip("/") != "/latest/api/token":
                    return self._log_reply("PUT", 403, "Forbidden\n", False)
                try:
                    ttl = int(self.headers.get(TOKEN_TTL_HEADER, ""))
                except ValueError:
                    return self._log_reply("PUT", 400, "missing or bad " + TOKEN_TTL_HEADER + "\n", False)
                if not 1 <= ttl <= 21600:
                    return self._log_reply("PUT", 400, "ttl out of range\n", False)
                self._log_reply("PUT", 200, server.new_token(ttl), True)

            def do_GET(self) -> None:  # noqa: N802
                token_ok = server.token_valid(self.headers.get(TOKEN_HEADER))
                if server.require_token and not token_ok:
                    return self._log_reply("GET", 401, "Unauthorized\n", False)
                status, body = server.lookup(self.path)
                self._log_reply("GET", status, body, token_ok)

            def _log_reply(self, method: str, status: int, body: str, token_ok: bool) -> None:
                with server._lock:
                    server.requests.append(Request(method, self.path, status, token_ok, time.time()))
                self._reply(status, body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # requests are kept in server.requests instead

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="imds", daemon=True).start()
        return int(self._server.server_address[1])

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metadata server not started")
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ImdsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
