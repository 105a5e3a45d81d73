from __future__ import annotations

import pytest

from tests.modules.sysmod_support import config_errors, parse
from tether.module import ModuleError
from tether.modules import lxd as mod

FULL = {"lxd": {"init": {"network_address": "0.0.0.0", "network_port": 8443, "storage_backend": "zfs",
                         "storage_pool": "datapool", "storage_create_loop": 10, "trust_password": "s3cr3t-pw"},
                "bridge": {"mode": "new", "mtu": 1500, "name": "lxdbr0", "ipv4_address": "10.0.8.1",
                           "ipv4_netmask": 24, "ipv4_dhcp_first": "10.0.8.2", "ipv4_dhcp_last": "10.0.8.3",
                           "ipv4_dhcp_leases": 250, "ipv4_nat": True, "ipv6_address": "fd98:9e0:3744::1",
                           "ipv6_netmask": 64, "ipv6_nat": True, "domain": "lxd"}}}


def _have(root, *tools):
    for t in tools:
        exe = root / "usr/bin" / t
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/false\n")
        exe.chmod(0o755)


def test_good_and_bad_configs():
    lxd = parse(mod, FULL).lxd
    assert lxd.init.argv() == ["lxd", "init", "--auto", "--storage-backend=zfs", "--network-address=0.0.0.0",
                               "--network-port=8443", "--storage-create-loop=10", "--storage-pool=datapool",
                               "--trust-password=s3cr3t-pw"]
    assert lxd.bridge.create_argv() == [
        "lxc", "network", "create", "lxdbr0", "ipv4.address=10.0.8.1/24", "ipv4.nat=true",
        "ipv4.dhcp.ranges=10.0.8.2-10.0.8.3", "ipv6.address=fd98:9e0:3744::1/64", "ipv6.nat=true", "dns.domain=lxd",
        "bridge.mtu=1500"]
    assert parse(mod, {"lxd": {"bridge": {"mode": "new"}}}).lxd.bridge.create_argv() == [
        "lxc", "network", "create", "lxdbr0", "ipv4.address=none", "ipv6.address=none"]
    assert config_errors(mod.Config, {"lxd": {"preseed": "config: {}\n", "init": {}}}) == [
        "lxd: preseed replaces init and bridge; give either preseed or init/bridge"]
    assert config_errors(mod.Config, {"lxd": {"bridge": {"name": "x"}}}) == ["lxd.bridge.mode: missing required key"]
    assert config_errors(mod.Config, {"lxd": {"init": {"storage_backend": "ceph"}}}) == [
        "lxd.init.storage_backend: expected one of 'zfs', 'dir', 'lvm', 'btrfs', got a string ('ceph')"]


def test_live_init_and_new_bridge(make_ctx, root, fake_runner, caplog):
    _have(root, "lxd", "zfs")
    fake_runner.expect("lxd *").expect("lxc network show *", code=1).expect("lxc network *")
    mod.handle(make_ctx(live=True), parse(mod, FULL))
    cmds = fake_runner.commands()
    assert cmds[0] == "lxd waitready --timeout=300"
    assert cmds[1].startswith("lxd init --auto --storage-backend=zfs")
    assert cmds[2:] == ["lxc network show lxdbr0", " ".join(parse(mod, FULL).lxd.bridge.create_argv()),
                        "lxc network attach-profile lxdbr0 default eth0"]


def test_trust_password_is_given_to_the_runner_as_a_secret(make_ctx, root, fake_runner):
    """The runner redacts what ``secrets`` names from its '+ argv' debug line and from errors."""
    _have(root, "lxd")
    seen = []
    fake_runner.expect("lxd waitready *").expect("lxd init *", handler=lambda argv, kw: seen.append(kw["secrets"]))
    mod.handle(make_ctx(live=True), parse(mod, {"lxd": {"init": {"trust_password": "s3cr3t-pw"}}}))
    assert seen == [["s3cr3t-pw"]]


def test_existing_bridge_is_only_attached(make_ctx, root, fake_runner):
    _have(root, "lxd")
    fake_runner.expect("lxd *").expect("lxc network attach-profile *")
    mod.handle(make_ctx(live=True), parse(mod, {"lxd": {"bridge": {"mode": "existing", "name": "br9"}}}))
    assert fake_runner.commands()[1:] == ["lxc network attach-profile br9 default eth0"]


def test_preseed_on_stdin(make_ctx, root, fake_runner):
    _have(root, "lxd")
    fake_runner.expect("lxd *")
    mod.handle(make_ctx(live=True), parse(mod, {"lxd": {"preseed": "config:\n  core.https_address: ':9999'\n"}}))
    assert fake_runner.commands() == ["lxd waitready --timeout=300", "lxd init --preseed"]
    assert fake_runner.inputs[1] == "config:\n  core.https_address: ':9999'\n"


def test_installs_lxd_and_the_storage_tools_when_missing(make_ctx, root, fake_runner):
    from tests.modules.sysmod_support import fake_system
    fake_system(root)
    fake_runner.expect("chroot * apt-get *").expect("lxd *")
    mod.handle(make_ctx(live=True), parse(mod, {"lxd": {"init": {"storage_backend": "btrfs"}}}))
    assert fake_runner.commands("chroot")[-1].endswith(" install lxd btrfs-progs")


def test_bridge_failure_names_the_bridge(make_ctx, root, fake_runner):
    _have(root, "lxd")
    fake_runner.expect("lxd *").expect("lxc network show *", code=1)
    fake_runner.expect("lxc network create *", code=1, stderr="Error: Network address already in use")
    with pytest.raises(ModuleError, match="lxd bridge lxdbr0: .*already in use"):
        mod.handle(make_ctx(live=True), parse(mod, {"lxd": {"bridge": {"mode": "new", "ipv4_address": "10.0.0.1",
                                                                       "ipv4_netmask": 24}}}))


def test_offline_warns(make_ctx, root, fake_runner):
    ctx = make_ctx()
    mod.handle(ctx, parse(mod, FULL))
    assert ctx.warnings == ["lxd: not initialized, LXD is configured through its daemon on the booted system only"]
    assert fake_runner.calls == []
