"""apply_network end to end against a temporary root and a fake /sys: what lands on disk, idempotence,
stale files, netplan passthrough, live renames, and the fallback when a config is unusable."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from tests.fakes import FakeRunner
from tests.network.unitcheck import check_files
from tether.host import Host
from tether.network import apply as netapply
from tether.network.apply import NetworkConfigError, apply_network
from tether.network.live import sysfs_interfaces
from tether.network.netplan import to_netplan
from tether.network.networkd import networkd_files, render_networkd
from tether.network.parse import parse_config
from tether.target import Target

V1 = {"version": 1, "config": [
    {"type": "physical", "name": "lan0", "mac_address": "52:54:00:00:00:01",
     "subnets": [{"type": "static", "address": "10.0.0.5/24", "gateway": "10.0.0.1"}]},
    {"type": "vlan", "name": "lan0.7", "vlan_link": "lan0", "vlan_id": 7, "subnets": [{"type": "dhcp"}]}]}
NETDIR = "/etc/systemd/network"


def fake_sys(base: Path, nics: dict[str, tuple[str, bool]], cmdline: str = "") -> Host:
    """A sysroot with /sys/class/net/<name> for each (mac, physical) and /proc/cmdline."""
    for name, (mac, physical) in nics.items():
        d = base / "sys/class/net" / name
        d.mkdir(parents=True)
        (d / "address").write_text(mac + "\n")
        (d / "type").write_text("1\n")
        (d / "flags").write_text("0x1003\n")
        (d / "carrier").write_text("1\n")
        if physical:
            dev = base / "sys/devices/pci0000:00" / name
            (dev / "driver").parent.mkdir(parents=True, exist_ok=True)
            (base / "sys/bus/pci/drivers/virtio_net").mkdir(parents=True, exist_ok=True)
            os.symlink(base / "sys/bus/pci/drivers/virtio_net", dev / "driver")
            os.symlink(dev, d / "device")
    (base / "proc").mkdir(exist_ok=True)
    (base / "proc/cmdline").write_text(cmdline + "\n")
    return Host(sysroot=base)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return fake_sys(tmp_path / "sys", {"lo": ("00:00:00:00:00:00", False), "ens3": ("52:54:00:00:00:01", True)})


def listing(target: Target, d: str = NETDIR) -> dict[str, str]:
    p = target.path(d)
    return {f.name: f.read_text() for f in sorted(p.iterdir())} if p.exists() else {}


def test_sysfs_view(host: Host) -> None:
    ifaces = sysfs_interfaces(host.sysroot)
    assert [(i.name, i.mac, i.physical, i.up, i.carrier, i.driver) for i in ifaces] == [
        ("ens3", "52:54:00:00:00:01", True, True, True, "virtio_net"), ("lo", None, False, True, True, None)]


def test_networkd_files_written_and_marker(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    res = apply_network(target, host, {}, V1, fake_runner, live=False)
    assert res.renderer == "networkd" and res.source == "datasource network config"
    files = listing(target)
    assert sorted(files) == ["10-tether-lan0.7.netdev", "10-tether-lan0.7.network", "10-tether-lan0.link",
                             "10-tether-lan0.network"]
    check_files(files)
    assert files == networkd_files(parse_config(V1))
    marker = json.loads(target.read_text(netapply.APPLIED_MARKER))
    assert marker["renderer"] == "networkd" and len(marker["files"]) == 4
    assert res.summary == "datasource network config; networkd: 4 written, 0 unchanged, 0 removed"
    assert fake_runner.calls == []   # not live: nothing runs


def test_same_input_changes_nothing_and_stale_files_go(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    apply_network(target, host, {}, V1, fake_runner, live=False)
    before = {p: os.stat(target.path(f"{NETDIR}/{p}")).st_mtime_ns for p in listing(target)}
    foreign = target.write(f"{NETDIR}/50-admin.network", "[Match]\nName=x\n")
    res = apply_network(target, host, {}, V1, fake_runner, live=False)
    assert res.written == [] and res.removed == [] and len(res.unchanged) == 4
    assert {p: os.stat(target.path(f"{NETDIR}/{p}")).st_mtime_ns for p in before} == before
    # the VLAN goes away: its files are removed, the admin's file stays
    v1_no_vlan = {"version": 1, "config": V1["config"][:1]}
    res = apply_network(target, host, {}, v1_no_vlan, fake_runner, live=False)
    assert sorted(res.removed) == [f"{NETDIR}/10-tether-lan0.7.netdev", f"{NETDIR}/10-tether-lan0.7.network"]
    assert f"{NETDIR}/10-tether-lan0.network" in res.written   # VLAN= line dropped
    assert foreign.exists()
    assert render_networkd(parse_config(v1_no_vlan), target) == [f"{NETDIR}/10-tether-lan0.link",
                                                                  f"{NETDIR}/10-tether-lan0.network"]


def test_disabled_writes_nothing(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    res = apply_network(target, host, {"network": {"config": "disabled"}}, V1, fake_runner, live=False)
    assert res.renderer == "none" and res.summary == "disabled by system config network:; nothing written"
    assert listing(target) == {}


def test_fallback_when_nothing_is_configured(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    res = apply_network(target, host, {}, None, fake_runner, live=False)
    assert res.source == "fallback: DHCPv4 on ens3"
    net = listing(target)["10-tether-ens3.network"]
    assert "[Match]\nName=ens3\n" in net and "DHCP=ipv4" in net


def test_unusable_config_renders_fallback_then_raises(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    bad = {"version": 2, "ethernets": {"eth0": {"addresses": ["10.0.0.300/24"]}}}
    with pytest.raises(NetworkConfigError) as e:
        apply_network(target, host, {}, bad, fake_runner, live=False)
    msg = str(e.value)
    assert "datasource network config: ethernets.eth0.addresses[0]: '10.0.0.300/24' is not an IP address" in msg
    assert "rendered instead: fallback: DHCPv4 on ens3 (after an unusable config)" in msg
    assert "10-tether-ens3.network" in listing(target)


def test_bad_cmdline_config_falls_back_too(target: Target, tmp_path: Path, fake_runner: FakeRunner) -> None:
    host = fake_sys(tmp_path / "s2", {"ens3": ("52:54:00:00:00:01", True)}, cmdline="ro network-config=!!")
    with pytest.raises(NetworkConfigError, match="not valid base64"):
        apply_network(target, host, {}, V1, fake_runner, live=False)
    assert "10-tether-ens3.network" in listing(target)


def test_netplan_passthrough(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    target.write("/usr/sbin/netplan", "#!/bin/sh\n", mode=0o755)
    apply_network(target, host, {}, V1, fake_runner, live=False)        # networkd files from an earlier run
    target.remove("/usr/sbin/netplan")
    res = apply_network(target, host, {}, V1, fake_runner, live=False)
    assert res.renderer == "networkd"
    target.write("/usr/sbin/netplan", "#!/bin/sh\n", mode=0o755)
    v2 = {"version": 2, "ethernets": {"eth0": {"dhcp4": True, "ipv6-privacy": True}}}
    fake_runner.expect("/usr/sbin/netplan generate")
    res = apply_network(target, host, {}, {"network": v2}, fake_runner, live=True)
    assert res.renderer == "netplan"
    path = target.path("/etc/netplan/50-tether.yaml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # passed through as given, including keys tether's model does not know
    assert yaml.safe_load(path.read_text()) == {"network": v2}
    assert listing(target) == {}   # our networkd files were removed
    assert fake_runner.commands() == ["/usr/sbin/netplan generate"]


def test_netplan_from_v1_and_renderer_preference(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    target.write("/usr/sbin/netplan", "#!/bin/sh\n", mode=0o755)
    res = apply_network(target, host, {"network": {"renderers": ["networkd", "netplan"]}}, V1, fake_runner,
                        live=False)
    assert res.renderer == "networkd"
    res = apply_network(target, host, {}, V1, fake_runner, live=False)
    assert res.renderer == "netplan"
    doc = yaml.safe_load(target.read_text("/etc/netplan/50-tether.yaml"))["network"]
    assert doc["ethernets"]["lan0"] == {"match": {"macaddress": "52:54:00:00:00:01"}, "set-name": "lan0",
                                        "addresses": ["10.0.0.5/24"], "routes": [{"to": "default",
                                                                                  "via": "10.0.0.1"}]}
    assert doc["vlans"]["lan0.7"] == {"id": 7, "link": "lan0", "dhcp4": True}


def test_live_rename_by_mac(target: Target, host: Host, fake_runner: FakeRunner) -> None:
    fake_runner.expect("ip link set dev ens3 down").expect("ip link set dev ens3 name lan0") \
        .expect("ip link set dev lan0 up")
    res = apply_network(target, host, {}, V1, fake_runner, live=True)
    assert res.renamed == [("ens3", "lan0")]
    assert fake_runner.commands() == ["ip link set dev ens3 down", "ip link set dev ens3 name lan0",
                                      "ip link set dev lan0 up"]
    assert "renamed ens3->lan0" in res.summary


@pytest.mark.parametrize("name", ["bonded-vlan", "bridge", "multiple-vlan", "route", "subnet-routes",
                                  "subnet-multiple", "nameserver"])
def test_netplan_translation_round_trips(name: str) -> None:
    from tests.network.test_v1 import example
    model = parse_config(example(name))
    again = parse_config(to_netplan(model))
    assert networkd_files(again) == networkd_files(model)
