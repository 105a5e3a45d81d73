from __future__ import annotations

import pytest

from tests.modules.sysmod_support import config_errors, config_warnings, fake_system, parse
from tether.module import ModuleError
from tether.modules import snap as mod

CFG = {"snap": {"assertions": {"00": "signed-assertion-a\n", "02": "signed-assertion-b\n"},
                "commands": {"10": "canonical-livepatch enable SECRET-TOKEN", "2": ["install", "vlc"],
                             "1": ["snap", "install", "hello"]}}}


def _snap_installed(root):
    exe = root / "usr/bin/snap"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/false\n")
    exe.chmod(0o755)


def test_good_and_bad_configs():
    snap = parse(mod, CFG).snap
    assert snap.assertion_list() == ["signed-assertion-a\n", "signed-assertion-b\n"]
    assert snap.argvs() == [["snap", "install", "hello"], ["snap", "install", "vlc"],
                            ["/bin/sh", "-c", "canonical-livepatch enable SECRET-TOKEN"]]
    listed = parse(mod, {"snap": {"commands": [["install", "vlc"], "snap install vlc"]}}).snap
    assert listed.argvs() == [["snap", "install", "vlc"], ["/bin/sh", "-c", "snap install vlc"]]
    assert config_errors(mod.Config, {"snap": {"commands": [[]]}}) == ["snap: commands: an empty command"]
    assert config_errors(mod.Config, {"snap": {"assertions": "one"}}) == [
        "snap.assertions: expected a list of strings or a mapping, got a string ('one')"]
    assert config_warnings(mod.Config, {"snap": {"command": []}}) == ["snap.command: unknown key, ignored"]


def test_live_acks_then_runs_in_order(make_ctx, root, fake_runner):
    _snap_installed(root)
    fake_runner.expect("snap *").expect("/bin/sh -c *")
    ctx = make_ctx(live=True)
    mod.handle(ctx, parse(mod, CFG))
    path = f"/var/lib/tether/instances/{ctx.instance_id}/snapd.assertions"
    assert fake_runner.commands() == [f"snap ack {path}", "snap install hello", "snap install vlc",
                                      "/bin/sh -c canonical-livepatch enable SECRET-TOKEN"]
    f = root / path.lstrip("/")
    assert f.read_text() == "signed-assertion-a\nsigned-assertion-b\n" and f.stat().st_mode & 0o777 == 0o600


def test_live_installs_snapd_when_missing(make_ctx, root, fake_runner):
    fake_system(root)
    fake_runner.expect("chroot * apt-get *").expect("snap *")
    mod.handle(make_ctx(live=True), parse(mod, {"snap": {"commands": [["install", "vlc"]]}}))
    assert [c.split()[-1] for c in fake_runner.commands("chroot")] == ["update", "snapd"]
    assert fake_runner.commands()[-1] == "snap install vlc"


def test_failures_are_named_without_the_rest_of_the_command(make_ctx, root, fake_runner):
    _snap_installed(root)
    fake_runner.expect("snap *").expect("/bin/sh -c *", code=1, stderr="bad token")
    with pytest.raises(ModuleError) as e:
        mod.handle(make_ctx(live=True), parse(mod, CFG))
    assert str(e.value).startswith("snap commands failed: commands[2] (canonical-livepatch): ")
    assert "SECRET-TOKEN" not in str(e.value)


def test_offline_keeps_the_assertions_and_warns(make_ctx, root, fake_runner):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, CFG))
    path = f"/var/lib/tether/instances/{ctx.instance_id}/snapd.assertions"
    assert ctx.warnings == [f"snap: 2 assertion(s) and 3 command(s) not run, snapd runs only on the booted system "
                            f"(assertions kept in {path})"]
    assert (root / path.lstrip("/")).exists()
    assert fake_runner.calls == []
