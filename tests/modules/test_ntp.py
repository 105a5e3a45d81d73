from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import needs_root, needs_tool
from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.module import ModuleError
from tether.modules import ntp as mod
from tether.runner import Runner

EXAMPLE2 = {
    "ntp": {
        "enabled": True, "ntp_client": "myntpclient",
        "config": {"confpath": "/etc/myntpclient/myntpclient.conf", "check_exe": "myntpclientd",
                   "packages": ["myntpclient"], "service_name": "myntpclient",
                   "template": "## template:jinja\n# My NTP Client config\n{% for pool in pools -%}\n"
                               "pool {{pool}} iburst\n"
                               "{% endfor %}{% for server in servers -%}\nserver {{server}} iburst\n{% endfor %}"
                               "{% for cidr in allow -%}\nallow {{cidr}}\n{% endfor %}"},
        "pools": ["0.int.pool.ntp.org"], "servers": ["ntp.server.local", "192.168.23.2"],
        "allow": ["192.168.23.0/32"], "peers": ["km001"],
    }
}


def _exe(root, path):
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\n")
    p.chmod(0o755)


def _unit(root, name, wanted_by="multi-user.target"):
    p = root / "lib/systemd/system" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"[Unit]\nDescription={name}\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy={wanted_by}\n")


def test_good_and_bad_configs():
    assert parse(mod, {"ntp": None}).ntp is None  # handle() reads it as the defaults
    assert parse(mod, EXAMPLE2).ntp.config.service_name == "myntpclient"
    assert config_errors(mod.Config, {"ntp": {"servers": "a.example"}}) == [
        "ntp.servers: expected a list of strings, got a string ('a.example')"]
    assert any("twice" in e for e in config_errors(mod.Config, {"ntp": {"pools": ["a", "a"]}}))
    assert any("not an address or CIDR" in e for e in config_errors(mod.Config, {"ntp": {"allow": ["10.0.0.0/33"]}}))
    assert config_errors(mod.Config, {"ntp": {"enabled": "yes"}}) == [
        "ntp.enabled: expected a boolean, got a string ('yes')"]


def test_default_is_timesyncd_with_distro_pools(make_ctx, root, fake_runner):
    _exe(root, "/lib/systemd/systemd-timesyncd")
    changed = apply_twice(mod, make_ctx(), {"ntp": None}, root)
    assert changed == {"/etc/systemd": "added", "/etc/systemd/timesyncd.conf.d": "added",
                       "/etc/systemd/timesyncd.conf.d/tether.conf": "added"}
    text = (root / "etc/systemd/timesyncd.conf.d/tether.conf").read_text()
    assert text.endswith("[Time]\nNTP=0.debian.pool.ntp.org 1.debian.pool.ntp.org 2.debian.pool.ntp.org "
                         "3.debian.pool.ntp.org\n")
    assert fake_runner.calls == []  # no unit in the root: nothing to enable


def test_missing_client_is_installed_or_reported(make_ctx, root):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"ntp": {"ntp_client": "chrony", "servers": ["time.example"]}}))
    assert any("chrony not installed" in w for w in ctx.warnings)
    assert "server time.example iburst" in (root / "etc/chrony/chrony.conf").read_text()


def test_auto_picks_installed_chrony_and_enables_it(make_ctx, root, fake_runner):
    _exe(root, "/usr/sbin/chronyd")
    _unit(root, "chrony.service")
    fake_runner.expect("systemctl --root=* enable chrony")
    data = {"ntp": {"servers": ["ntp.example"], "pools": ["pool.example"], "peers": ["peer1"],
                    "allow": ["10.0.0.0/8"]}}
    changed = apply_twice(mod, make_ctx(), data, root)
    assert changed == {"/etc/chrony": "added", "/etc/chrony/chrony.conf": "added"}
    text = (root / "etc/chrony/chrony.conf").read_text()
    assert "pool pool.example iburst\nserver ntp.example iburst\npeer peer1\nallow 10.0.0.0/8\n" in text
    assert fake_runner.commands() == [f"systemctl --root={root} enable chrony"] * 2


def test_ntpd_restricts_allowed_networks(make_ctx, root):
    _exe(root, "/usr/sbin/ntpd")
    apply_twice(mod, make_ctx(), {"ntp": {"ntp_client": "ntp", "allow": ["192.168.23.0/24"]}}, root)
    text = (root / "etc/ntp.conf").read_text()
    assert "restrict 192.168.23.0 mask 255.255.255.0 nomodify notrap nopeer noquery" in text
    assert "pool 0.debian.pool.ntp.org iburst" in text


def test_custom_client_with_jinja_template(make_ctx, root):
    pytest.importorskip("jinja2")
    _exe(root, "/usr/sbin/myntpclientd")
    changed = apply_twice(mod, make_ctx(), EXAMPLE2, root)
    assert changed == {"/etc/myntpclient": "added", "/etc/myntpclient/myntpclient.conf": "added"}
    assert (root / "etc/myntpclient/myntpclient.conf").read_text() == (
        "# My NTP Client config\npool 0.int.pool.ntp.org iburst\nserver ntp.server.local iburst\n"
        "server 192.168.23.2 iburst\nallow 192.168.23.0/32\n")


def test_unknown_client_without_template_fails(make_ctx):
    with pytest.raises(ModuleError, match="not a client tether knows"):
        mod.handle(make_ctx(), parse(mod, {"ntp": {"ntp_client": "mystery"}}))


def test_disabled_changes_nothing(make_ctx, root):
    assert apply_twice(mod, make_ctx(), {"ntp": {"enabled": False, "servers": ["x"]}}, root) == {}


def test_live_restarts_only_when_config_changed(make_ctx, root, fake_runner):
    _exe(root, "/lib/systemd/systemd-timesyncd")
    _unit(root, "systemd-timesyncd.service")
    fake_runner.expect("systemctl enable systemd-timesyncd").expect("systemctl restart systemd-timesyncd")
    ctx = make_ctx(live=True)
    mod.handle(ctx, parse(mod, {"ntp": {"servers": ["a.example"]}}))
    mod.handle(ctx, parse(mod, {"ntp": {"servers": ["a.example"]}}))
    assert fake_runner.commands("systemctl restart") == ["systemctl restart systemd-timesyncd"]


@needs_root()
@needs_tool("systemctl")
def test_real_systemctl_root_enable(make_ctx, root):
    _exe(root, "/lib/systemd/systemd-timesyncd")
    _unit(root, "systemd-timesyncd.service", wanted_by="sysinit.target")
    ctx = make_ctx(runner=Runner())
    mod.handle(ctx, parse(mod, {"ntp": {"servers": ["a.example"]}}))
    link = root / "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"
    if not os.path.islink(link):
        shutil.rmtree(root / "etc/systemd/system", ignore_errors=True)
        pytest.fail(f"systemctl --root did not enable the unit: {ctx.warnings}")
    assert os.readlink(link).endswith("/systemd-timesyncd.service")
