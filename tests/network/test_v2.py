"""Network config v2 (netplan): our own set covering the same features as the v1 examples; where a v2
document says the same thing as a v1 example, the rendered files must be the same, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.network.unitcheck import check_files, parse_unit
from tether.errors import ConfigErrors
from tether.network.model import BondParams, BridgeParams, Match, Route
from tether.network.networkd import networkd_files
from tether.network.parse import parse_config

EXPECTED = Path(__file__).parent / "expected"

# v2 documents equivalent to the cloud-init v1 examples with golden output
EQUIVALENT = {
    "bonded-vlan": """
network:
  version: 2
  ethernets:
    gbe0: {match: {macaddress: 'cd:11:22:33:44:00'}, set-name: gbe0}
    gbe1: {match: {macaddress: 'CD:11:22:33:44:02'}, set-name: gbe1}
  bonds:
    bond0:
      interfaces: [gbe0, gbe1]
      parameters: {mode: 802.3ad, lacp-rate: fast}
  vlans:
    bond0.200: {id: 200, link: bond0, dhcp4: yes}
""",
    "bridge": """
version: 2
ethernets:
  interface0: {match: {macaddress: '00:11:22:33:44:55'}, set-name: interface0}
  jumbo0: {match: {macaddress: 'aa:11:22:33:44:55'}, set-name: jumbo0, mtu: 9000}
bridges:
  br0:
    interfaces: [jumbo0]
    parameters:
      ageing-time: 250
      priority: 22
      forward-delay: 1
      hello-time: 1
      max-age: 10s
      stp: false
      path-cost: {jumbo0: 75}
      port-priority: {jumbo0: 28}
""",
    "route": """
version: 2
ethernets:
  interface0:
    match: {macaddress: '00:11:22:33:44:55'}
    set-name: interface0
    addresses: [192.168.23.14/24]
    routes:
      - {to: default, via: 192.168.23.1}
      - {to: 192.168.24.0/24, via: 192.168.24.1, metric: 3, on-link: true}
""",
    "subnet-routes": """
version: 2
ethernets:
  interface0:
    match: {macaddress: '00:11:22:33:44:55'}
    set-name: interface0
    dhcp4: true
    dhcp4-overrides: {route-metric: 200}
    addresses: [10.184.225.122/30]
    routes:
      - {to: 10.176.0.0/12, via: 10.184.225.121, metric: 100}
      - {to: 10.208.0.0/12, via: 10.184.225.121, metric: 100}
""",
    "subnet-multiple": """
version: 2
ethernets:
  interface0:
    match: {macaddress: '00:11:22:33:44:55'}
    set-name: interface0
    dhcp4: true
    addresses: [192.168.23.14/27]
    gateway4: 192.168.23.1
    nameservers: {addresses: [192.168.23.2, 8.8.8.8], search: [exemplary]}
""",
    "multiple-vlan": """
version: 2
ethernets:
  eth0:
    match: {macaddress: 'd4:be:d9:a8:49:13'}
    set-name: eth0
    mtu: 1500
    addresses: [10.245.168.16/21]
    routes: [{to: 0.0.0.0/0, via: 10.245.168.1}]
    nameservers: {addresses: [10.245.168.2]}
  eth1:
    match: {macaddress: 'd4:be:d9:a8:49:15'}
    set-name: eth1
    mtu: 1500
    addresses: [10.245.188.2/24]
    nameservers: &ns {addresses: [10.245.168.2], search: [dellstack]}
vlans:
  eth1.2667: {id: 2667, link: eth1, mtu: 1500, addresses: [10.245.184.2/24], nameservers: *ns}
  eth1.2668: {id: 2668, link: eth1, mtu: 1500, addresses: [10.245.185.1/24], nameservers: *ns}
  eth1.2669: {id: 2669, link: eth1, mtu: 1500, addresses: [10.245.186.1/24], nameservers: *ns}
  eth1.2670: {id: 2670, link: eth1, mtu: 1500, addresses: [10.245.187.2/24], nameservers: *ns}
""",
}


@pytest.mark.parametrize("name", sorted(EQUIVALENT))
def test_v2_renders_the_same_files_as_the_equivalent_v1(name: str) -> None:
    files = networkd_files(parse_config(yaml.safe_load(EQUIVALENT[name])))
    want = {p.name: p.read_text() for p in (EXPECTED / f"v1-{name}").iterdir()}
    assert sorted(files) == sorted(want)
    for fname, text in want.items():
        assert files[fname] == text, fname


FEATURES = """
version: 2
renderer: networkd
ethernets:
  lan:
    match: {name: 'enp*', driver: virtio_net}
    wakeonlan: true
    dhcp4: true
    dhcp6: true
    dhcp4-overrides: {use-dns: false, use-ntp: false, route-metric: 50, send-hostname: true, hostname: box}
    dhcp6-overrides: {use-dns: false}
    dhcp-identifier: mac
    link-local: [ipv6]
    optional: true
  eno1:
    macaddress: 02:00:00:00:00:01
    addresses: [10.0.0.5/24, '2001:db8::5/64', {10.0.0.6/24: {label: extra}}]
    gateway6: 2001:db8::1
    routes: [{to: 172.16.0.0/12, via: 10.0.0.1, table: 100}]
    accept-ra: false
  p1: {match: {macaddress: '52:54:00:00:00:11'}}
  p2: {match: {macaddress: '52:54:00:00:00:12'}}
  p3: {}
bonds:
  bond0:
    interfaces: [p1, p2]
    macaddress: 52:54:00:00:00:ff
    mtu: 9000
    parameters:
      mode: active-backup
      primary: p1
      mii-monitor-interval: 100
      up-delay: 1s
      down-delay: "200ms"
      fail-over-mac-policy: active
      gratuitous-arp: 3
      transmit-hash-policy: layer3+4
      arp-ip-targets: [10.0.0.1]
      learn-packet-interval: 2
      all-slaves-active: false
    addresses: [192.168.50.2/24]
bridges:
  br0:
    interfaces: [p3]
    parameters: {stp: true, priority: 100}
    dhcp4: true
vlans:
  vlan10: {id: 10, link: bond0, addresses: [192.168.10.2/24]}
"""


def test_v2_feature_set_model() -> None:
    m = parse_config(yaml.safe_load(FEATURES))
    lan = m.get("lan")
    assert lan and lan.match == Match(name="enp*", driver="virtio_net") and lan.device_name is None
    assert lan.dhcp4 and lan.dhcp6 and lan.dhcp_client_id_mac and lan.optional and lan.wakeonlan
    eno1 = m.get("eno1")
    assert eno1 and eno1.addresses == ("10.0.0.5/24", "2001:db8::5/64", "10.0.0.6/24")
    assert eno1.routes == (Route("::/0", "2001:db8::1"), Route("172.16.0.0/12", "10.0.0.1", table=100))
    bond = m.get("bond0")
    assert bond and bond.members == ("p1", "p2")
    assert bond.bond == BondParams(mode="active-backup", primary="p1", mii_monitor_ms=100, up_delay_ms=1000,
                                   down_delay_ms=200, fail_over_mac="active", gratuitous_arp=3,
                                   transmit_hash_policy="layer3+4", arp_ip_targets=("10.0.0.1",),
                                   learn_packet_interval_s=2, all_slaves_active=False)
    assert m.get("br0").bridge == BridgeParams(stp=True, priority=100)  # type: ignore[union-attr]
    assert any("gateway6: deprecated" in w for w in m.warnings)


def test_v2_feature_set_renders() -> None:
    files = networkd_files(parse_config(yaml.safe_load(FEATURES)))
    check_files(files)
    assert sorted(files) == sorted([
        "10-tether-lan.link", "10-tether-lan.network", "10-tether-eno1.network", "10-tether-p1.network",
        "10-tether-p2.network", "10-tether-p3.network", "10-tether-bond0.netdev", "10-tether-bond0.network",
        "10-tether-br0.netdev", "10-tether-br0.network", "10-tether-vlan10.netdev", "10-tether-vlan10.network"])

    def items(name: str) -> list[tuple[str, str, str]]:
        return parse_unit(files[name])

    assert items("10-tether-lan.link") == [
        ("Match", "OriginalName", "enp*"), ("Match", "Driver", "virtio_net"),
        ("Link", "NamePolicy", "keep kernel database onboard slot path"), ("Link", "MACAddressPolicy", "persistent"),
        ("Link", "WakeOnLan", "magic")]
    assert items("10-tether-lan.network") == [
        ("Match", "Name", "enp*"), ("Match", "Driver", "virtio_net"), ("Link", "RequiredForOnline", "no"),
        ("Network", "DHCP", "yes"), ("Network", "LinkLocalAddressing", "ipv6"),
        ("DHCPv4", "RouteMetric", "50"), ("DHCPv4", "UseDNS", "no"), ("DHCPv4", "UseNTP", "no"),
        ("DHCPv4", "SendHostname", "yes"), ("DHCPv4", "Hostname", "box"), ("DHCPv4", "ClientIdentifier", "mac"),
        ("DHCPv6", "UseDNS", "no")]
    assert items("10-tether-eno1.network") == [
        ("Match", "Name", "eno1"), ("Link", "MACAddress", "02:00:00:00:00:01"),
        ("Network", "IPv6AcceptRA", "no"), ("Network", "Address", "10.0.0.5/24"),
        ("Network", "Address", "2001:db8::5/64"), ("Network", "Address", "10.0.0.6/24"),
        ("Route", "Gateway", "2001:db8::1"),
        ("Route", "Destination", "172.16.0.0/12"), ("Route", "Gateway", "10.0.0.1"), ("Route", "Table", "100")]
    assert items("10-tether-p1.network") == [
        ("Match", "PermanentMACAddress", "52:54:00:00:00:11"), ("Network", "Bond", "bond0"),
        ("Network", "LinkLocalAddressing", "no"), ("Network", "PrimarySlave", "yes")]
    assert ("Network", "PrimarySlave", "yes") not in items("10-tether-p2.network")
    assert items("10-tether-bond0.netdev") == [
        ("NetDev", "Name", "bond0"), ("NetDev", "Kind", "bond"), ("NetDev", "MTUBytes", "9000"),
        ("NetDev", "MACAddress", "52:54:00:00:00:ff"),
        ("Bond", "Mode", "active-backup"), ("Bond", "TransmitHashPolicy", "layer3+4"),
        ("Bond", "MIIMonitorSec", "100ms"), ("Bond", "UpDelaySec", "1000ms"), ("Bond", "DownDelaySec", "200ms"),
        ("Bond", "LearnPacketIntervalSec", "2s"), ("Bond", "FailOverMACPolicy", "active"),
        ("Bond", "ARPIPTargets", "10.0.0.1"), ("Bond", "GratuitousARP", "3"), ("Bond", "AllSlavesActive", "no")]
    assert items("10-tether-bond0.network") == [
        ("Match", "Name", "bond0"), ("Link", "MTUBytes", "9000"), ("Network", "Address", "192.168.50.2/24"),
        ("Network", "VLAN", "vlan10")]
    assert items("10-tether-br0.netdev") == [
        ("NetDev", "Name", "br0"), ("NetDev", "Kind", "bridge"), ("Bridge", "Priority", "100"),
        ("Bridge", "STP", "yes")]
    assert items("10-tether-p3.network") == [
        ("Match", "Name", "p3"), ("Network", "Bridge", "br0"), ("Network", "LinkLocalAddressing", "no")]
    assert items("10-tether-vlan10.netdev") == [
        ("NetDev", "Name", "vlan10"), ("NetDev", "Kind", "vlan"), ("VLAN", "Id", "10")]


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        parse_config(yaml.safe_load(text), "network-config")
    return [str(x) for x in e.value.errors]


def test_v2_errors_name_the_path() -> None:
    errs = _errors("""
version: 2
ethernets:
  eth0:
    addresses: [10.0.0.5/24, 10.0.0.999/24, 10.0.0.7]
    routes: [{to: 10.1.0.0/16, via: 'fe80::1'}]
    match: {macaddress: 'nope'}
    set-name: 'way-too-long-a-name'
    mtu: big
  eth1: {}
bonds:
  bond0: {interfaces: [eth1, ghost], parameters: {mode: balance-tcp, mii-monitor-interval: soon}}
vlans:
  v1: {id: 5000, link: nowhere}
  v2: {link: eth0}
""")
    assert errs == ["network-config: ethernets.eth0.mtu: expected an integer or null, got a string ('big')",
                    "network-config: vlans.v2.id: missing required key"]
    errs = _errors("""
version: 2
ethernets:
  eth0:
    addresses: [10.0.0.5/24, 10.0.0.999/24, 10.0.0.7]
    routes: [{to: 10.1.0.0/16, via: 'fe80::1'}]
    match: {macaddress: 'nope'}
    set-name: 'way-too-long-a-name'
  eth1: {}
bonds:
  bond0: {interfaces: [eth1, ghost], parameters: {mode: balance-tcp, mii-monitor-interval: soon}}
vlans:
  v1: {id: 5000, link: nowhere}
""")
    assert errs == [
        "network-config: ethernets.eth0.match.macaddress: 'nope' is not a MAC address "
        "(expected six hex pairs like 52:54:00:12:34:56)",
        "network-config: ethernets.eth0.set-name: 'way-too-long-a-name' is not a valid interface name "
        "(1-15 characters, no spaces, '/' or ':')",
        "network-config: ethernets.eth0.addresses[1]: '10.0.0.999/24' is not an IP address",
        "network-config: ethernets.eth0.addresses[2]: expected an address with a prefix length like 10.0.0.5/24, "
        "got '10.0.0.7'",
        "network-config: ethernets.eth0.routes[0].via: fe80::1 is not in the address family of 10.1.0.0/16",
        "network-config: bonds.bond0.interfaces[1]: 'ghost' is not defined in this config",
        "network-config: bonds.bond0.parameters.mode: 'balance-tcp' is not a bond mode networkd supports "
        "(balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb)",
        "network-config: bonds.bond0.parameters.mii-monitor-interval: 'soon' is not a duration "
        "(a number, or with ms/s/min)",
        "network-config: vlans.v1.id: 5000 is outside 0-4094",
        "network-config: vlans.v1.link: 'nowhere' is not defined in this config",
    ]


def test_v2_set_name_needs_match_and_ids_are_unique() -> None:
    errs = _errors("""
version: 2
ethernets:
  eth0: {set-name: lan0}
  bond0: {}
bonds:
  bond0: {interfaces: []}
""")
    assert "network-config: ethernets.eth0.set-name: set-name needs a match (by macaddress, name or driver)" in errs
    assert "network-config: bonds.bond0: 'bond0' is defined twice (first at ethernets.bond0)" in errs


def test_v2_empty_sections_and_yes_no_strings() -> None:
    m = parse_config({"version": 2, "ethernets": {"eth0": {"dhcp4": "yes", "dhcp6": "no"}}, "bonds": None})
    eth0 = m.get("eth0")
    assert eth0 and eth0.dhcp4 and not eth0.dhcp6
