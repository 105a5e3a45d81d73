"""The OpenStack metadata format, shared by the metadata service (OpenStack) and the config drive (ConfigDrive).

``parse_openstack(meta_data, user_data, vendor_data, network_data)`` turns the four documents of
``openstack/latest/`` into InstanceData; ``network_data_to_v1()`` converts ``network_data.json`` (links,
networks, services) into network config v1.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tether import log
from tether.datasources.mdfetch import parse_host_config
from tether.errors import DatasourceError
from tether.instance import InstanceData

LOG = log.get(__name__)

HOST_CONFIG_KEYS = ("host-configuration", "host_configuration")
# network_data.json link types that are plain NICs (everything that is not bond/vlan)
_BOND, _VLAN = "bond", "vlan"


def _err(where: str, msg: str) -> DatasourceError:
    return DatasourceError(f"network_data.json: {where}: {msg}")


def _prefix_len(netmask: Any, where: str) -> int:
    """Prefix length of a dotted IPv4 mask, an IPv6 mask (ffff:ffff::) or a plain number."""
    text = str(netmask).strip()
    try:
        if text.isdigit():
            return int(text)
        addr = ipaddress.ip_address(text)
        bits = addr.max_prefixlen
        value = int(addr)
        plen = bits - (~value & ((1 << bits) - 1)).bit_length()
        if value != ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1):
            raise ValueError("not contiguous")
        return plen
    except ValueError:
        raise _err(where, f"invalid netmask {netmask!r}")


def network_data_to_v1(nd: Any, mac_to_name: dict[str, str] | None = None) -> dict[str, Any] | None:
    """network config v1 from ``network_data.json``; None when it holds no links."""
    if nd is None:
        return None
    if not isinstance(nd, dict):
        raise DatasourceError(f"network_data.json: expected a JSON object, got {type(nd).__name__}")
    links = nd.get("links") or []
    networks = nd.get("networks") or []
    services = nd.get("services") or []
    for key, val in (("links", links), ("networks", networks), ("services", services)):
        if not isinstance(val, list) or not all(isinstance(x, dict) for x in val):
            raise _err(key, "expected a list of objects")
    if not links:
        return None
    mac_to_name = {k.lower(): v for k, v in (mac_to_name or {}).items()}

    # Names first: NICs by their MAC on this host (else eth0, eth1...), bonds by id, VLANs as parent.vid.
    names: dict[str, str] = {}
    nic_index = 0
    for i, link in enumerate(links):
        lid = link.get("id")
        if not isinstance(lid, str) or not lid:
            raise _err(f"links[{i}].id", "missing")
        ltype = link.get("type", "phy")
        if ltype == _BOND:
            names[lid] = link.get("name") or (lid if lid.startswith("bond") else f"bond{i}")
        elif ltype != _VLAN:
            mac = str(link.get("ethernet_mac_address") or "").lower()
            names[lid] = link.get("name") or mac_to_name.get(mac) or f"eth{nic_index}"
            nic_index += 1
    for i, link in enumerate(links):
        if link.get("type") == _VLAN:
            parent = link.get("vlan_link")
            if parent not in names:
                raise _err(f"links[{i}].vlan_link", f"unknown link {parent!r}")
            names[link["id"]] = link.get("name") or f"{names[parent]}.{link.get('vlan_id')}"

    config: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for i, link in enumerate(links):
        ltype = link.get("type", "phy")
        name = names[link["id"]]
        entry: dict[str, Any]
        if ltype == _BOND:
            slaves = link.get("bond_links") or []
            if not isinstance(slaves, list) or any(s not in names for s in slaves):
                raise _err(f"links[{i}].bond_links", f"expected ids of other links, got {slaves!r}")
            params = {"bond-mode": link.get("bond_mode", "balance-rr")}
            for src, dst in (("bond_miimon", "bond-miimon"), ("bond_xmit_hash_policy", "bond-xmit-hash-policy"),
                             ("bond_lacp_rate", "bond-lacp-rate")):
                if link.get(src) is not None:
                    params[dst] = link[src]
            entry = {"type": "bond", "name": name, "bond_interfaces": [names[s] for s in slaves],
                     "params": params}
            if link.get("ethernet_mac_address"):
                entry["mac_address"] = str(link["ethernet_mac_address"]).lower()
        elif ltype == _VLAN:
            try:
                vid = int(link.get("vlan_id"))
            except (TypeError, ValueError):
                raise _err(f"links[{i}].vlan_id", f"expected a number, got {link.get('vlan_id')!r}")
            entry = {"type": "vlan", "name": name, "vlan_link": names[link["vlan_link"]], "vlan_id": vid}
            mac = link.get("vlan_mac_address") or link.get("ethernet_mac_address")
            if mac:
                entry["mac_address"] = str(mac).lower()
        else:
            entry = {"type": "physical", "name": name}
            if link.get("ethernet_mac_address"):
                entry["mac_address"] = str(link["ethernet_mac_address"]).lower()
        if link.get("mtu"):
            entry["mtu"] = link["mtu"]
        entry["subnets"] = []
        config.append(entry)
        by_id[link["id"]] = entry

    for i, net in enumerate(networks):
        where = f"networks[{i}]"
        target = by_id.get(net.get("link"))
        if target is None:
            raise _err(f"{where}.link", f"unknown link {net.get('link')!r}")
        target["subnets"].append(_subnet(net, where))

    dns = [s.get("address") for s in services if s.get("type") == "dns" and s.get("address")]
    if dns:
        config.append({"type": "nameserver", "address": dns})
    return {"version": 1, "config": config}


def _subnet(net: dict[str, Any], where: str) -> dict[str, Any]:
    ntype = str(net.get("type") or "")
    dhcp = {"ipv4_dhcp": "dhcp4", "dhcp4": "dhcp4", "ipv6_dhcp": "dhcp6", "dhcp6": "dhcp6",
            "ipv6_slaac": "ipv6_slaac", "ipv6_dhcpv6-stateless": "ipv6_dhcpv6-stateless",
            "ipv6_dhcpv6-stateful": "ipv6_dhcpv6-stateful"}
    if ntype in dhcp:
        return {"type": dhcp[ntype]}
    if ntype not in ("ipv4", "ipv6"):
        raise _err(f"{where}.type", f"unsupported network type {ntype!r}")
    addr = net.get("ip_address")
    if not isinstance(addr, str) or not addr:
        raise _err(f"{where}.ip_address", "missing for a static network")
    sub: dict[str, Any] = {"type": "static6" if ntype == "ipv6" else "static", "address": addr}
    if "/" not in addr and net.get("netmask"):
        if ntype == "ipv4":
            sub["netmask"] = net["netmask"]
        else:
            sub["address"] = f"{addr}/{_prefix_len(net['netmask'], where + '.netmask')}"
    routes = []
    for j, r in enumerate(net.get("routes") or []):
        if not isinstance(r, dict):
            raise _err(f"{where}.routes[{j}]", "expected an object")
        network, mask, gw = r.get("network"), r.get("netmask"), r.get("gateway")
        if network in ("0.0.0.0", "::") and (mask in ("0.0.0.0", "::", 0, "0") or mask is None):
            sub["gateway"] = gw
            continue
        plen = _prefix_len(mask, f"{where}.routes[{j}].netmask") if mask is not None else None
        route = {"network": network, "gateway": gw}
        if plen is not None:
            route["prefix"] = plen
        routes.append(route)
    if routes:
        sub["routes"] = routes
    if net.get("dns_nameservers"):
        sub["dns_nameservers"] = list(net["dns_nameservers"])
    return sub


def vendordata_bytes(vd: Any) -> bytes | None:
    """cloud-init's vendor data conversion: a string as is; a mapping's ``cloud-init`` key; else nothing."""
    if vd is None:
        return None
    if isinstance(vd, bytes):
        return vd
    if isinstance(vd, str):
        return vd.encode()
    if isinstance(vd, dict):
        return vendordata_bytes(vd.get("cloud-init")) if "cloud-init" in vd else None
    LOG.warning("vendor data of type %s ignored (only a string or a {cloud-init: ...} mapping is used)",
                type(vd).__name__)
    return None


def public_keys(md: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    pk = md.get("public_keys")
    if isinstance(pk, dict):
        for v in pk.values():
            if isinstance(v, str):
                keys.extend(x.strip() for x in v.splitlines() if x.strip())
    for k in md.get("keys") or []:
        if isinstance(k, dict) and k.get("type", "ssh") == "ssh" and isinstance(k.get("data"), str):
            keys.extend(x.strip() for x in k["data"].splitlines() if x.strip())
    return list(dict.fromkeys(keys))


def host_config_text(md: dict[str, Any]) -> str | None:
    meta = md.get("meta")
    if isinstance(meta, dict):
        for k in HOST_CONFIG_KEYS:
            if isinstance(meta.get(k), str):
                return str(meta[k])
    return None


def parse_openstack(meta_data: dict[str, Any], user_data: bytes | None, vendor_data: Any | None,
                    network_data: dict[str, Any] | None, *, vendor_data2: Any | None = None,
                    datasource: str = "OpenStack", subplatform: str = "",
                    mac_to_name: dict[str, str] | None = None) -> InstanceData:
    """InstanceData from OpenStack's ``meta_data.json``, ``user_data``, ``vendor_data.json`` and
    ``network_data.json`` (already JSON-decoded). ConfigDrive passes ``datasource="ConfigDrive"``."""
    if not isinstance(meta_data, dict):
        raise DatasourceError(f"meta_data.json: expected a JSON object, got {type(meta_data).__name__}")
    iid = meta_data.get("uuid") or meta_data.get("instance-id")
    if not isinstance(iid, str) or not iid.strip():
        raise DatasourceError("meta_data.json: uuid: missing or not a string")
    warnings: list[str] = []
    try:
        netcfg = network_data_to_v1(network_data, mac_to_name)
    except DatasourceError as e:
        LOG.warning("%s; network configuration from the datasource ignored", e)
        warnings.append(str(e))
        netcfg = None
    hostname = meta_data.get("hostname") or meta_data.get("name")
    az = meta_data.get("availability_zone")
    inst = InstanceData(
        datasource=datasource,
        instance_id=iid.strip(),
        subplatform=subplatform,
        platform="openstack",
        cloud_name="openstack",
        metadata=meta_data,
        userdata=user_data,
        vendordata=vendordata_bytes(vendor_data),
        vendordata2=vendordata_bytes(vendor_data2),
        network_config=netcfg,
        local_hostname=str(hostname) if hostname else None,
        public_ssh_keys=public_keys(meta_data),
        availability_zone=str(az) if az else None,
        ds={"network_data": network_data, "vendor_data": vendor_data} if network_data or vendor_data else {},
    )
    try:
        inst.host_configuration = parse_host_config(host_config_text(meta_data),
                                                    "OpenStack meta_data.json meta.host-configuration")
    except DatasourceError as e:
        LOG.warning("host configuration ignored: %s", e)
        warnings.append(str(e))
    if warnings:
        inst.ds["warnings"] = warnings
    return inst
