from __future__ import annotations

import pytest

from tests.conftest import needs_root
from tests.modules.sysmod_support import config_errors, fake_system, parse
from tether.module import ModuleError
from tether.modules import byobu as mod

USER = "alice:x:1000:1000::/home/alice:/bin/bash\n"


def _byobu_root(root, installed=True):
    fake_system(root)
    with (root / "etc/passwd").open("a") as f:
        f.write(USER)
    if installed:
        exe = root / "usr/bin/byobu"
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/false\n")
        exe.chmod(0o755)


def test_good_and_bad_configs():
    assert parse(mod, {"byobu_by_default": "enable"}).action == ("enable", True, True)
    assert parse(mod, {"byobu_by_default": "user"}).action == ("enable", True, False)
    assert parse(mod, {"byobu_by_default": "system"}).action == ("enable", False, True)
    assert parse(mod, {"byobu_by_default": "disable-user"}).action == ("disable", True, False)
    assert parse(mod, {"byobu_by_default": "disable-system"}).action == ("disable", False, True)
    assert config_errors(mod.Config, {"byobu_by_default": "on"}) == [
        "byobu_by_default: expected one of 'enable-system', 'enable-user', 'disable-system', 'disable-user', "
        "'enable', 'disable', 'user', 'system' or null, got a string ('on')"]


@needs_root()
def test_enable_for_the_default_user_and_system_wide(make_ctx, root, fake_runner):
    _byobu_root(root)
    fake_runner.expect("chroot * runuser -u alice -- byobu-launcher-install")
    fake_runner.expect("chroot * debconf-set-selections").expect("chroot * dpkg-reconfigure byobu *")
    mod.handle(make_ctx(cloud_config={"user": "alice"}), parse(mod, {"byobu_by_default": "enable"}))
    assert fake_runner.commands() == [f"chroot {root} runuser -u alice -- byobu-launcher-install",
                                      f"chroot {root} debconf-set-selections",
                                      f"chroot {root} dpkg-reconfigure byobu --frontend=noninteractive"]
    assert fake_runner.inputs[1] == "byobu byobu/launch-by-default boolean true\n"


@needs_root()
def test_user_runs_with_the_users_home(make_ctx, root, fake_runner):
    _byobu_root(root)
    seen = {}
    fake_runner.expect("chroot * runuser *", handler=lambda argv, kw: seen.update(kw["env"]))
    mod.handle(make_ctx(cloud_config={"user": "alice"}), parse(mod, {"byobu_by_default": "user"}))
    assert {k: seen[k] for k in ("HOME", "USER", "LOGNAME")} == {"HOME": "/home/alice", "USER": "alice",
                                                                 "LOGNAME": "alice"}


@needs_root()
def test_enable_installs_byobu_when_missing(make_ctx, root, fake_runner):
    _byobu_root(root, installed=False)
    fake_runner.expect("chroot * apt-get *").expect("chroot * debconf-set-selections")
    fake_runner.expect("chroot * dpkg-reconfigure *")
    mod.handle(make_ctx(), parse(mod, {"byobu_by_default": "enable-system"}))
    assert [c.split()[-1] for c in fake_runner.commands(f"chroot {root} apt-get")] == ["update", "byobu"]
    assert fake_runner.inputs[-2] == "byobu byobu/launch-by-default boolean true\n"


@needs_root()
def test_disable_without_byobu_does_nothing(make_ctx, root, fake_runner):
    _byobu_root(root, installed=False)
    mod.handle(make_ctx(), parse(mod, {"byobu_by_default": "disable"}))
    assert fake_runner.calls == []


@needs_root()
def test_a_failing_launcher_is_an_error_naming_the_user(make_ctx, root, fake_runner):
    _byobu_root(root)
    fake_runner.expect("chroot * runuser *", code=1, stderr="byobu-launcher-uninstall: cannot write .profile")
    fake_runner.expect("chroot * debconf-set-selections").expect("chroot * dpkg-reconfigure *")
    with pytest.raises(ModuleError, match="byobu for alice: .*cannot write .profile"):
        mod.handle(make_ctx(cloud_config={"user": "alice"}), parse(mod, {"byobu_by_default": "disable"}))
    assert fake_runner.inputs[-2] == "byobu byobu/launch-by-default boolean false\n"


@needs_root()
def test_system_wide_needs_debconf(make_ctx, root, fake_runner):
    _byobu_root(root)
    (root / "etc/os-release").write_text("ID=fedora\n")
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"byobu_by_default": "enable-system"}))
    assert ctx.warnings == ["byobu: system-wide launching is a debconf setting; not supported without apt"]
    assert fake_runner.calls == []


def test_no_runnable_system(make_ctx, root, fake_runner):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"byobu_by_default": "enable"}))
    assert ctx.warnings == [f"byobu: enable not done, {root} holds no runnable system"]
    assert fake_runner.calls == []
