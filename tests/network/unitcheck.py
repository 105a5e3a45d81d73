"""A small `systemd-analyze verify` stand-in for networkd files: strict INI syntax, known sections and keys
(from the systemd 252 man pages, cross-checked against the installed systemd-networkd binary when present),
and values of the right shape."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from functools import cache
from pathlib import Path

NETWORKD = Path("/lib/systemd/systemd-networkd")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_BOOL = {"yes", "no", "true", "false", "1", "0", "on", "off"}
_TIME = re.compile(r"^\d+(ms|s|min)?$")

ALLOWED: dict[str, dict[str, set[str]]] = {
    ".link": {
        "Match": {"MACAddress", "PermanentMACAddress", "OriginalName", "Path", "Driver", "Type", "Property"},
        "Link": {"Name", "NamePolicy", "MACAddressPolicy", "MACAddress", "MTUBytes", "WakeOnLan", "Description"},
    },
    ".netdev": {
        "NetDev": {"Name", "Kind", "MTUBytes", "MACAddress", "Description"},
        "Bond": {"Mode", "TransmitHashPolicy", "LACPTransmitRate", "MIIMonitorSec", "UpDelaySec", "DownDelaySec",
                 "LearnPacketIntervalSec", "AdSelect", "AdActorSystemPriority", "AdUserPortKey", "AdActorSystem",
                 "FailOverMACPolicy", "ARPValidate", "ARPIntervalSec", "ARPIPTargets", "ARPAllTargets",
                 "PrimaryReselectPolicy", "ResendIGMP", "PacketsPerSlave", "GratuitousARP", "AllSlavesActive",
                 "DynamicTransmitLoadBalancing", "MinLinks"},
        "Bridge": {"HelloTimeSec", "MaxAgeSec", "ForwardDelaySec", "AgeingTimeSec", "Priority", "STP",
                   "MulticastSnooping", "VLANFiltering", "DefaultPVID"},
        "VLAN": {"Id", "Protocol", "GVRP", "MVRP", "LooseBinding", "ReorderHeader"},
    },
    ".network": {
        "Match": {"Name", "MACAddress", "PermanentMACAddress", "Driver", "Type", "Path"},
        "Link": {"MACAddress", "MTUBytes", "RequiredForOnline", "ARP", "Unmanaged"},
        "Network": {"DHCP", "Address", "Gateway", "DNS", "Domains", "VLAN", "Bond", "Bridge", "IPv6AcceptRA",
                    "LinkLocalAddressing", "ConfigureWithoutCarrier", "PrimarySlave", "ActiveSlave"},
        "Route": {"Destination", "Gateway", "GatewayOnLink", "Metric", "Table", "Scope", "Source"},
        "DHCPv4": {"RouteMetric", "UseDNS", "UseDomains", "UseHostname", "UseMTU", "UseNTP", "UseRoutes",
                   "SendHostname", "Hostname", "ClientIdentifier"},
        "DHCPv6": {"UseDNS", "UseDomains", "UseHostname", "UseNTP"},
        "Bridge": {"Cost", "Priority"},
    },
}
REPEATABLE = {"Route", "Address"}


@cache
def networkd_keys() -> frozenset[str] | None:
    """``Section.Key`` names compiled into the installed systemd-networkd (its config parser tables)."""
    if not NETWORKD.exists():
        return None
    out = subprocess.run(["strings", str(NETWORKD)], capture_output=True, text=True, timeout=30).stdout
    return frozenset(x for x in out.split() if re.match(r"^[A-Z][A-Za-z0-9]*\.[A-Z][A-Za-z0-9]*$", x))


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) triples; raises AssertionError on anything systemd would not parse cleanly."""
    out = []
    section = None
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        m = re.match(r"^\[([A-Za-z0-9]+)\]$", s)
        if m:
            section = m.group(1)
            assert section in REPEATABLE or section not in seen, f"line {n}: section [{section}] repeated"
            seen.add(section)
            continue
        assert section is not None, f"line {n}: key outside a section"
        assert "=" in s, f"line {n}: not Key=Value: {s!r}"
        key, value = s.split("=", 1)
        assert re.match(r"^[A-Za-z0-9]+$", key), f"line {n}: bad key {key!r}"
        assert value == value.strip() and value, f"line {n}: empty or padded value for {key}"
        out.append((section, key, value))
    return out


def check_file(name: str, text: str) -> list[tuple[str, str, str]]:
    ext = Path(name).suffix
    assert ext in ALLOWED, f"{name}: unexpected extension"
    items = parse_unit(text)
    sections = {s for s, _, _ in items}
    assert "Match" in sections or ext == ".netdev", f"{name}: no [Match]"
    if ext == ".netdev":
        assert ("NetDev", "Kind") in {(s, k) for s, k, _ in items}, f"{name}: netdev without Kind"
    compiled = networkd_keys()
    for section, key, value in items:
        assert section in ALLOWED[ext], f"{name}: unknown section [{section}]"
        assert key in ALLOWED[ext][section], f"{name}: unknown key {key} in [{section}]"
        if compiled is not None and ext != ".link":
            assert f"{section}.{key}" in compiled, f"{name}: systemd-networkd does not know {section}.{key}"
        _check_value(name, section, key, value)
    return items


def _check_value(name: str, section: str, key: str, value: str) -> None:
    where = f"{name}: [{section}] {key}={value}"
    if key in ("MACAddress", "PermanentMACAddress"):
        assert _MAC.match(value), where
    if key == "Address":
        ipaddress.ip_interface(value)
    if key in ("Gateway", "DNS"):
        for v in value.split():
            ipaddress.ip_address(v)
    if key == "Destination":
        ipaddress.ip_network(value)
    if key.endswith("Sec"):
        assert _TIME.match(value), where
    if key in ("MTUBytes", "Metric", "Id", "Priority", "Cost", "RouteMetric", "MinLinks"):
        assert value.isdigit(), where
    if key in ("STP", "GatewayOnLink", "IPv6AcceptRA", "UseDNS", "UseMTU", "UseNTP", "PrimarySlave",
               "RequiredForOnline", "AllSlavesActive"):
        assert value in _BOOL, where
    if key == "DHCP":
        assert value in ("yes", "no", "ipv4", "ipv6"), where
    if key == "Kind":
        assert value in ("bond", "bridge", "vlan"), where
    if key == "Name" and section in ("NetDev", "Link"):
        assert 0 < len(value) <= 15 and "/" not in value, where


def check_files(files: dict[str, str]) -> None:
    for name, text in files.items():
        check_file(name, text)
    # every Bond=/Bridge=/VLAN= names a netdev defined alongside
    netdevs = {v for n, t in files.items() if n.endswith(".netdev")
               for s, k, v in parse_unit(t) if (s, k) == ("NetDev", "Name")}
    for n, t in files.items():
        for s, k, v in parse_unit(t):
            if s == "Network" and k in ("Bond", "Bridge", "VLAN"):
                assert v in netdevs, f"{n}: {k}={v} but no .netdev defines {v}"
