from __future__ import annotations

import logging

import pytest

from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.module import ModuleError
from tether.modules import wireguard as mod

PRIVATE = "kPq8wUrsxZ3uGv0Yjvq2eqAQv6mJm7sYpVjJ0g2ZK2Q="
CONTENT = f"[Interface]\nPrivateKey = {PRIVATE}\nAddress = 10.0.0.2/24\n[Peer]\nPublicKey = abc=\n"
CFG = {"wireguard": {"interfaces": [{"name": "wg0", "config_path": "/etc/wireguard/wg0.conf", "content": CONTENT}],
                     "readinessprobe": ["ping -c1 10.0.0.1", "nc -z apt.internal 443"]}}


def _tools(root):
    unit = root / "usr/lib/systemd/system/wg-quick@.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/wg-quick up %i\n")
    wg = root / "usr/bin/wg"
    wg.parent.mkdir(parents=True, exist_ok=True)
    wg.write_text("#!/bin/false\n")
    wg.chmod(0o755)


def test_good_and_bad_configs():
    assert parse(mod, CFG).wireguard.interfaces[0].unit == "wg-quick@wg0.service"
    assert config_errors(mod.Config, {"wireguard": {"interfaces": [{"name": "wg0", "config_path": "/x"}]}}) == [
        "wireguard.interfaces[0].content: missing required key"]
    assert config_errors(mod.Config, {"wireguard": {"interfaces": []}}) == [
        "wireguard: interfaces must list at least one interface"]
    assert config_errors(mod.Config, {"wireguard": {"interfaces": [
        {"name": "a-very-long-interface", "config_path": "/etc/wireguard/x.conf", "content": ""}]}}) == [
        "wireguard.interfaces[0]: name 'a-very-long-interface' is not a WireGuard interface name "
        "(1-15 of a-z A-Z 0-9 _=+.-)"]
    assert config_errors(mod.Config, {"wireguard": {"interfaces": [
        {"name": "wg0", "config_path": "../wg0.conf", "content": ""}]}}) == [
        "wireguard.interfaces[0]: config_path '../wg0.conf' must be an absolute file path"]
    two = {"name": "wg0", "config_path": "/etc/wireguard/wg0.conf", "content": ""}
    assert config_errors(mod.Config, {"wireguard": {"interfaces": [two, two]}}) == [
        "wireguard: interface 'wg0' is listed more than once"]


def test_offline_writes_a_private_config_and_enables_the_unit(make_ctx, root, fake_runner, caplog):
    _tools(root)
    fake_runner.expect("systemctl --root=* enable wg-quick@wg0.service")
    caplog.set_level(logging.DEBUG)
    ctx = make_ctx()
    changed = apply_twice(mod, ctx, CFG, root)
    assert changed == {"/etc/wireguard": "added", "/etc/wireguard/wg0.conf": "added"}
    conf = root / "etc/wireguard/wg0.conf"
    assert conf.read_text() == CONTENT
    assert conf.stat().st_mode & 0o777 == 0o600 and conf.parent.stat().st_mode & 0o777 == 0o700
    assert fake_runner.commands() == [f"systemctl --root={root} enable wg-quick@wg0.service"] * 2
    assert PRIVATE not in caplog.text and ctx.warnings == []


def test_live_enables_restarts_and_probes(make_ctx, root, fake_runner):
    _tools(root)
    fake_runner.expect("systemctl *").expect("/bin/sh -c *")
    mod.handle(make_ctx(live=True), parse(mod, CFG))
    assert fake_runner.commands() == ["systemctl enable wg-quick@wg0.service", "systemctl restart wg-quick@wg0.service",
                                      "/bin/sh -c ping -c1 10.0.0.1", "/bin/sh -c nc -z apt.internal 443"]


def test_failed_probe_is_an_error_naming_it(make_ctx, root, fake_runner):
    _tools(root)
    fake_runner.expect("systemctl *").expect("/bin/sh -c ping *", code=1, stderr="100% packet loss")
    fake_runner.expect("/bin/sh -c nc *")
    with pytest.raises(ModuleError, match="readinessprobe 'ping -c1 10.0.0.1': .*100% packet loss"):
        mod.handle(make_ctx(live=True), parse(mod, CFG))
    assert fake_runner.commands()[-1] == "/bin/sh -c nc -z apt.internal 443"


def test_without_wireguard_tools_the_config_is_still_written(make_ctx, root, fake_runner):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, CFG))
    assert (root / "etc/wireguard/wg0.conf").read_text() == CONTENT
    assert ctx.warnings == [
        f"wireguard: wireguard-tools not installed, {root} holds no runnable system",
        f"wireguard: wg0 not enabled, {root} has no wg-quick@.service (wireguard-tools missing)"]
    assert fake_runner.calls == []


def test_config_path_wg_quick_does_not_read_is_reported(make_ctx, root, fake_runner):
    _tools(root)
    fake_runner.expect("systemctl *")
    ctx = make_ctx()
    data = {"wireguard": {"interfaces": [{"name": "wg1", "config_path": "/srv/wg/wg1.conf", "content": CONTENT}]}}
    mod.handle(ctx, parse(mod, data))
    assert ctx.warnings == ["wireguard: wg-quick@wg1.service reads /etc/wireguard/wg1.conf, not /srv/wg/wg1.conf"]
    assert (root / "srv/wg/wg1.conf").stat().st_mode & 0o777 == 0o600
