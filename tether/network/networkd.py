"""systemd-networkd renderer: the model as ``.link``, ``.netdev`` and ``.network`` files.

Files go to ``/etc/systemd/network/10-tether-<id>.<ext>``. The low number puts them ahead of distribution
defaults (networkd uses the first ``.network`` that matches, in file-name order). Files with our prefix
that the current model no longer produces are removed; identical files are left untouched.

Matching choices (see docs/network.md): a MAC match uses ``PermanentMACAddress=`` so a bond member whose
MAC the bond rewrote, or a VLAN that inherited its parent's MAC, is never mistaken for the physical NIC.
A renamed NIC's ``.network`` matches its new name.
"""

from __future__ import annotations

from tether.network.filesync import SyncReport, sync_files
from tether.network.model import BondParams, BridgeParams, DhcpOptions, Interface, NetworkModel
from tether.target import Target

NETWORK_DIR = "/etc/systemd/network"
PREFIX = "10-tether-"
SUFFIXES = (".network", ".netdev", ".link")
HEADER = "# Written by tether from the instance's network configuration; local changes will be replaced.\n"

Section = tuple[str, list[tuple[str, str]]]


def _yn(v: bool) -> str:
    return "yes" if v else "no"


def _ini(sections: list[Section]) -> str:
    out = [HEADER]
    for name, items in sections:
        if not items and name not in ("Match", "Network"):
            continue
        out.append(f"\n[{name}]\n")
        out.extend(f"{k}={v}\n" for k, v in items)
    return "".join(out)


def file_stem(iface_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in iface_id)
    return PREFIX + safe


def networkd_files(model: NetworkModel) -> dict[str, str]:
    """File name -> content for every file this model needs."""
    files: dict[str, str] = {}
    for iface in model.interfaces:
        stem = file_stem(iface.id)
        link = _link_file(iface)
        if link is not None:
            files[stem + ".link"] = link
        if iface.kind != "physical":
            files[stem + ".netdev"] = _netdev_file(iface)
        files[stem + ".network"] = _network_file(model, iface)
    return files


def link_files(model: NetworkModel) -> dict[str, str]:
    """The ``.link`` files alone (renames, wake-on-LAN): udev applies them whichever renderer wrote the rest."""
    return {name: text for name, text in networkd_files(model).items() if name.endswith(".link")}


def render_networkd(model: NetworkModel, target: Target) -> list[str]:
    """Write the model's files into the target; returns every file now in place (target paths)."""
    return sync_networkd(model, target).current


def sync_networkd(model: NetworkModel, target: Target) -> SyncReport:
    return sync_files(target, NETWORK_DIR, networkd_files(model), owned_prefix=PREFIX, owned_suffixes=SUFFIXES)


def remove_networkd(target: Target) -> SyncReport:
    """Remove every file a previous run wrote (used when another renderer takes over)."""
    return sync_files(target, NETWORK_DIR, {}, owned_prefix=PREFIX, owned_suffixes=SUFFIXES)


def _link_file(iface: Interface) -> str | None:
    """A ``.link`` (applied by udev when the device appears) renames a NIC or sets wake-on-LAN."""
    if iface.kind != "physical" or iface.match is None or not (iface.set_name or iface.wakeonlan):
        return None
    m = iface.match
    match = []
    if m.mac:
        match.append(("PermanentMACAddress", m.mac))
    if m.name:
        match.append(("OriginalName", m.name))
    if m.driver:
        match.append(("Driver", m.driver))
    link: list[tuple[str, str]] = []
    if iface.set_name:
        link.append(("Name", iface.set_name))
    else:
        # a matching .link replaces 99-default.link, so keep the default naming for this device
        link += [("NamePolicy", "keep kernel database onboard slot path"), ("MACAddressPolicy", "persistent")]
    if iface.wakeonlan:
        link.append(("WakeOnLan", "magic"))
    return _ini([("Match", match), ("Link", link)])


def _netdev_file(iface: Interface) -> str:
    netdev = [("Name", iface.id), ("Kind", iface.kind)]
    if iface.mtu:
        netdev.append(("MTUBytes", str(iface.mtu)))
    if iface.mac_address:
        netdev.append(("MACAddress", iface.mac_address))
    sections: list[Section] = [("NetDev", netdev)]
    if iface.kind == "bond":
        sections.append(("Bond", _bond(iface.bond or BondParams())))
    elif iface.kind == "bridge":
        sections.append(("Bridge", _bridge(iface.bridge or BridgeParams())))
    elif iface.kind == "vlan":
        sections.append(("VLAN", [("Id", str(iface.vlan_id))]))
    return _ini(sections)


def _bond(b: BondParams) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def add(key: str, v: object, unit: str = "") -> None:
        if v is None:
            return
        out.append((key, _yn(v) if isinstance(v, bool) else f"{v}{unit}"))

    add("Mode", b.mode)
    add("TransmitHashPolicy", b.transmit_hash_policy)
    add("LACPTransmitRate", b.lacp_rate)
    add("MIIMonitorSec", b.mii_monitor_ms, "ms")
    add("UpDelaySec", b.up_delay_ms, "ms")
    add("DownDelaySec", b.down_delay_ms, "ms")
    add("LearnPacketIntervalSec", b.learn_packet_interval_s, "s")
    add("AdSelect", b.ad_select)
    add("AdActorSystemPriority", b.ad_actor_sys_prio)
    add("AdUserPortKey", b.ad_user_port_key)
    add("AdActorSystem", b.ad_actor_system)
    add("FailOverMACPolicy", b.fail_over_mac)
    add("ARPValidate", b.arp_validate)
    add("ARPIntervalSec", b.arp_interval_ms, "ms")
    if b.arp_ip_targets:
        out.append(("ARPIPTargets", " ".join(b.arp_ip_targets)))
    add("ARPAllTargets", b.arp_all_targets)
    add("PrimaryReselectPolicy", b.primary_reselect)
    add("ResendIGMP", b.resend_igmp)
    add("PacketsPerSlave", b.packets_per_slave)
    add("GratuitousARP", b.gratuitous_arp)
    add("AllSlavesActive", b.all_slaves_active)
    add("MinLinks", b.min_links)
    return out


def _bridge(b: BridgeParams) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, v in (("HelloTimeSec", b.hello_time_s), ("MaxAgeSec", b.max_age_s),
                   ("ForwardDelaySec", b.forward_delay_s), ("AgeingTimeSec", b.ageing_time_s)):
        if v is not None:
            out.append((key, f"{v}s"))
    if b.priority is not None:
        out.append(("Priority", str(b.priority)))
    if b.stp is not None:
        out.append(("STP", _yn(b.stp)))
    return out


def _match(iface: Interface) -> list[tuple[str, str]]:
    if iface.set_name:
        return [("Name", iface.set_name)]
    m = iface.match
    if m is None:
        return [("Name", iface.id)]
    out = []
    if m.name:
        out.append(("Name", m.name))
    if m.mac:
        out.append(("PermanentMACAddress", m.mac))
    if m.driver:
        out.append(("Driver", m.driver))
    return out


def _network_file(model: NetworkModel, iface: Interface) -> str:
    link: list[tuple[str, str]] = []
    if iface.kind == "physical" and iface.mac_address:
        link.append(("MACAddress", iface.mac_address))
    if iface.mtu:
        link.append(("MTUBytes", str(iface.mtu)))
    if iface.optional:
        link.append(("RequiredForOnline", "no"))
    network: list[tuple[str, str]] = []
    extra: list[Section] = []
    master = model.master_of(iface.id)
    if master is not None:
        # an enslaved port carries no addresses of its own
        network.append(("Bond" if master.kind == "bond" else "Bridge", master.device_name or master.id))
        network.append(("LinkLocalAddressing", "no"))
        if master.kind == "bond" and master.bond and master.bond.primary == iface.id:
            network.append(("PrimarySlave", "yes"))
        if master.kind == "bridge" and master.bridge:
            port = [("Cost", str(n)) for p, n in master.bridge.path_cost if p == iface.id]
            port += [("Priority", str(n)) for p, n in master.bridge.port_priority if p == iface.id]
            extra.append(("Bridge", port))
    else:
        dhcp = {(True, True): "yes", (True, False): "ipv4", (False, True): "ipv6"}.get((iface.dhcp4, iface.dhcp6))
        if dhcp:
            network.append(("DHCP", dhcp))
        if iface.link_local is not None:
            ll = set(iface.link_local)
            network.append(("LinkLocalAddressing", "yes" if ll == {"ipv4", "ipv6"} else
                            next(iter(ll)) if ll else "no"))
        if iface.accept_ra is not None:
            network.append(("IPv6AcceptRA", _yn(iface.accept_ra)))
        network += [("Address", a) for a in iface.addresses]
        ns, search = model.dns_for(iface)
        if ns:
            network.append(("DNS", " ".join(ns)))
        if search:
            network.append(("Domains", " ".join(search)))
        for r in iface.routes:
            route = [] if r.is_default else [("Destination", r.to)]
            if r.via:
                route.append(("Gateway", r.via))
            if r.on_link:
                route.append(("GatewayOnLink", "yes"))
            if r.metric is not None:
                route.append(("Metric", str(r.metric)))
            if r.table is not None:
                route.append(("Table", str(r.table)))
            extra.append(("Route", route))
        if iface.dhcp4:
            opts = _dhcp(iface.dhcp4_options, v6=False)
            if iface.dhcp_client_id_mac:
                opts.append(("ClientIdentifier", "mac"))
            extra.append(("DHCPv4", opts))
        if iface.dhcp6:
            extra.append(("DHCPv6", _dhcp(iface.dhcp6_options, v6=True)))
    network += [("VLAN", v.id) for v in model.vlans_on(iface.id)]
    return _ini([("Match", _match(iface)), ("Link", link), ("Network", network), *extra])


def _dhcp(o: DhcpOptions | None, v6: bool) -> list[tuple[str, str]]:
    if o is None:
        return []
    out: list[tuple[str, str]] = []
    pairs: list[tuple[str, object]] = [("UseDNS", o.use_dns), ("UseDomains", o.use_domains),
                                       ("UseHostname", o.use_hostname), ("UseNTP", o.use_ntp)]
    if not v6:
        # networkd has no per-lease route metric, MTU or hostname options for DHCPv6
        pairs = [("RouteMetric", o.route_metric), *pairs, ("UseMTU", o.use_mtu), ("UseRoutes", o.use_routes),
                 ("SendHostname", o.send_hostname), ("Hostname", o.hostname)]
    for k, v in pairs:
        if v is not None:
            out.append((k, _yn(v) if isinstance(v, bool) else str(v)))
    return out
