from __future__ import annotations

import json

import pytest

from tests.modules.sysmod_support import apply_twice, config_errors, fake_system, parse
from tether import http
from tether.module import ModuleError
from tether.modules import puppet as mod

CA = "-----BEGIN CERTIFICATE-----\nMIICfake\n-----END CERTIFICATE-----\n"
CONF = {"puppet": {"install": False, "start_service": False,
                   "conf": {"agent": {"server": "puppetserver.example.org", "certname": "%i.%f", "splay": True},
                            "ca_cert": CA},
                   "csr_attributes": {"custom_attributes": {"1.2.840.113549.1.9.7": "342thbjkt82094y0"},
                                      "extension_requests": {"pp_uuid": "ED803750", "pp_preshared_key": "psk-1"}}}}


def _exe(root, path):
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("#!/bin/false\n")
    f.chmod(0o755)


def test_good_and_bad_configs():
    p = parse(mod, {"puppet": {"install_type": "aio"}}).puppet
    assert p.paths() == ("/etc/puppetlabs/puppet/puppet.conf", "/etc/puppetlabs/puppet/ssl",
                         "/etc/puppetlabs/puppet/csr_attributes.yaml")
    assert parse(mod, {"puppet": {"exec_args": "--test --noop"}}).puppet.agent_argv() == [
        "puppet", "agent", "--test", "--noop"]
    assert config_errors(mod.Config, {"puppet": {"install_type": "gem"}}) == [
        "puppet.install_type: expected one of 'packages', 'aio', got a string ('gem')"]
    assert config_errors(mod.Config, {"puppet": {"conf_file": "puppet.conf"}}) == [
        "puppet: conf_file: 'puppet.conf' must be an absolute path"]
    assert config_errors(mod.Config, {"puppet": {"conf": {"agent": ["server=x"]}}}) == [
        "puppet.conf.agent: expected a mapping or null, got a list"]


def test_merge_ini_keeps_other_lines():
    old = "# managed\n[main]\nlogdir=/var/log/puppet\n\n[agent]\nserver = old.example\n"
    assert mod.merge_ini(old, {"agent": {"server": "new.example", "splay": "true"}, "user": {"a": "b"}}) == (
        "# managed\n[main]\nlogdir=/var/log/puppet\n\n[agent]\nserver = new.example\nsplay = true\n\n[user]\na = b\n")


def test_conf_ca_and_csr_attributes_are_written(make_ctx, root, fake_runner):
    (root / "etc/puppet").mkdir(parents=True)
    (root / "etc/puppet/puppet.conf").write_text("[main]\nssldir = /var/lib/puppet/ssl\n")
    ctx = make_ctx(cloud_config={"fqdn": "node1.example.org"})
    changed = apply_twice(mod, ctx, CONF, root)
    assert set(changed) >= {"/etc/puppet/puppet.conf", "/var/lib/puppet/ssl/certs/ca.pem",
                            "/etc/puppet/csr_attributes.yaml"}
    assert (root / "etc/puppet/puppet.conf").read_text() == (
        "[main]\nssldir = /var/lib/puppet/ssl\n\n[agent]\nserver = puppetserver.example.org\n"
        f"certname = {ctx.instance_id}.node1.example.org\nsplay = true\n")
    assert (root / "var/lib/puppet/ssl/certs/ca.pem").read_text() == CA
    csr = root / "etc/puppet/csr_attributes.yaml"
    assert json.loads(csr.read_text())["extension_requests"]["pp_preshared_key"] == "psk-1"
    assert csr.stat().st_mode & 0o777 == 0o640
    assert fake_runner.calls == []


def test_package_install_with_version_enable_exec_and_start(make_ctx, root, fake_runner):
    fake_system(root)
    unit = root / "lib/systemd/system/puppet.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Install]\nWantedBy=multi-user.target\n")
    fake_runner.expect("chroot * apt-get *").expect("systemctl *")
    fake_runner.expect("puppet agent --test", code=2)   # 2: changes applied (detailed exit codes)
    mod.handle(make_ctx(live=True), parse(mod, {"puppet": {"version": "7.7.0", "exec": True}}))
    cmds = fake_runner.commands()
    assert cmds[1].endswith(" install puppet=7.7.0")
    assert cmds[2:] == ["systemctl enable puppet", "puppet agent --test", "systemctl restart puppet"]


def test_agent_failure_is_an_error(make_ctx, root, fake_runner):
    _exe(root, "/usr/bin/puppet")
    fake_runner.expect("puppet agent *", code=4, stderr="Error: Could not retrieve catalog")
    with pytest.raises(ModuleError, match="puppet agent: .*Could not retrieve catalog"):
        mod.handle(make_ctx(live=True), parse(mod, {"puppet": {"exec": True, "start_service": False}}))


def test_aio_installer_is_fetched_and_run(make_ctx, root, fake_runner, monkeypatch):
    fake_system(root)
    urls = []

    def fake_request(url, **kw):
        urls.append(url)
        return http.Response(url, 200, b"#!/bin/sh\necho install puppet\n", {})
    monkeypatch.setattr(http, "request", fake_request)
    seen = []
    fake_runner.expect("chroot * sh /var/tmp/tether-puppet-install.sh *",
                       handler=lambda argv, kw: seen.append((root / "var/tmp/tether-puppet-install.sh").read_text()))
    data = {"puppet": {"install_type": "aio", "version": "7.7.0", "collection": "puppet7", "start_service": False}}
    mod.handle(make_ctx(), parse(mod, data))
    assert urls == [mod.AIO_URL]
    assert fake_runner.commands() == [f"chroot {root} sh /var/tmp/tether-puppet-install.sh -v 7.7.0 -c puppet7 "
                                      "--cleanup"]
    assert seen == ["#!/bin/sh\necho install puppet\n"]
    assert not (root / "var/tmp/tether-puppet-install.sh").exists()


def test_aio_download_failure_names_the_key(make_ctx, root, fake_runner, monkeypatch):
    fake_system(root)

    def fail(url, **kw):
        raise http.HttpError(url, "HTTP 404")
    monkeypatch.setattr(http, "request", fail)
    with pytest.raises(ModuleError, match="puppet.aio_install_url: "):
        mod.handle(make_ctx(), parse(mod, {"puppet": {"install_type": "aio"}}))
    assert fake_runner.calls == []
