from __future__ import annotations

import http.server
import threading

import pytest

from tests.conftest import needs_root
from tests.modules.sysmod_support import apply_twice, config_errors, fake_system, parse
from tether.module import ModuleError
from tether.modules import apt_configure as mod

KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmI0Efake\n=Y2oI\n-----END PGP PUBLIC KEY BLOCK-----\n"
MIRROR = "http://mirror.example/debian"


@pytest.fixture(autouse=True)
def amd64(root):
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/arch").write_text("amd64\n")


def test_good_and_bad_configs():
    cfg = parse(mod, {"apt": {"primary": [{"arches": ["default"], "uri": MIRROR}], "sources": {"x": None}}})
    assert cfg.apt.primary[0].uri == MIRROR and cfg.apt.sources["x"] == mod.Source()
    assert config_errors(mod.Config, {"apt": {"primary": [{"uri": MIRROR}]}}) == [
        "apt.primary[0].arches: missing required key"]
    assert config_errors(mod.Config, {"apt": {"sources": {"s": {"append": "yes"}}}}) == [
        "apt.sources.s.append: expected a boolean, got a string ('yes')"]
    assert any("not a valid regular expression" in e for e in config_errors(mod.Config, {"apt": {
        "add_apt_repo_match": "("}}))
    assert config_errors(mod.Config, {"apt": {"disable_suites": "updates"}}) == [
        "apt.disable_suites: expected a list of strings, got a string ('updates')"]


def test_classic_sources_list_with_primary_and_disabled_suites(make_ctx, root):
    (root / "etc/apt").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    data = {"apt": {"primary": [{"arches": ["amd64"], "uri": MIRROR}, {"arches": ["default"], "uri": "http://x"}],
                    "disable_suites": ["backports"]}}
    # the fixture's os-release has VERSION_CODENAME=bookworm
    assert apply_twice(mod, make_ctx(), data, root) == {"/etc/apt/sources.list": "changed"}
    assert (root / "etc/apt/sources.list").read_text() == (
        "# Written by tether (apt_configure).\n"
        f"deb {MIRROR} bookworm main\n"
        f"deb {MIRROR} bookworm-updates main\n"
        f"# suite disabled by tether: deb {MIRROR} bookworm-backports main\n"
        f"deb {MIRROR} bookworm-security main\n")


def test_deb822_image_keeps_deb822(make_ctx, root):
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text("Types: deb\nURIs: http://old\nSuites: bookworm\n")
    data = {"apt": {"security": [{"arches": ["default"], "uri": "http://sec.example/debian-security"}],
                    "disable_suites": ["$RELEASE-security"]}}
    changed = apply_twice(mod, make_ctx(), data, root)
    assert changed == {"/etc/apt/sources.list": "added", "/etc/apt/sources.list.d/debian.sources": "changed"}
    text = (root / "etc/apt/sources.list.d/debian.sources").read_text()
    assert "URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates bookworm-backports\n" in text
    assert ("URIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\nEnabled: no\n") in text
    assert (root / "etc/apt/sources.list").read_text().startswith("# tether: the debian sources are in")


def test_deb822_template_replaces_classic_list(make_ctx, root):
    (root / "etc/apt").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text("deb http://old bookworm main\n")
    tmpl = "Types: deb\nURIs: http://archive.ubuntu.com/ubuntu/\nSuites: $RELEASE\nComponents: main\n"
    changed = apply_twice(mod, make_ctx(), {"apt": {"sources_list": tmpl}}, root)
    assert changed == {"/etc/apt/sources.list": "changed", "/etc/apt/sources.list.d": "added",
                       "/etc/apt/sources.list.d/debian.sources": "added"}
    assert (root / "etc/apt/sources.list.d/debian.sources").read_text() == tmpl.replace("$RELEASE", "bookworm")


def test_preserve_keeps_the_image_sources_but_adds_sources(make_ctx, root):
    (root / "etc/apt").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text("deb http://image bookworm main\n")
    data = {"apt": {"preserve_sources_list": True, "primary": [{"arches": ["default"], "uri": MIRROR}],
                    "sources": {
                        "my-repo": {"source": "deb [signed-by=$KEY_FILE] $MIRROR $RELEASE multiverse", "key": KEY},
                        "extra.list": {"source": "deb http://a.example/ x main", "key": KEY},
                        "more": {"source": "deb http://b.example/ y main", "filename": "extra.list"}}}}
    changed = apply_twice(mod, make_ctx(), data, root)
    assert changed == {
        "/etc/apt/keyrings": "added", "/etc/apt/keyrings/tether-my-repo.asc": "added",
        "/etc/apt/sources.list.d": "added", "/etc/apt/sources.list.d/my-repo.list": "added",
        "/etc/apt/sources.list.d/extra.list": "added", "/etc/apt/trusted.gpg.d": "added",
        "/etc/apt/trusted.gpg.d/tether-extra.asc": "added"}
    assert (root / "etc/apt/sources.list").read_text() == "deb http://image bookworm main\n"
    assert (root / "etc/apt/sources.list.d/my-repo.list").read_text() == (
        f"deb [signed-by=/etc/apt/keyrings/tether-my-repo.asc] {MIRROR} bookworm multiverse\n")
    assert (root / "etc/apt/sources.list.d/extra.list").read_text() == (
        "deb http://a.example/ x main\ndeb http://b.example/ y main\n")
    assert (root / "etc/apt/keyrings/tether-my-repo.asc").read_text() == KEY


def test_append_false_overwrites_and_append_true_keeps(make_ctx, root):
    d = root / "etc/apt/sources.list.d"
    d.mkdir(parents=True)
    (d / "keep.list").write_text("deb http://image/ x main\n")
    (d / "over.list").write_text("deb http://image/ x main\n")
    data = {"apt": {"preserve_sources_list": True, "sources": {
        "keep": {"source": "deb http://new/ y main"}, "over": {"source": "deb http://new/ y main", "append": False}}}}
    apply_twice(mod, make_ctx(), data, root)
    assert (d / "keep.list").read_text() == "deb http://image/ x main\ndeb http://new/ y main\n"
    assert (d / "over.list").read_text() == "deb http://new/ y main\n"


def test_conf_and_proxies(make_ctx, root):
    data = {"apt": {"preserve_sources_list": True, "conf": "APT::Get::Assume-Yes \"true\";",
                    "proxy": "http://user:pw@proxy:3128/", "https_proxy": "https://proxy:3129/"}}
    changed = apply_twice(mod, make_ctx(), data, root)
    assert set(changed) == {"/etc/apt", "/etc/apt/apt.conf.d", "/etc/apt/apt.conf.d/94tether-config",
                            "/etc/apt/apt.conf.d/90tether-aptproxy"}
    proxy = root / "etc/apt/apt.conf.d/90tether-aptproxy"
    assert proxy.read_text() == ('Acquire::http::Proxy "http://user:pw@proxy:3128/";\n'
                                 'Acquire::https::Proxy "https://proxy:3129/";\n')
    assert proxy.stat().st_mode & 0o777 == 0o600
    # dropping them from the config removes the files
    changed = apply_twice(mod, make_ctx(), {"apt": {"preserve_sources_list": True}}, root)
    assert changed == {"/etc/apt/apt.conf.d/94tether-config": "removed",
                       "/etc/apt/apt.conf.d/90tether-aptproxy": "removed"}


def test_ppa_and_debconf_need_a_runnable_system(make_ctx, root, fake_runner):
    ctx = make_ctx()
    data = {"apt": {"preserve_sources_list": True, "sources": {"ppa": {"source": "ppa:curtin-dev/test-archive"}},
                    "debconf_selections": {"set1": "pkg pkg/flag boolean true"}}}
    assert apply_twice(mod, ctx, data, root) == {}
    assert any("add-apt-repository" in w for w in ctx.warnings)
    assert any("debconf_selections: not applied" in w for w in ctx.warnings)


@needs_root()
def test_ppa_and_debconf_run_in_the_target(make_ctx, root, fake_runner):
    fake_system(root)
    fake_runner.expect("chroot * add-apt-repository *").expect("chroot * debconf-set-selections")
    data = {"apt": {"preserve_sources_list": True, "sources": {"ppa": {"source": "ppa:curtin-dev/test-archive"}},
                    "debconf_selections": {"b": "pkg2 pkg2/x string y", "a": "pkg pkg/flag boolean true"}}}
    mod.handle(make_ctx(), parse(mod, data))
    assert fake_runner.commands() == [f"chroot {root} debconf-set-selections",
                                      f"chroot {root} add-apt-repository --yes --no-update ppa:curtin-dev/test-archive"]
    assert fake_runner.inputs[0] == "pkg pkg/flag boolean true\npkg2 pkg2/x string y\n"


class _KeyServer(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _KeyServer.paths.append(self.path)
        body = KEY.encode() if "0x0165013E" in self.path else b"no such key"
        self.send_response(200 if b"PGP" in body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_keyid_is_fetched_from_the_keyserver(make_ctx, root):
    srv = http.server.HTTPServer(("127.0.0.1", 0), _KeyServer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        ks = f"http://127.0.0.1:{srv.server_port}"
        data = {"apt": {"preserve_sources_list": True, "sources": {
            "r.list": {"source": "deb http://r/ x main", "keyid": "0165 013E", "keyserver": ks}}}}
        apply_twice(mod, make_ctx(), data, root)
        assert (root / "etc/apt/trusted.gpg.d/tether-r.asc").read_text() == KEY
        assert _KeyServer.paths[0] == "/pks/lookup?op=get&options=mr&search=0x0165013E"
        bad = {"apt": {"preserve_sources_list": True, "sources": {"q": {"keyid": "DEAD", "keyserver": ks}}}}
        with pytest.raises(ModuleError, match="apt.sources.q: key DEAD"):
            mod.handle(make_ctx(), parse(mod, bad))
    finally:
        srv.shutdown()


def test_mirror_search_takes_the_first_that_resolves(make_ctx, monkeypatch):
    monkeypatch.setattr(mod, "resolves", lambda host, timeout=2.0: host == "good.example")
    mirrors = parse(mod, {"apt": {"primary": [{"arches": ["default"], "search": [
        "http://bad.example/debian", "http://good.example/debian"]}]}}).apt.primary
    assert mod.pick_mirror(make_ctx(), mirrors, "amd64", "debian", "primary").uri == "http://good.example/debian"
    dns = parse(mod, {"apt": {"security": [{"arches": ["default"], "search_dns": True}]}}).apt.security
    monkeypatch.setattr(mod, "resolves", lambda host, timeout=2.0: host == "debian-security-mirror.localdomain")
    assert mod.pick_mirror(make_ctx(), dns, "arm64", "debian", "security").uri == (
        "http://debian-security-mirror.localdomain/debian")


def test_keyserver_urls():
    assert mod.keyserver_url(None, "AB CD") == (
        "https://keyserver.ubuntu.com/pks/lookup?op=get&options=mr&search=0xABCD")
    assert mod.keyserver_url("hkp://pgp.mit.edu", "1") == "http://pgp.mit.edu:11371/pks/lookup?op=get&options=mr&search=0x1"


def test_other_families_are_not_supported(make_ctx, root):
    (root / "etc/os-release").write_text("ID=fedora\n")
    ctx = make_ctx()
    assert apply_twice(mod, ctx, {"apt": {"conf": "x"}}, root) == {}
    assert ctx.warnings[0] == "apt: not supported on rhel (the apt key applies to Debian-family systems)"
