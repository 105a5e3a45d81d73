from __future__ import annotations

import json
import logging

import pytest

from tests.modules.sysmod_support import apply_twice, config_errors, fake_system, parse
from tether import http
from tether.module import ModuleError
from tether.modules import chef as mod

KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEvalidationkeysecret\n-----END RSA PRIVATE KEY-----\n"
CFG = {"chef": {"install_type": "packages", "server_url": "https://chef.example.org:4000",
                "validation_name": "yourorg-validator", "validation_cert": KEY, "run_list": ["recipe[apache2]"],
                "initial_attributes": {"apache": {"keepalive": False}}, "chef_license": "accept",
                "log_level": ":auto", "ssl_verify_mode": ":verify_peer", "environment": "prod#{x}"}}


def _chef_installed(root):
    f = root / "usr/bin/chef-client"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("#!/bin/false\n")
    f.chmod(0o755)


def test_good_and_bad_configs():
    assert parse(mod, {"chef": {}}).chef.directories == mod.DIRECTORIES
    assert config_errors(mod.Config, {"chef": {"log_level": "info"}}) == [
        "chef: log_level: expected a Ruby symbol like :info, got 'info'"]
    assert config_errors(mod.Config, {"chef": {"install_type": "brew"}}) == [
        "chef.install_type: expected one of 'packages', 'gems', 'omnibus', got a string ('brew')"]
    assert config_errors(mod.Config, {"chef": {"validation_key": "validation.pem"}}) == [
        "chef: validation_key: <redacted> must be an absolute path"]   # a key-named field: never quoted


def test_files_written_and_the_key_kept_private(make_ctx, root, fake_runner, caplog):
    _chef_installed(root)
    caplog.set_level(logging.DEBUG)
    ctx = make_ctx()
    changed = apply_twice(mod, ctx, CFG, root)
    assert {"/etc/chef/client.rb", "/etc/chef/validation.pem", "/etc/chef/firstboot.json", "/var/chef/cache",
            "/var/run/chef"} <= set(changed)
    key = root / "etc/chef/validation.pem"
    assert key.read_text() == KEY and key.stat().st_mode & 0o777 == 0o600
    rb = (root / "etc/chef/client.rb").read_text()
    for line in ('log_level                  :auto', 'ssl_verify_mode            :verify_peer',
                 'validation_client_name     "yourorg-validator"', 'chef_server_url            "https://chef.example.org:4000"',
                 f'node_name                  "{ctx.instance_id}"', 'environment                "prod\\#{x}"',
                 'chef_license               "accept"', "Chef::Log::Formatter.show_time = true"):
        assert line in rb.splitlines(), line
    first = root / "etc/chef/firstboot.json"
    assert json.loads(first.read_text()) == {"run_list": ["recipe[apache2]"], "apache": {"keepalive": False}}
    assert first.stat().st_mode & 0o777 == 0o600
    assert "MIIEvalidationkeysecret" not in caplog.text
    assert fake_runner.calls == []   # installed, exec not asked for


def test_system_validation_cert_keeps_the_image_key(make_ctx, root, fake_runner):
    _chef_installed(root)
    (root / "etc/chef").mkdir(parents=True)
    (root / "etc/chef/validation.pem").write_text("image key\n")
    mod.handle(make_ctx(), parse(mod, {"chef": {"validation_cert": "system"}}))
    assert (root / "etc/chef/validation.pem").read_text() == "image key\n"


def test_package_install_then_exec_live(make_ctx, root, fake_runner):
    fake_system(root)
    fake_runner.expect("chroot * apt-get *").expect("/usr/bin/chef-client *")
    mod.handle(make_ctx(live=True), parse(mod, {"chef": {"exec": True}}))
    cmds = fake_runner.commands()
    assert cmds[1].endswith(" install chef")
    assert cmds[2:] == ["/usr/bin/chef-client -d -i 1800 -s 20"]


def test_gems_install_runs_chef_by_default(make_ctx, root, fake_runner):
    fake_system(root)
    fake_runner.expect("chroot * apt-get *").expect("chroot * gem install chef --no-document")
    fake_runner.expect("/usr/bin/chef-client *")
    mod.handle(make_ctx(live=True), parse(mod, {"chef": {"install_type": "gems"}}))
    assert fake_runner.commands()[-2:] == [f"chroot {root} gem install chef --no-document",
                                           "/usr/bin/chef-client -d -i 1800 -s 20"]


def test_omnibus_installer_with_version(make_ctx, root, fake_runner, monkeypatch):
    fake_system(root)
    retries = []

    def fake_request(url, **kw):
        retries.append((url, kw["retries"]))
        return http.Response(url, 200, b"#!/bin/sh\n", {})
    monkeypatch.setattr(http, "request", fake_request)
    fake_runner.expect("chroot * sh *")
    mod.handle(make_ctx(), parse(mod, {"chef": {"install_type": "omnibus", "omnibus_version": "18.2.7",
                                                "omnibus_url_retries": 2}}))
    assert retries == [(mod.OMNIBUS_URL, 2)]
    assert fake_runner.commands() == [f"chroot {root} sh {mod.INSTALL_SCRIPT} -v 18.2.7"]
    assert not (root / mod.INSTALL_SCRIPT.lstrip("/")).exists()


def test_chef_client_failure_is_an_error(make_ctx, root, fake_runner):
    _chef_installed(root)
    fake_runner.expect("/usr/bin/chef-client *", code=1, stderr="FATAL: 401 Unauthorized")
    with pytest.raises(ModuleError, match="chef-client: .*401 Unauthorized"):
        mod.handle(make_ctx(live=True), parse(mod, {"chef": {"exec": True}}))


def test_old_form_key_in_validation_key(make_ctx, root, fake_runner):
    _chef_installed(root)
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"chef": {"validation_cert": "unused", "validation_key": KEY}}))
    key = root / "etc/chef/validation.pem"
    assert key.read_text() == KEY and key.stat().st_mode & 0o777 == 0o600
    assert 'validation_key             "/etc/chef/validation.pem"' in (root / "etc/chef/client.rb").read_text()
    assert ctx.warnings == ["chef.validation_key: holds the key itself (an old form), written to "
                            "/etc/chef/validation.pem; give the key in validation_cert and the file's path in "
                            "validation_key"]


def test_system_cert_without_a_key_file_is_reported(make_ctx, root, fake_runner):
    _chef_installed(root)
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"chef": {"validation_cert": "system"}}))
    assert ctx.warnings == ["chef: validation_cert is 'system' but there is no /etc/chef/validation.pem"]
