from __future__ import annotations

import http.server
import threading
import urllib.parse

import pytest

from tests.modules.sysmod_support import config_errors, parse
from tether.modules import phone_home as mod


class _Handler(http.server.BaseHTTPRequestHandler):
    posts: list[tuple[str, dict[str, list[str]]]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        _Handler.posts.append((self.path, urllib.parse.parse_qs(body)))
        self.send_response(_Handler.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Handler.posts = []
    _Handler.status = 200
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def test_good_and_bad_configs():
    assert parse(mod, {"phone_home": {"url": "http://x/", "post": "all"}}).phone_home.tries == 10
    assert config_errors(mod.Config, {"phone_home": {"post": "all"}}) == ["phone_home.url: missing required key"]
    assert config_errors(mod.Config, {"phone_home": {"url": "http://x/", "post": ["pub_key_dsa"]}}) == [
        "phone_home.post[0]: expected one of 'pub_key_rsa', 'pub_key_ecdsa', 'pub_key_ed25519', 'instance_id', "
        "'hostname', 'fqdn', got a string ('pub_key_dsa')"]
    assert any("http:// or https://" in e for e in config_errors(mod.Config, {"phone_home": {"url": "ftp://x"}}))
    assert any("at least 1" in e for e in config_errors(mod.Config, {"phone_home": {"url": "http://x", "tries": 0}}))


def test_posts_selected_keys(make_ctx, root, server):
    (root / "etc/ssh").mkdir(exist_ok=True)
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAAfake root@h\n")
    (root / "etc/hostname").write_text("web1\n")
    ctx = make_ctx(live=True, cloud_config={"fqdn": "web1.example.com"})
    data = {"phone_home": {"url": server + "/$INSTANCE_ID/", "post": ["pub_key_ed25519", "pub_key_rsa",
                                                                       "instance_id", "hostname", "fqdn"]}}
    mod.handle(ctx, parse(mod, data))
    assert _Handler.posts == [("/iid-test-0001/", {
        "pub_key_ed25519": ["ssh-ed25519 AAAAfake root@h"], "pub_key_rsa": ["N/A"], "instance_id": ["iid-test-0001"],
        "hostname": ["web1"], "fqdn": ["web1.example.com"]})]
    assert ctx.warnings == []


def test_failures_are_bounded_and_warned(make_ctx, server, monkeypatch):
    monkeypatch.setattr(mod, "PAUSE", 0.01)
    _Handler.status = 503
    ctx = make_ctx(live=True)
    mod.handle(ctx, parse(mod, {"phone_home": {"url": server + "/", "tries": 3}}))
    assert len(_Handler.posts) == 3
    assert len(ctx.warnings) == 1 and "failed after 3 tries" in ctx.warnings[0]


def test_offline_posts_nothing(make_ctx, server):
    mod.handle(make_ctx(), parse(mod, {"phone_home": {"url": server + "/"}}))
    assert _Handler.posts == []
