"""NetworkManager renderer: the model as keyfile profiles, one per interface.

Profiles go to ``/etc/NetworkManager/system-connections/tether-<id>.nmconnection``, mode 0600 (NetworkManager
ignores keyfiles that other users can read). Profiles refer to each other (a port to its bond or bridge, a VLAN
to its parent) by UUID; each UUID is derived from the interface id, so the same config gives the same files.
Files with our prefix that the model no longer produces are removed; identical files are left alone.

Renames (``set-name``) are udev's job under NetworkManager as under networkd, so the ``.link`` files the networkd
renderer would write are written here too; everything else under /etc/systemd/network that tether wrote goes.

NetworkManager rejects a whole profile over one value it does not accept (a bridge ``forward-delay`` of 1 s, a
bond ``primary`` outside active-backup); such values are left out with a warning, so the rest still applies.
See docs/network.md for what maps to what.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.digest import sha256
from tether.network import networkd
from tether.network.filesync import SyncReport, sync_files
from tether.network.model import BondParams, BridgeParams, DhcpOptions, Interface, NetworkModel, Route
from tether.network.select import NM_CONNECTIONS, NM_PROFILE_PREFIX, NM_PROFILE_SUFFIX
from tether.target import Target

CONNECTIONS_DIR, PREFIX, SUFFIX = NM_CONNECTIONS, NM_PROFILE_PREFIX, NM_PROFILE_SUFFIX
HEADER = "# Written by tether from the instance's network configuration; local changes will be replaced.\n"
AUTOCONNECT_PRIORITY = "120"     # above the 0 of profiles NetworkManager or the initrd create by themselves
MULTI_CONNECT_MULTIPLE = "3"     # a profile that matches by glob or driver may be active on several devices
WAKE_ON_LAN_MAGIC = "64"
LINK_LOCAL_ENABLED = "3"        # ipv4.link-local is an enum in keyfiles (NetworkManager 1.40+)
TYPES = {"physical": "ethernet", "bond": "bond", "bridge": "bridge", "vlan": "vlan"}
NO_DNS = ("disabled", "link-local")   # methods whose profiles NetworkManager refuses with DNS settings
# NetworkManager refuses values outside these ranges (libnm's property limits)
BRIDGE_LIMITS = {"forward-delay": (2, 30), "hello-time": (1, 10), "max-age": (6, 40), "ageing-time": (0, 1000000)}

Items = list[tuple[str, str]]
Section = tuple[str, Items]


@dataclass
class Keyfiles:
    files: dict[str, str] = field(default_factory=dict)     # file name -> content
    warnings: list[str] = field(default_factory=list)


def profile_uuid(iface_id: str) -> str:
    """A stable UUID for the interface's profile (SHA-256 based, RFC 9562 version 8; no hashlib import)."""
    b = bytearray(sha256(b"tether-nm-profile\0" + iface_id.encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def file_name(iface_id: str) -> str:
    return PREFIX + "".join(c if c.isalnum() or c in "._-" else "_" for c in iface_id) + SUFFIX


def nm_keyfiles(model: NetworkModel) -> Keyfiles:
    out = Keyfiles()
    for iface in model.interfaces:
        out.files[file_name(iface.id)] = _dump(_profile(model, iface, out.warnings))
    return out


def sync_nm(model: NetworkModel, target: Target) -> tuple[SyncReport, list[str]]:
    """Write the model's profiles (and the ``.link`` files for renames); returns what changed and warnings."""
    kf = nm_keyfiles(model)
    rep = sync_files(target, CONNECTIONS_DIR, kf.files, owned_prefix=PREFIX, owned_suffixes=(SUFFIX,), mode=0o600)
    links = sync_files(target, networkd.NETWORK_DIR, networkd.link_files(model), owned_prefix=networkd.PREFIX,
                       owned_suffixes=networkd.SUFFIXES)
    return rep.merge(links), kf.warnings


def activation_commands(target: Target, paths: list[str]) -> list[list[str]]:
    """What cloud-init's NetworkManager activator runs once the profiles changed: a reload, then each profile up
    by its file. Devices first, then bonds and bridges, then VLANs, so no profile waits for a parent that
    is not up yet."""
    rank = {"ethernet": 0, "bond": 1, "bridge": 2, "vlan": 3}
    profiles = []
    for path in paths:
        if path.startswith(CONNECTIONS_DIR + "/") and path.endswith(SUFFIX):
            kind = next((line[5:] for line in target.read_text(path, default="").splitlines()
                         if line.startswith("type=")), "")
            profiles.append((rank.get(kind, len(rank)), path))
    return [["nmcli", "connection", "reload"]] + [["nmcli", "connection", "up", "filename", p]
                                                  for _, p in sorted(profiles)]


def remove_nm(target: Target) -> SyncReport:
    """Remove every profile a previous run wrote (used when another renderer takes over)."""
    return sync_files(target, CONNECTIONS_DIR, {}, owned_prefix=PREFIX, owned_suffixes=(SUFFIX,), mode=0o600)


def _escape(value: str) -> str:
    """A GKeyFile string: backslash escapes, so no value can start a new line or section."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return "\\s" + out[1:] if out.startswith(" ") else out


class _Escaped(str):
    """A value already in keyfile syntax (a list), written as it is."""


def _list(items: tuple[str, ...] | list[str]) -> str:
    return _Escaped("".join(_escape(i).replace(";", "\\;") + ";" for i in items))


def _dump(sections: list[Section]) -> str:
    out = [HEADER]
    for name, items in sections:
        if not items and name not in ("connection", "ethernet"):
            continue
        out.append(f"\n[{name}]\n")
        out.extend(f"{k}={v if isinstance(v, _Escaped) else _escape(v)}\n" for k, v in items)
    return "".join(out)


def _tf(v: bool) -> str:
    return "true" if v else "false"


def _profile(model: NetworkModel, iface: Interface, warn: list[str]) -> list[Section]:
    conn: Items = [("id", f"tether {iface.id}"), ("uuid", profile_uuid(iface.id)), ("type", TYPES[iface.kind]),
                   ("autoconnect-priority", AUTOCONNECT_PRIORITY)]
    eth: Items = []
    match: Items = []
    if iface.kind == "physical":
        _physical_match(iface, conn, eth, match)
        if iface.wakeonlan:
            eth.append(("wake-on-lan", WAKE_ON_LAN_MAGIC))
    else:
        conn.append(("interface-name", iface.id))
    if iface.mac_address:
        eth.append(("cloned-mac-address", iface.mac_address.upper()))
    if iface.mtu:
        eth.append(("mtu", str(iface.mtu)))
    master = model.master_of(iface.id)
    if master is not None:
        conn += [("master", profile_uuid(master.id)), ("slave-type", master.kind)]
    sections: list[Section] = [("connection", conn)]
    if iface.kind == "physical" or eth:
        sections.append(("ethernet", eth))
    if iface.kind == "bond":
        sections.append(("bond", _bond(model, iface, iface.bond or BondParams(), warn)))
    elif iface.kind == "bridge":
        sections.append(("bridge", _bridge(iface.id, iface.bridge or BridgeParams(), warn)))
    elif iface.kind == "vlan" and iface.vlan_link is not None:
        sections.append(("vlan", [("id", str(iface.vlan_id)), ("parent", profile_uuid(iface.vlan_link))]))
    if master is not None and master.kind == "bridge" and master.bridge:
        port = [("path-cost", str(n)) for p, n in master.bridge.path_cost if p == iface.id]
        port += [("priority", str(n)) for p, n in master.bridge.port_priority if p == iface.id]
        sections.append(("bridge-port", port))
    sections.append(("match", match))
    if master is None:
        sections += _ip(model, iface, warn)
    elif iface.has_l3 or iface.routes or iface.nameservers:
        # a port carries no IP configuration of its own (networkd's renderer drops it the same way)
        warn.append(f"{iface.id}: a member of {master.id!r} gets no addresses, routes or DHCP of its own; "
                    "those settings are not written")
    return sections


def _physical_match(iface: Interface, conn: Items, eth: Items, match: Items) -> None:
    """How the profile finds its device. A renamed NIC is found by MAC when there is one (true before and after
    the rename), else by its new name; otherwise by name (globs allowed), MAC and driver as the match says."""
    m = iface.match
    if m is None:
        conn.append(("interface-name", iface.id))
        return
    if m.mac:
        eth.append(("mac-address", m.mac.upper()))
    if iface.set_name:
        if not m.mac:
            conn.append(("interface-name", iface.set_name))
        return
    several = bool(m.driver) or bool(m.name and any(c in m.name for c in "*?["))
    if m.name and not several:
        conn.append(("interface-name", m.name))
    elif m.name:
        match.append(("interface-name", _list([m.name])))
    if m.driver:
        match.append(("driver", _list([m.driver])))
    if several and not m.mac:
        conn.append(("multi-connect", MULTI_CONNECT_MULTIPLE))


def _ip(model: NetworkModel, iface: Interface, warn: list[str]) -> list[Section]:
    v4 = [a for a in iface.addresses if ":" not in a]
    v6 = [a for a in iface.addresses if ":" in a]
    ll = None if iface.link_local is None else set(iface.link_local)
    ll6 = ll is None or "ipv6" in ll
    ra = iface.accept_ra
    want4 = iface.dhcp4 or bool(v4)
    want6 = iface.dhcp6 or ra is True or bool(v6)
    m4 = "auto" if iface.dhcp4 else "manual" if v4 else "link-local" if ll and "ipv4" in ll else "disabled"
    if iface.dhcp6:
        m6 = "dhcp" if ra is False else "auto"       # DHCPv6 without router advertisements: NetworkManager's "dhcp"
    elif ra or v6:
        m6 = "auto" if ra else "manual"
    elif want4 and ra is None and ll6:
        m6 = "auto"                                  # NetworkManager's default, and networkd's: RAs are accepted
    else:
        m6 = "link-local" if ll6 else "disabled"
    if not ll6 and m6 != "disabled":
        warn.append(f"{iface.id}: link-local without ipv6 cannot be kept with IPv6 configured: NetworkManager "
                    "gives an interface with IPv6 an IPv6 link-local address")
    ip4: Items = [("method", m4)]
    ip6: Items = [("method", m6)]
    if m6 != "disabled":
        ip6.append(("addr-gen-mode", "eui64"))       # as networkd (and cloud-init for NetworkManager) do
    if ll and "ipv4" in ll and m4 != "link-local":
        ip4.append(("link-local", LINK_LOCAL_ENABLED))
    ip4 += [(f"address{n}", a) for n, a in enumerate(v4, 1)]
    ip6 += [(f"address{n}", a) for n, a in enumerate(v6, 1)]
    _routes(iface, ip4, ip6)
    _dns(model, iface, ip4, ip6, warn)
    if want4 and want6:
        # either family is enough for the profile to be up (cloud-init's choice too)
        ip4.append(("may-fail", "true"))
        ip6.append(("may-fail", "true"))
    elif want4 or want6:
        (ip4 if want4 else ip6).append(("may-fail", "false"))
    if iface.optional:
        warn.append(f"{iface.id}: optional has no NetworkManager profile setting (NetworkManager-wait-online "
                    "waits for a profile whose device is present); not written")
    extra: list[Section] = []
    if iface.dhcp4:
        ip4 += _dhcp(iface, iface.dhcp4_options, 4, warn)
        if iface.dhcp_client_id_mac:
            ip4.append(("dhcp-client-id", "mac"))
    if iface.dhcp6:
        ip6 += _dhcp(iface, iface.dhcp6_options, 6, warn)
    if any(o is not None and o.use_hostname is False for o in (iface.dhcp4_options, iface.dhcp6_options)):
        extra.append(("hostname", [("from-dhcp", "0")]))    # a ternary: -1 default, 0, 1
    return [("ipv4", ip4), ("ipv6", ip6), *extra]


def _routes(iface: Interface, ip4: Items, ip6: Items) -> None:
    gateway_set = {4: False, 6: False}
    count = {4: 0, 6: 0}
    for r in iface.routes:
        fam = 6 if ":" in r.to else 4
        items = ip4 if fam == 4 else ip6
        if r.is_default and r.via and r.metric is None and r.table is None and not r.on_link \
                and not gateway_set[fam]:
            items.append(("gateway", r.via))
            gateway_set[fam] = True
            continue
        count[fam] += 1
        items.append((f"route{count[fam]}", _route_value(r, fam)))
        opts = ([("onlink", "true")] if r.on_link else []) + ([("table", str(r.table))] if r.table is not None else [])
        if opts:
            items.append((f"route{count[fam]}_options", ",".join(f"{k}={v}" for k, v in opts)))


def _route_value(r: Route, fam: int) -> str:
    value = r.to
    if r.via or r.metric is not None:
        value += "," + (r.via or ("0.0.0.0" if fam == 4 else "::"))
    if r.metric is not None:
        value += f",{r.metric}"
    return value


def _dns(model: NetworkModel, iface: Interface, ip4: Items, ip6: Items, warn: list[str]) -> None:
    """Name servers go to their family's section; search domains to the first family with addresses
    (NetworkManager refuses DNS settings where the method is disabled or link-local)."""
    ns, search = model.dns_for(iface)
    on = {4: ip4[0][1] not in NO_DNS, 6: ip6[0][1] not in NO_DNS}
    for fam, items in ((4, ip4), (6, ip6)):
        servers = [s for s in ns if (":" in s) == (fam == 6)]
        if servers and on[fam]:
            items.append(("dns", _list(servers)))
        elif servers:
            warn.append(f"{iface.id}: no IPv{fam} addressing on this interface, so its IPv{fam} name servers "
                        f"({', '.join(servers)}) are not written")
    if search:
        if on[4] or on[6]:
            (ip4 if on[4] else ip6).append(("dns-search", _list(search)))
        else:
            warn.append(f"{iface.id}: no IP configuration to carry the search domains; not written")


def _dhcp(iface: Interface, o: DhcpOptions | None, fam: int, warn: list[str]) -> Items:
    if o is None:
        return []
    out: Items = []
    if o.route_metric is not None:
        out.append(("route-metric", str(o.route_metric)))
    if o.use_dns is False:
        out.append(("ignore-auto-dns", "true"))
    if o.use_routes is False:
        out.append(("ignore-auto-routes", "true"))
    if o.send_hostname is not None:
        out.append(("dhcp-send-hostname", _tf(o.send_hostname)))
    if o.hostname is not None:
        out.append(("dhcp-hostname", o.hostname))
    where = f"{iface.id}: dhcp{fam}"
    if o.use_domains is False and o.use_dns is not False:
        warn.append(f"{where}: use-domains false needs use-dns false under NetworkManager (it takes DHCP name "
                    "servers and search domains together); not written")
    if o.use_mtu is False and fam == 4 and not iface.mtu:
        warn.append(f"{where}: use-mtu false has no NetworkManager setting (set mtu to override the DHCP MTU); "
                    "not written")
    if o.use_ntp is False:
        warn.append(f"{where}: use-ntp false has no NetworkManager setting (NetworkManager hands DHCP NTP servers "
                    "to dispatcher scripts such as chrony's); not written")
    return out


def _bond(model: NetworkModel, iface: Interface, b: BondParams, warn: list[str]) -> Items:
    where = f"{iface.id}: bond"
    mode = b.mode or "balance-rr"
    primary = None
    if b.primary is not None:
        member = model.get(b.primary)
        primary = member.device_name if member else None
        if mode not in ("active-backup", "balance-tlb", "balance-alb"):
            warn.append(f"{where} primary: NetworkManager accepts it only with mode active-backup, balance-tlb or "
                        f"balance-alb, not {mode}; not written")
            primary = None
        elif primary is None:
            warn.append(f"{where} primary: {b.primary!r} has no fixed device name (matched without set-name), "
                        "and NetworkManager needs one; not written")
    lacp_rate = b.lacp_rate
    if lacp_rate not in (None, "slow") and mode != "802.3ad":
        warn.append(f"{where} lacp-rate: NetworkManager accepts {lacp_rate} only with mode 802.3ad; not written")
        lacp_rate = None
    arp_interval, targets = b.arp_interval_ms, ",".join(b.arp_ip_targets) or None
    if bool(arp_interval) != bool(targets):
        warn.append(f"{where}: NetworkManager needs arp-interval and arp-ip-targets together; neither is written")
        arp_interval = targets = None
    if arp_interval and mode in ("balance-tlb", "balance-alb"):
        warn.append(f"{where} arp-interval: NetworkManager refuses it with mode {mode}; not written")
        arp_interval = targets = None
    pairs: list[tuple[str, object]] = [
        ("mode", b.mode), ("miimon", b.mii_monitor_ms), ("updelay", b.up_delay_ms), ("downdelay", b.down_delay_ms),
        ("arp_interval", arp_interval), ("arp_ip_target", targets), ("arp_validate", b.arp_validate),
        ("arp_all_targets", b.arp_all_targets), ("primary", primary), ("primary_reselect", b.primary_reselect),
        ("fail_over_mac", b.fail_over_mac), ("xmit_hash_policy", b.transmit_hash_policy),
        ("lacp_rate", lacp_rate), ("ad_select", b.ad_select), ("ad_actor_sys_prio", b.ad_actor_sys_prio),
        ("ad_actor_system", b.ad_actor_system), ("ad_user_port_key", b.ad_user_port_key),
        ("all_slaves_active", None if b.all_slaves_active is None else int(b.all_slaves_active)),
        ("min_links", b.min_links), ("num_grat_arp", b.gratuitous_arp), ("packets_per_slave", b.packets_per_slave),
        ("resend_igmp", b.resend_igmp), ("lp_interval", b.learn_packet_interval_s)]
    return [(k, str(v)) for k, v in pairs if v is not None]


def _bridge(iface_id: str, b: BridgeParams, warn: list[str]) -> Items:
    out: Items = []
    if b.stp is not None:
        out.append(("stp", _tf(b.stp)))
    if b.priority is not None:
        out.append(("priority", str(b.priority)))
    for key, v in (("forward-delay", b.forward_delay_s), ("hello-time", b.hello_time_s),
                   ("max-age", b.max_age_s), ("ageing-time", b.ageing_time_s)):
        if v is None:
            continue
        lo, hi = BRIDGE_LIMITS[key]
        if lo <= v <= hi:
            out.append((key, str(v)))
        else:
            warn.append(f"{iface_id}: bridge {key} {v}s is outside the {lo}-{hi} s NetworkManager accepts; "
                        "not written (NetworkManager's default applies)")
    return out
