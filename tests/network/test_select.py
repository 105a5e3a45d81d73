"""Which config applies: cloud-init's order, the disabled switch, decoding, OpenStack, fallback."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from tether.errors import ConfigError
from tether.network.live import Iface
from tether.network.openstack import network_data_to_v1
from tether.network.parse import parse_config
from tether.network.select import select_config

NICS = [Iface("lo", None, True, True, False), Iface("eth10", "52:54:00:00:00:10", True, True, True),
        Iface("eth2", "52:54:00:00:00:02", True, True, True), Iface("br0", "52:54:00:00:00:aa", True, True, False)]
V1 = {"version": 1, "config": [{"type": "physical", "name": "eth0", "subnets": [{"type": "dhcp"}]}]}
V2 = {"version": 2, "ethernets": {"eth1": {"dhcp4": True}}}
DISABLED = {"config": "disabled"}


def b64(doc: object, gz: bool = False) -> str:
    raw = json.dumps(doc).encode()
    return base64.b64encode(gzip.compress(raw) if gz else raw).decode()


def sel(cmdline: str = "", system: dict | None = None, ds: dict | None = None,
        ifaces: list[Iface] | None = None) -> tuple[dict | None, str]:
    return select_config(cmdline=cmdline, system_config=system or {}, datasource_config=ds,
                         fallback_ifaces=NICS if ifaces is None else ifaces)


def test_order_cmdline_then_system_then_datasource_then_fallback() -> None:
    assert sel(f"ro network-config={b64(V1)}", {"network": V2}, V2) == (V1, "kernel command line network-config=")
    assert sel("ro quiet", {"network": V2}, V1) == (V2, "system config network:")
    assert sel("ro quiet", {}, {"network": V1}) == (V1, "datasource network config")
    cfg, reason = sel("ro quiet", {}, None)
    assert reason == "fallback: DHCPv4 on eth2"
    assert cfg == {"version": 2, "ethernets": {"eth2": {"match": {"macaddress": "52:54:00:00:00:02"},
                                                        "set-name": "eth2", "dhcp4": True}}}


def test_disabled_switch_at_each_level() -> None:
    assert sel("network-config=disabled", {"network": V2}, V1) == (None, "disabled by kernel command line "
                                                                         "network-config=")
    assert sel(f"network-config={b64({'network': DISABLED})}", {}, V1)[0] is None
    assert sel("", {"network": DISABLED}, V1) == (None, "disabled by system config network:")
    assert sel("", {}, {"network": DISABLED}) == (None, "disabled by datasource network config")
    # nothing at all and disabled nowhere: fallback, never None-with-reason "disabled"
    assert sel("", {}, None)[0] is not None


def test_first_source_that_speaks_wins_over_a_later_disable() -> None:
    # cloud-init semantics: a config on the kernel command line beats "disabled" in the system config
    assert sel(f"network-config={b64(V1, gz=True)}", {"network": DISABLED}, None)[0] == V1


def test_renderer_options_alone_do_not_count_as_a_config() -> None:
    assert sel("", {"network": {"renderers": ["networkd"]}}, V1) == (V1, "datasource network config")


def test_last_network_config_on_the_cmdline_wins_and_gzip_is_accepted() -> None:
    assert sel(f"network-config={b64(V2)} network-config={b64(V1, gz=True)}")[0] == V1


def test_undecodable_cmdline_config_is_an_error() -> None:
    with pytest.raises(ConfigError, match="kernel command line network-config=: not valid base64"):
        sel("network-config=%%%")
    with pytest.raises(ConfigError, match="expected a mapping"):
        sel(f"network-config={base64.b64encode(b'- a list').decode()}")


def test_fallback_skips_virtual_and_prefers_carrier() -> None:
    nics = [Iface("eth0", "52:54:00:00:00:01", True, False, True), Iface("eth1", "52:54:00:00:00:02", True, True, True)]
    assert sel(ifaces=nics)[1] == "fallback: DHCPv4 on eth1"
    assert sel(ifaces=[Iface("lo", None, True, True, False), Iface("veth0", "02:00:00:00:00:01", True, True, False)]) \
        == (None, "fallback: no physical interface to configure")


NETWORK_DATA = {
    "links": [
        {"id": "tap-a", "type": "phy", "ethernet_mac_address": "FA:16:3E:00:00:01", "mtu": 1500},
        {"id": "tap-b", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:02"},
        {"id": "bond0", "type": "bond", "bond_links": ["tap-a", "tap-b"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4", "ethernet_mac_address": "fa:16:3e:00:00:01"},
        {"id": "vlan0", "type": "vlan", "vlan_link": "bond0", "vlan_id": 101,
         "vlan_mac_address": "fa:16:3e:00:00:01"},
        {"id": "tap-c", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:03"},
    ],
    "networks": [
        {"id": "network0", "type": "ipv4", "link": "vlan0", "ip_address": "10.0.0.5", "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]},
        {"id": "network1", "type": "ipv6", "link": "vlan0", "ip_address": "2001:db8::5",
         "netmask": "ffff:ffff:ffff:ffff::"},
        {"id": "network2", "type": "ipv4_dhcp", "link": "tap-c"},
    ],
    "services": [{"type": "dns", "address": "10.0.0.2"}],
}


def test_openstack_network_data_from_the_datasource() -> None:
    nics = [Iface("ens3", "fa:16:3e:00:00:01", True, True, True), Iface("ens4", "fa:16:3e:00:00:02", True, True, True)]
    cfg, reason = sel(ds=NETWORK_DATA, ifaces=nics)
    assert reason == "datasource network config (OpenStack network_data.json)"
    assert cfg is not None
    m = parse_config(cfg)
    assert [(i.id, i.kind) for i in m.interfaces] == [("ens3", "physical"), ("ens4", "physical"),
                                                      ("tap-c", "physical"), ("bond0", "bond"),
                                                      ("bond0.101", "vlan")]
    bond = m.get("bond0")
    assert bond and bond.members == ("ens3", "ens4") and bond.bond and bond.bond.mode == "802.3ad"
    assert bond.bond.mii_monitor_ms == 100 and bond.bond.transmit_hash_policy == "layer3+4"
    vlan = m.get("bond0.101")   # named after the link it sits on
    assert vlan and vlan.vlan_link == "bond0" and vlan.addresses == ("10.0.0.5/24", "2001:db8::5/64")
    assert [r.to for r in vlan.routes] == ["0.0.0.0/0"]
    assert m.get("tap-c").dhcp4 and m.nameservers == ("10.0.0.2",)  # type: ignore[union-attr]


def test_openstack_bad_references_are_named() -> None:
    bad = {"links": [{"id": "v", "type": "vlan", "vlan_link": "nope", "vlan_id": 1}],
           "networks": [{"id": "n", "type": "ipv4", "link": "ghost"}], "services": []}
    with pytest.raises(Exception) as e:
        network_data_to_v1(bad)
    assert "links[0].vlan_link: 'nope' is not a defined link" in str(e.value)
    assert "networks[0].link: 'ghost' is not a defined link" in str(e.value)
