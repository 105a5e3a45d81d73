"""OpenStack ``network_data.json`` (config drive and metadata service) as network config v1.

``links`` are L2 devices (NICs by MAC, bonds, VLANs), ``networks`` their L3 settings, ``services`` the DNS
servers. Links name NICs by an opaque id, so a NIC's name comes from ``known_macs`` (the machine's
interfaces); when the MAC is not on this machine (rendering for another root) the link's ``name`` or id is
used and the NIC is renamed to it.
"""

from __future__ import annotations

from typing import Any

from tether.errors import ConfigError, ConfigErrors
from tether.network.checks import MAX_IFNAME

_PHYSICAL_TYPES = {"phy", "ethernet", "ovs", "bridge", "hw_veb", "hyperv", "vhostuser", "vif", "tap",
                   "vrouter", "bridge_veb", "dvs", "macvtap", "vdpa", "ib_hostdev", "unbound", "other"}
_L3_TYPES = {"ipv4": "static", "ipv6": "static6", "ipv4_dhcp": "dhcp4", "ipv6_dhcp": "dhcp6",
             "ipv6_slaac": "ipv6_slaac", "ipv6_dhcpv6-stateless": "ipv6_dhcpv6-stateless",
             "ipv6_dhcpv6-stateful": "ipv6_dhcpv6-stateful"}


def is_network_data(doc: Any) -> bool:
    return isinstance(doc, dict) and "version" not in doc and isinstance(doc.get("links"), list)


def network_data_to_v1(doc: dict[str, Any], known_macs: dict[str, str] | None = None) -> dict[str, Any]:
    """Convert; raises ``ConfigErrors`` with paths like ``links[2].vlan_link``."""
    errors: list[ConfigError] = []
    macs = {k.lower(): v for k, v in (known_macs or {}).items()}
    links = doc.get("links") or []
    names: dict[str, str] = {}
    config: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}

    # NICs first, so bonds and VLANs can refer to them by name
    for i, link in enumerate(links):
        if not isinstance(link, dict) or not isinstance(link.get("id"), str):
            errors.append(ConfigError(f"links[{i}]", "expected a mapping with a string id"))
            continue
        by_id[link["id"]] = link
        if link.get("type") in ("bond", "vlan"):
            continue
        mac = str(link.get("ethernet_mac_address") or "").lower()
        name = macs.get(mac) or link.get("name") or link["id"][:MAX_IFNAME]
        names[link["id"]] = name
        entry: dict[str, Any] = {"type": "physical", "name": name}
        if mac:
            entry["mac_address"] = mac
        if isinstance(link.get("mtu"), int):
            entry["mtu"] = link["mtu"]
        config.append(entry)
    for i, link in enumerate(links):
        if not isinstance(link, dict) or link.get("type") != "bond":
            continue
        name = link.get("name") or link["id"][:MAX_IFNAME]
        names[link["id"]] = name
        members = []
        for j, ref in enumerate(link.get("bond_links") or []):
            if ref not in names:
                errors.append(ConfigError(f"links[{i}].bond_links[{j}]", f"{ref!r} is not a NIC link"))
            else:
                members.append(names[ref])
        params = {f"bond-{k[5:]}": v for k, v in link.items()
                  if k.startswith("bond_") and k != "bond_links" and v is not None}
        entry = {"type": "bond", "name": name, "bond_interfaces": members, "params": params}
        if link.get("ethernet_mac_address"):
            entry["mac_address"] = str(link["ethernet_mac_address"]).lower()
        if isinstance(link.get("mtu"), int):
            entry["mtu"] = link["mtu"]
        config.append(entry)
    for i, link in enumerate(links):
        if not isinstance(link, dict) or link.get("type") != "vlan":
            continue
        parent = names.get(link.get("vlan_link", ""))
        if parent is None:
            errors.append(ConfigError(f"links[{i}].vlan_link", f"{link.get('vlan_link')!r} is not a defined link"))
            continue
        vid = link.get("vlan_id")
        name = str(link.get("name") or f"{parent}.{vid}")
        if len(name) > MAX_IFNAME:
            name = f"vlan{vid}"
        names[link["id"]] = name
        entry = {"type": "vlan", "name": name, "vlan_link": parent, "vlan_id": vid}
        vmac = link.get("vlan_mac_address") or link.get("ethernet_mac_address")
        if vmac:
            entry["mac_address"] = str(vmac).lower()
        if isinstance(link.get("mtu"), int):
            entry["mtu"] = link["mtu"]
        config.append(entry)
    for i, link in enumerate(links):
        if isinstance(link, dict) and link.get("type") not in _PHYSICAL_TYPES | {"bond", "vlan", None}:
            errors.append(ConfigError(f"links[{i}].type", f"unknown link type {link.get('type')!r}"))

    entries = {e["name"]: e for e in config}
    for i, net in enumerate(doc.get("networks") or []):
        path = f"networks[{i}]"
        if not isinstance(net, dict):
            errors.append(ConfigError(path, "expected a mapping"))
            continue
        name = names.get(net.get("link", ""))
        if name is None:
            errors.append(ConfigError(f"{path}.link", f"{net.get('link')!r} is not a defined link"))
            continue
        stype = _L3_TYPES.get(net.get("type", ""))
        if stype is None:
            errors.append(ConfigError(f"{path}.type", f"unknown network type {net.get('type')!r}"))
            continue
        subnet: dict[str, Any] = {"type": stype}
        if stype.startswith("static"):
            subnet["address"] = net.get("ip_address")
            if net.get("netmask") is not None:
                subnet["netmask"] = net["netmask"]
            routes = []
            for r in net.get("routes") or []:
                route = {"destination": r.get("network"), "gateway": r.get("gateway")}
                if r.get("netmask") is not None:
                    route["netmask"] = r["netmask"]
                if r.get("metric") is not None:
                    route["metric"] = r["metric"]
                routes.append(route)
            if routes:
                subnet["routes"] = routes
            dns = [s["address"] for s in net.get("services") or []
                   if isinstance(s, dict) and s.get("type") == "dns" and s.get("address")]
            if dns:
                subnet["dns_nameservers"] = dns
        entries[name].setdefault("subnets", []).append(subnet)

    dns = [s["address"] for s in doc.get("services") or []
           if isinstance(s, dict) and s.get("type") == "dns" and s.get("address")]
    if dns:
        config.append({"type": "nameserver", "address": dns})
    if errors:
        raise ConfigErrors(errors)
    return {"version": 1, "config": config}
