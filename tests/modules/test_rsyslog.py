from __future__ import annotations

from tests.modules.sysmod_support import apply_twice, config_errors, parse
from tether.modules import rsyslog as mod

EXAMPLE2 = {"rsyslog": {
    "config_dir": "/opt/etc/rsyslog.d", "config_filename": "99-late-cloud-config.conf",
    "configs": ["*.* @@192.158.1.1", {"content": "*.*   @@192.0.2.1:10514", "filename": "01-example.conf"},
                {"content": "*.*   @@syslogd.example.com\n"}],
    "remotes": {"juju": "10.0.4.1", "maas": "192.168.1.1"},
    "service_reload_command": ["your", "syslog", "restart", "command"]}}


def test_good_and_bad_configs():
    assert parse(mod, EXAMPLE2).rsyslog.service_reload_command == ("your", "syslog", "restart", "command")
    assert parse(mod, {"rsyslog": {"service_reload_command": "auto"}}).rsyslog.service_reload_command == "auto"
    assert config_errors(mod.Config, {"rsyslog": {"service_reload_command": "restart"}}) == [
        "rsyslog.service_reload_command: expected one of 'auto' or a list of strings, got a string ('restart')"]
    assert config_errors(mod.Config, {"rsyslog": {"configs": [{"filename": "x.conf"}]}}) == [
        "rsyslog.configs[0].content: missing required key"]
    assert any("remotes.bad" in e for e in config_errors(mod.Config, {"rsyslog": {"remotes": {"bad": "a b c"}}}))


def test_files_written_whole(make_ctx, root):
    changed = apply_twice(mod, make_ctx(), EXAMPLE2, root)
    assert changed == {"/opt": "added", "/opt/etc": "added", "/opt/etc/rsyslog.d": "added",
                       "/opt/etc/rsyslog.d/99-late-cloud-config.conf": "added",
                       "/opt/etc/rsyslog.d/01-example.conf": "added"}
    assert (root / "opt/etc/rsyslog.d/99-late-cloud-config.conf").read_text() == (
        "*.* @@192.158.1.1\n*.*   @@syslogd.example.com\n*.* @10.0.4.1 # juju\n*.* @192.168.1.1 # maas\n")
    assert (root / "opt/etc/rsyslog.d/01-example.conf").read_text() == "*.*   @@192.0.2.1:10514\n"


def test_remote_forms():
    assert mod.remote_line("r", "kern.* @@[fd00::1]:10514") == "kern.* @@[fd00::1]:10514 # r"
    assert mod.remote_line("r", "logs.example:601") == "*.* @logs.example:601 # r"


def test_default_file_and_live_restart_only_on_change(make_ctx, root, fake_runner):
    fake_runner.expect("systemctl restart rsyslog")
    ctx = make_ctx(live=True)
    data = {"rsyslog": {"remotes": {"juju": "10.0.4.1"}}}
    mod.handle(ctx, parse(mod, data))
    mod.handle(ctx, parse(mod, data))
    assert (root / "etc/rsyslog.d/20-cloud-config.conf").read_text() == "*.* @10.0.4.1 # juju\n"
    assert fake_runner.commands() == ["systemctl restart rsyslog"]


def test_install_rsyslog_when_missing(make_ctx, root):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"rsyslog": {"install_rsyslog": True, "configs": ["*.* /var/log/all"]}}))
    assert any("rsyslog not installed" in w for w in ctx.warnings)
