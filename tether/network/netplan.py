"""Netplan passthrough: when the target has netplan, hand it the config as /etc/netplan/50-tether.yaml.

A v2 document is written as given (netplan understands every key, including ones tether's model does not
carry); a v1 document is translated from the model. The file is 0600 because netplan warns about (and newer
versions refuse) world-readable configs, which may hold Wi-Fi or VPN secrets.
"""

from __future__ import annotations

from typing import Any

from tether.network.filesync import SyncReport, sync_files
from tether.network.model import BondParams, BridgeParams, DhcpOptions, Interface, NetworkModel, Route
from tether.target import Target

NETPLAN_BIN = "/usr/sbin/netplan"
NETPLAN_DIR = "/etc/netplan"
NETPLAN_FILE = "50-tether.yaml"
HEADER = "# Written by tether from the instance's network configuration; local changes will be replaced.\n"


def has_netplan(target: Target) -> bool:
    return target.exists(NETPLAN_BIN)


def netplan_yaml(v2_doc: dict[str, Any]) -> str:
    import yaml  # only when netplan is there to read the file
    return HEADER + yaml.safe_dump({"network": v2_doc}, sort_keys=False, default_flow_style=False)


def write_netplan(target: Target, v2_doc: dict[str, Any]) -> SyncReport:
    return sync_files(target, NETPLAN_DIR, {NETPLAN_FILE: netplan_yaml(v2_doc)}, owned_prefix=NETPLAN_FILE,
                      owned_suffixes=(".yaml",), mode=0o600)


def remove_netplan(target: Target) -> SyncReport:
    return sync_files(target, NETPLAN_DIR, {}, owned_prefix=NETPLAN_FILE, owned_suffixes=(".yaml",), mode=0o600)


def to_netplan(model: NetworkModel) -> dict[str, Any]:
    """The model as a netplan (v2) document."""
    out: dict[str, Any] = {"version": 2}
    sections = {"physical": "ethernets", "bond": "bonds", "bridge": "bridges", "vlan": "vlans"}
    for iface in model.interfaces:
        out.setdefault(sections[iface.kind], {})[iface.id] = _iface(model, iface)
    return out


def _iface(model: NetworkModel, i: Interface) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if i.match is not None:
        d["match"] = {k: v for k, v in (("name", i.match.name), ("macaddress", i.match.mac),
                                        ("driver", i.match.driver)) if v}
    if i.set_name:
        d["set-name"] = i.set_name
    if i.kind in ("bond", "bridge"):
        d["interfaces"] = list(i.members)
        params = _bond(i.bond) if i.kind == "bond" else _bridge(i.bridge)
        if params:
            d["parameters"] = params
    if i.kind == "vlan":
        d["id"] = i.vlan_id
        d["link"] = i.vlan_link
    if i.mac_address:
        d["macaddress"] = i.mac_address
    if i.mtu:
        d["mtu"] = i.mtu
    if i.wakeonlan:
        d["wakeonlan"] = True
    if i.optional:
        d["optional"] = True
    if i.dhcp4:
        d["dhcp4"] = True
    if i.dhcp6:
        d["dhcp6"] = True
    for key, opts in (("dhcp4-overrides", i.dhcp4_options if i.dhcp4 else None),
                      ("dhcp6-overrides", i.dhcp6_options if i.dhcp6 else None)):
        if opts is not None and (o := _dhcp(opts)):
            d[key] = o
    if i.dhcp_client_id_mac:
        d["dhcp-identifier"] = "mac"
    if i.accept_ra is not None:
        d["accept-ra"] = i.accept_ra
    if i.link_local is not None:
        d["link-local"] = list(i.link_local)
    if i.addresses:
        d["addresses"] = list(i.addresses)
    if i.routes:
        d["routes"] = [_route(r) for r in i.routes]
    ns, search = model.dns_for(i)
    if ns or search:
        d["nameservers"] = {k: list(v) for k, v in (("addresses", ns), ("search", search)) if v}
    return d


def _route(r: Route) -> dict[str, Any]:
    d: dict[str, Any] = {"to": "default" if r.is_default else r.to}
    if r.via:
        d["via"] = r.via
    if r.metric is not None:
        d["metric"] = r.metric
    if r.on_link:
        d["on-link"] = True
    if r.table is not None:
        d["table"] = r.table
    return d


def _dhcp(o: DhcpOptions) -> dict[str, Any]:
    pairs = (("route-metric", o.route_metric), ("use-dns", o.use_dns), ("use-domains", o.use_domains),
             ("use-hostname", o.use_hostname), ("use-mtu", o.use_mtu), ("use-ntp", o.use_ntp),
             ("use-routes", o.use_routes), ("send-hostname", o.send_hostname), ("hostname", o.hostname))
    return {k: v for k, v in pairs if v is not None}


def _bond(b: BondParams | None) -> dict[str, Any]:
    if b is None:
        return {}
    # explicit units: netplan versions disagree on what a bare number means for these
    pairs = (("mode", b.mode), ("lacp-rate", b.lacp_rate), ("mii-monitor-interval", _unit(b.mii_monitor_ms)),
             ("min-links", b.min_links), ("transmit-hash-policy", b.transmit_hash_policy),
             ("ad-select", b.ad_select), ("all-slaves-active", b.all_slaves_active),
             ("arp-interval", _unit(b.arp_interval_ms)), ("arp-ip-targets", list(b.arp_ip_targets) or None),
             ("arp-validate", b.arp_validate), ("arp-all-targets", b.arp_all_targets),
             ("up-delay", _unit(b.up_delay_ms)), ("down-delay", _unit(b.down_delay_ms)),
             ("fail-over-mac-policy", b.fail_over_mac), ("gratuitous-arp", b.gratuitous_arp),
             ("packets-per-slave", b.packets_per_slave), ("primary-reselect-policy", b.primary_reselect),
             ("learn-packet-interval", _unit(b.learn_packet_interval_s, "s")), ("primary", b.primary),
             ("resend-igmp", b.resend_igmp))
    return {k: v for k, v in pairs if v is not None}


def _unit(v: int | None, unit: str = "ms") -> str | None:
    return None if v is None else f"{v}{unit}"


def _bridge(b: BridgeParams | None) -> dict[str, Any]:
    if b is None:
        return {}
    pairs: tuple[tuple[str, Any], ...] = (
        ("ageing-time", b.ageing_time_s), ("priority", b.priority), ("forward-delay", b.forward_delay_s),
        ("hello-time", b.hello_time_s), ("max-age", b.max_age_s), ("stp", b.stp),
        ("path-cost", dict(b.path_cost) or None), ("port-priority", dict(b.port_priority) or None))
    return {k: v for k, v in pairs if v is not None}
