"""Network config v1: every cloud-init example renders, nine are checked file by file, bad input is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import compat_dir
from tests.network.unitcheck import check_files
from tether.errors import ConfigErrors
from tether.network.model import Route
from tether.network.networkd import networkd_files
from tether.network.parse import parse_config

EXPECTED = Path(__file__).parent / "expected"
EXAMPLES = ["bonded-pair", "bonded-vlan", "bridge", "multiple-vlan", "nameserver", "physical-3-nic",
            "physical-dhcp", "route", "subnet-dhcp", "subnet-multiple", "subnet-routes", "subnet-static", "vlan"]
GOLDEN = sorted(p.name[3:] for p in EXPECTED.iterdir() if p.name.startswith("v1-"))


def example(name: str) -> dict:
    return yaml.safe_load((compat_dir("cloud-init", "doc", "examples") / f"network-config-v1-{name}.yaml")
                          .read_text())


def test_example_list_is_complete() -> None:
    found = sorted(p.name[len("network-config-v1-"):-5]
                   for p in compat_dir("cloud-init", "doc", "examples").glob("network-config-v1-*.yaml"))
    assert found == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_renders_valid_files(name: str) -> None:
    model = parse_config(example(name))
    files = networkd_files(model)
    assert files
    check_files(files)
    # every device in the example has its .network file
    for entry in example(name)["network"]["config"]:
        if entry["type"] in ("physical", "bond", "bridge", "vlan"):
            assert f"10-tether-{entry['name']}.network" in files


def test_golden_set_covers_the_required_features() -> None:
    assert {"bonded-vlan", "bridge", "multiple-vlan", "route", "subnet-routes", "subnet-multiple"} <= set(GOLDEN)


@pytest.mark.parametrize("name", GOLDEN)
def test_example_output_file_by_file(name: str) -> None:
    files = networkd_files(parse_config(example(name)))
    want = {p.name: p.read_text() for p in (EXPECTED / f"v1-{name}").iterdir()}
    assert sorted(files) == sorted(want)
    for fname, text in want.items():
        assert files[fname] == text, fname


def test_subnet_routes_semantics() -> None:
    m = parse_config(example("subnet-routes"))
    i = m.get("interface0")
    assert i and i.dhcp4 and i.dhcp4_options and i.dhcp4_options.route_metric == 200
    assert i.addresses == ("10.184.225.122/30",)
    assert i.routes == (Route("10.176.0.0/12", "10.184.225.121", 100), Route("10.208.0.0/12", "10.184.225.121", 100))


def test_global_nameserver_and_interface_nameserver() -> None:
    m = parse_config(example("multiple-vlan"))
    assert m.nameservers == ("10.245.168.2",) and m.search == ("dellstack",)
    # eth1.2667 has no DNS of its own, so it gets the global servers and search
    assert m.dns_for(m.get("eth1.2667")) == (("10.245.168.2",), ("dellstack",))  # type: ignore[arg-type]
    m2 = parse_config(example("nameserver"))
    assert m2.nameservers == () and m2.get("interface0").nameservers == ("192.168.23.2", "8.8.8.8")  # type: ignore


def test_route_outside_every_subnet_is_on_link_with_warning() -> None:
    m = parse_config(example("route"))
    r = m.get("interface0").routes[-1]  # type: ignore[union-attr]
    assert r == Route("192.168.24.0/24", "192.168.24.1", 3, on_link=True)
    assert any("outside every subnet" in w for w in m.warnings)


def _errors(doc: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        parse_config(doc)
    return [str(x) for x in e.value.errors]


def test_bad_values_are_reported_with_paths() -> None:
    errs = _errors({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "mac_address": "zz:11", "subnets": [
            {"type": "static", "address": "10.0.0.300/24"},
            {"type": "static", "address": "10.0.0.5", "netmask": "255.0.255.0"},
            {"type": "static", "address": "10.0.0.6/24", "gateway": "fe80::1"}]},
        {"type": "vlan", "name": "eth0.5", "vlan_link": "eth9", "vlan_id": 5000},
        {"type": "bond", "name": "bond0", "bond_interfaces": ["eth0", "nope"], "params": {"bond-mode": "turbo"}},
        {"type": "wifi", "name": "w"},
        {"type": "physical", "name": "this-name-is-too-long"},
    ]})
    assert errs == [
        "config[3].type: expected one of physical, bond, bridge, vlan, nameserver, route, got 'wifi'",
        "config[0].mac_address: 'zz:11' is not a MAC address (expected six hex pairs like 52:54:00:12:34:56)",
        "config[0].subnets[0].address: '10.0.0.300/24' is not an IP address",
        "config[0].subnets[1].netmask: '255.0.255.0' is not a valid IPv4 netmask",
        "config[0].subnets[2].gateway: fe80::1 is not in the address family of 10.0.0.6/24",
        "config[1].vlan_id: 5000 is outside 0-4094",
        "config[1].vlan_link: 'eth9' is not defined in this config",
        "config[2].bond_interfaces[1]: 'nope' is not defined in this config",
        "config[2].params.bond-mode: 'turbo' is not a bond mode networkd supports "
        "(balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb)",
        "config[4].name: 'this-name-is-too-long' is not a valid interface name "
        "(1-15 characters, no spaces, '/' or ':')",
    ]


def test_shape_errors_come_from_the_typed_converter() -> None:
    errs = _errors({"version": 1, "config": [{"type": "vlan", "name": "v", "vlan_link": "x", "vlan_id": "ten"}]})
    assert errs == ["config[0].vlan_id: expected an integer, got a string ('ten')"]


def test_duplicate_names_and_double_membership() -> None:
    errs = _errors({"version": 1, "config": [
        {"type": "physical", "name": "eth0"}, {"type": "physical", "name": "eth0"},
        {"type": "physical", "name": "eth1"},
        {"type": "bond", "name": "bond0", "bond_interfaces": ["eth1"]},
        {"type": "bridge", "name": "br0", "bridge_interfaces": ["eth1"], "params": {}},
    ]})
    assert "config[1].name: 'eth0' is defined twice (first at config[0].name)" in errs
    assert "config[4]: 'eth1' is already a member of 'bond0'" in errs


def test_unknown_keys_are_warnings_not_errors() -> None:
    m = parse_config({"network": {"version": 1, "config": [
        {"type": "physical", "name": "eth0", "colour": "blue", "subnets": [{"type": "dhcp"}]}]}})
    assert m.get("eth0").dhcp4  # type: ignore[union-attr]
    assert "config[0].colour: unknown key, ignored" in m.warnings


def test_ipv6_subnets() -> None:
    m = parse_config({"version": 1, "config": [
        {"type": "physical", "name": "eth0", "subnets": [
            {"type": "static6", "address": "2001:db8::5/64", "gateway": "2001:db8::1"},
            {"type": "dhcp6"}, {"type": "ipv6_slaac"}]},
    ]})
    i = m.get("eth0")
    assert i and i.dhcp6 and not i.dhcp4 and i.accept_ra is True
    assert i.routes == (Route("::/0", "2001:db8::1"),)
    files = networkd_files(m)
    check_files(files)
    net = files["10-tether-eth0.network"]
    assert "DHCP=ipv6\nIPv6AcceptRA=yes\nAddress=2001:db8::5/64\n" in net
    assert "[Route]\nGateway=2001:db8::1\n" in net
