from __future__ import annotations

import pytest

from tests.conftest import needs_root
from tests.modules.sysmod_support import apply_twice, config_errors, config_warnings, fake_system, parse
from tether.module import ModuleError
from tether.modules import package_update_upgrade_install as mod

EXAMPLE1 = {"package_reboot_if_required": True, "package_update": True, "package_upgrade": True,
            "packages": ["pwgen", "pastebinit", ["libpython3.8", "3.8.10-0ubuntu1~20.04.2"],
                         {"snap": ["certbot", ["juju", "--edge"]]}, {"apt": ["mg"]}]}
APT = "apt-get --option=Dpkg::Options::=--force-confold --option=Dpkg::options::=--force-unsafe-io --assume-yes --quiet"


def test_good_and_bad_configs():
    cfg = parse(mod, EXAMPLE1)
    assert [p.apt_spec for i in cfg.packages for p in i.system] == [
        "pwgen", "pastebinit", "libpython3.8=3.8.10-0ubuntu1~20.04.2"]
    assert [p.apt_spec for i in cfg.packages for p in i.apt] == ["mg"]
    assert [p.name for i in cfg.packages for p in i.snap] == ["certbot", "juju"]
    assert config_errors(mod.Config, {"packages": [["only-name"]]}) == [
        "packages[0]: a [name, version] package needs exactly two strings"]
    assert config_errors(mod.Config, {"packages": [{"yum": ["x"]}]}) == [
        "packages[0]: unknown package manager 'yum' (apt or snap)"]
    assert config_errors(mod.Config, {"package_update": "yes"}) == [
        "package_update: expected a boolean, got a string ('yes')"]
    assert config_errors(mod.Config, {"packages": ["-oops"]}) == ["packages[0]: '-oops' is not a package name"]
    assert config_errors(mod.Config, {"packages": [{"apt": ["ok", "bad name"]}]}) == [
        "packages[0].apt[1]: 'bad name' is not a package name"]
    assert config_warnings(mod.Config, {"apt_upgrade": True}) == ["apt_upgrade: deprecated, use package_upgrade"]


@needs_root()
def test_update_upgrade_install_in_the_target(make_ctx, root, fake_runner):
    fake_system(root)
    fake_runner.expect("chroot * apt-get *")
    ctx = make_ctx()
    apply_twice(mod, ctx, EXAMPLE1, root)
    cmds = fake_runner.commands()[:3]
    assert cmds == [f"chroot {root} {APT} update", f"chroot {root} {APT} dist-upgrade",
                    f"chroot {root} {APT} install pwgen pastebinit libpython3.8=3.8.10-0ubuntu1~20.04.2 mg"]
    assert "packages: snap packages are installed on the booted system only, not installed: certbot, juju" in \
        ctx.warnings


@needs_root()
def test_deprecated_apt_update_only_updates(make_ctx, root, fake_runner):
    fake_system(root)
    fake_runner.expect("chroot * apt-get *")
    mod.handle(make_ctx(), parse(mod, {"apt_update": True}))
    assert fake_runner.commands() == [f"chroot {root} {APT} update"]


def test_no_runnable_system_is_reported(make_ctx, root, fake_runner):
    ctx = make_ctx()
    assert apply_twice(mod, ctx, {"packages": ["htop"]}, root) == {}
    assert any("holds no runnable system" in w and "htop" in w for w in ctx.warnings)
    assert fake_runner.calls == []


def test_other_families_are_not_supported(make_ctx, root, fake_runner):
    (root / "etc/os-release").write_text("ID=opensuse-leap\nID_LIKE=\"suse opensuse\"\n")
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"packages": ["htop"]}))
    assert ctx.warnings == ["package_update_upgrade_install: not supported on suse (tether drives apt on "
                            "Debian-family and dnf on RHEL-family systems)"]
    assert fake_runner.calls == []


def _rhel_root(root, tool="dnf"):
    (root / "etc/os-release").write_text('NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\n')
    exe = root / "usr/bin" / tool
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/false\n")
    exe.chmod(0o755)


@needs_root()
def test_dnf_on_a_rhel_family_root(make_ctx, root, fake_runner):
    fake_system(root)
    _rhel_root(root)
    fake_runner.expect("chroot * dnf *")
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, EXAMPLE1))
    assert fake_runner.commands() == [
        f"chroot {root} dnf --assumeyes makecache", f"chroot {root} dnf --assumeyes upgrade",
        f"chroot {root} dnf --assumeyes install pwgen pastebinit libpython3.8-3.8.10-0ubuntu1~20.04.2"]
    assert "packages: apt packages not installed, dnf manages this system: mg" in ctx.warnings


@needs_root()
def test_yum_when_the_root_has_no_dnf(make_ctx, root, fake_runner):
    fake_system(root)
    _rhel_root(root, tool="yum")
    fake_runner.expect("chroot * yum *")
    mod.handle(make_ctx(), parse(mod, {"packages": [["httpd", "2.4.57"]]}))
    assert fake_runner.commands() == [f"chroot {root} yum -t --assumeyes makecache",
                                      f"chroot {root} yum -t --assumeyes install httpd-2.4.57"]


@needs_root()
def test_dnf_failure_names_the_step_and_goes_on(make_ctx, root, fake_runner):
    fake_system(root)
    _rhel_root(root)
    fake_runner.expect("chroot * dnf --assumeyes makecache", code=1, stderr="Errors during downloading metadata")
    fake_runner.expect("chroot * dnf --assumeyes install *")
    with pytest.raises(ModuleError, match="dnf makecache: .*Errors during downloading metadata"):
        mod.handle(make_ctx(), parse(mod, {"packages": ["vim-enhanced"]}))
    assert fake_runner.commands()[-1] == f"chroot {root} dnf --assumeyes install vim-enhanced"


def test_rhel_family_without_a_runnable_system_is_reported(make_ctx, root, fake_runner):
    (root / "etc/os-release").write_text("ID=fedora\n")
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, {"packages": [["htop", "3.3.0"]]}))
    assert any("holds no runnable system" in w and "htop-3.3.0" in w for w in ctx.warnings)
    assert fake_runner.calls == []


@needs_root()
def test_live_reboot_when_required(make_ctx, root, fake_runner):
    fake_system(root)
    (root / "var/run").mkdir(parents=True)
    (root / "var/run/reboot-required").write_text("*** System restart required ***\n")
    fake_runner.expect("chroot * apt-get *").expect("shutdown -r +1 *")
    mod.handle(make_ctx(live=True), parse(mod, {"package_upgrade": True, "package_reboot_if_required": True}))
    assert fake_runner.commands("shutdown") == ["shutdown -r +1 tether: rebooting after package upgrade"]


def test_snap_packages_live(make_ctx, root, fake_runner):
    snap = root / "usr/bin/snap"
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.write_text("#!/bin/false\n")
    snap.chmod(0o755)
    fake_runner.expect("snap install certbot").expect("snap install juju *", code=1, stderr="error: no such channel")
    with pytest.raises(ModuleError, match="snap install juju: .*no such channel"):
        mod.handle(make_ctx(live=True), parse(mod, {"packages": [{"snap": ["certbot", ["juju", "--edge"]]}]}))
    assert fake_runner.commands() == ["snap install certbot", "snap install juju --edge"]


def test_snap_packages_without_snap(make_ctx, root, fake_runner):
    ctx = make_ctx(live=True)
    mod.handle(ctx, parse(mod, {"packages": [{"snap": ["certbot"]}]}))
    assert ctx.warnings == ["packages: snap is not installed, not installed: certbot"]
    assert fake_runner.calls == []


@needs_root()
def test_agent_packages_go_through_dnf_with_rpm_version_pins(make_ctx, root, fake_runner):
    """What modules install (wireguard-tools, puppet=7.7.0, ...) uses the same manager choice."""
    from tether import packages
    fake_system(root)
    _rhel_root(root)
    fake_runner.expect("chroot * dnf *")
    assert packages.install(make_ctx(), ["wireguard-tools", "puppet=7.7.0"], "test")
    assert fake_runner.commands() == [f"chroot {root} dnf --assumeyes makecache",
                                      f"chroot {root} dnf --assumeyes install wireguard-tools puppet-7.7.0"]
