from __future__ import annotations

import pytest

from tests.conftest import needs_root
from tests.modules.sysmod_support import config_errors, fake_system, parse
from tether.module import ModuleError
from tether.modules import ssh_import_id as mod

PEOPLE = "debian:x:1000:1000::/home/debian:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\n"


def _root(root, tool=True):
    fake_system(root)
    with (root / "etc/passwd").open("a") as f:
        f.write(PEOPLE)
    if tool:
        exe = root / "usr/bin/ssh-import-id"
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/false\n")
        exe.chmod(0o755)


CONFIG = {"ssh_import_id": ["gh:octocat", "lp:someone"],
          "users": ["default", {"name": "bob", "ssh_import_id": ["gh:bob", "gh:bob"]}, {"name": "carol"}]}


def test_good_and_bad_configs():
    assert parse(mod, {"ssh_import_id": ["gh:a"]}).ssh_import_id == ("gh:a",)
    assert config_errors(mod.Config, {"ssh_import_id": "gh:a"}) == [
        "ssh_import_id: expected a list of strings, got a string ('gh:a')"]
    assert config_errors(mod.Config, {"ssh_import_id": ["--help"]}) == [
        "(top): ssh_import_id: '--help' is not a key id like gh:user or lp:user"]


def test_who_gets_which_keys(make_ctx):
    ctx = make_ctx(cloud_config=CONFIG)
    assert mod.wanted(ctx, parse(mod, CONFIG)) == {"debian": ["gh:octocat", "lp:someone"], "bob": ["gh:bob"]}


@needs_root()
def test_runs_as_each_user(make_ctx, root, fake_runner):
    _root(root)
    fake_runner.expect("chroot * runuser -u * -- ssh-import-id *")
    mod.handle(make_ctx(cloud_config=CONFIG), parse(mod, CONFIG))
    assert fake_runner.commands() == [
        f"chroot {root} runuser -u debian -- ssh-import-id gh:octocat lp:someone",
        f"chroot {root} runuser -u bob -- ssh-import-id gh:bob"]


@needs_root()
def test_installs_the_tool_when_missing(make_ctx, root, fake_runner):
    _root(root, tool=False)
    fake_runner.expect("chroot * apt-get *").expect("chroot * runuser *")
    data = {"ssh_import_id": ["gh:octocat"]}
    mod.handle(make_ctx(cloud_config=data), parse(mod, data))
    assert [c.split(" ", 2)[2] for c in fake_runner.commands()][1:] == [
        "apt-get --option=Dpkg::Options::=--force-confold --option=Dpkg::options::=--force-unsafe-io --assume-yes "
        "--quiet install ssh-import-id", "runuser -u debian -- ssh-import-id gh:octocat"]


@needs_root()
def test_one_user_failing_does_not_stop_the_others(make_ctx, root, fake_runner):
    _root(root)
    fake_runner.expect("chroot * runuser -u debian *", code=1, stderr="ERROR No matching keys found for gh:octocat")
    fake_runner.expect("chroot * runuser -u bob *")
    with pytest.raises(ModuleError, match="failed for debian: .*No matching keys found"):
        mod.handle(make_ctx(cloud_config=CONFIG), parse(mod, CONFIG))
    assert fake_runner.commands()[-1] == f"chroot {root} runuser -u bob -- ssh-import-id gh:bob"


@needs_root()
def test_a_user_that_does_not_exist_is_named(make_ctx, root, fake_runner):
    _root(root)
    data = {"users": [{"name": "ghost", "ssh_import_id": ["gh:ghost"]}]}
    with pytest.raises(ModuleError, match=r"ghost: no user 'ghost' in .*/etc/passwd"):
        mod.handle(make_ctx(cloud_config=data), parse(mod, data))
    assert fake_runner.calls == []


def test_nothing_to_import_runs_nothing(make_ctx, fake_runner):
    data = {"users": [{"name": "carol"}]}
    mod.handle(make_ctx(cloud_config=data), parse(mod, data))
    assert fake_runner.calls == []


def test_no_runnable_system(make_ctx, root, fake_runner):
    ctx = make_ctx(cloud_config=CONFIG)
    mod.handle(ctx, parse(mod, CONFIG))
    assert ctx.warnings == [f"ssh_import_id: keys not imported for debian, bob, {root} holds no runnable system"]
