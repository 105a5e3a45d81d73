"""Network config version 2 (netplan's format) into the model.

The document shape is a set of frozen dataclasses checked by ``tether.convert`` (so ``ethernets.eth0.mtu:
expected an integer, got a string ('big')``); addresses, MACs and references are checked here with the same
path style (``ethernets.eth0.addresses[1]: ...``). Unknown keys are warnings: netplan has many keys the
networkd renderer does not need, and a boot should not fail over one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tether.convert import convert, meta
from tether.network import checks
from tether.network.checks import BOND_MODES, Problems
from tether.network.model import BondParams, BridgeParams, DhcpOptions, Interface, Match, NetworkModel, Route


def _k(key: str, doc: str = "") -> dict[str, Any]:
    return meta(key=key, doc=doc)


@dataclass(frozen=True)
class V2Match:
    name: str | None = None
    macaddress: str | None = None
    driver: str | None = None


@dataclass(frozen=True)
class V2Nameservers:
    addresses: tuple[str, ...] = ()
    search: tuple[str, ...] = ()


@dataclass(frozen=True)
class V2Route:
    to: str
    via: str | None = None
    metric: int | None = None
    on_link: bool = field(default=False, metadata=_k("on-link"))
    table: int | None = None


@dataclass(frozen=True)
class V2DhcpOverrides:
    route_metric: int | None = field(default=None, metadata=_k("route-metric"))
    use_dns: bool | None = field(default=None, metadata=_k("use-dns"))
    use_domains: bool | str | None = field(default=None, metadata=_k("use-domains"))
    use_hostname: bool | None = field(default=None, metadata=_k("use-hostname"))
    use_mtu: bool | None = field(default=None, metadata=_k("use-mtu"))
    use_ntp: bool | None = field(default=None, metadata=_k("use-ntp"))
    use_routes: bool | None = field(default=None, metadata=_k("use-routes"))
    send_hostname: bool | None = field(default=None, metadata=_k("send-hostname"))
    hostname: str | None = None


@dataclass(frozen=True, kw_only=True)
class V2Common:
    dhcp4: bool = False
    dhcp6: bool = False
    dhcp4_overrides: V2DhcpOverrides | None = field(default=None, metadata=_k("dhcp4-overrides"))
    dhcp6_overrides: V2DhcpOverrides | None = field(default=None, metadata=_k("dhcp6-overrides"))
    dhcp_identifier: Literal["mac", "duid"] | None = field(default=None, metadata=_k("dhcp-identifier"))
    addresses: tuple[str | dict[str, Any], ...] = ()
    gateway4: str | None = field(default=None, metadata=meta(deprecated="use routes with to: default"))
    gateway6: str | None = field(default=None, metadata=meta(deprecated="use routes with to: default"))
    nameservers: V2Nameservers | None = None
    routes: tuple[V2Route, ...] = ()
    mtu: int | None = None
    macaddress: str | None = None
    optional: bool = False
    accept_ra: bool | None = field(default=None, metadata=_k("accept-ra"))
    link_local: tuple[Literal["ipv4", "ipv6"], ...] | None = field(default=None, metadata=_k("link-local"))
    critical: bool | None = None
    renderer: Literal["networkd", "NetworkManager"] | None = None

    @classmethod
    def normalize(cls, value: Any) -> Any:
        # netplan (and cloud-init's schema) accept yes/no/true/false strings for the dhcp switches
        if isinstance(value, dict):
            value = dict(value)
            for k in ("dhcp4", "dhcp6"):
                v = value.get(k)
                if isinstance(v, str) and v.lower() in ("yes", "no", "true", "false", "on", "off"):
                    value[k] = v.lower() in ("yes", "true", "on")
        return value


@dataclass(frozen=True, kw_only=True)
class V2Ethernet(V2Common):
    match: V2Match | None = None
    set_name: str | None = field(default=None, metadata=_k("set-name"))
    wakeonlan: bool = False


@dataclass(frozen=True)
class V2BondParameters:
    mode: str | None = None
    lacp_rate: Literal["fast", "slow"] | None = field(default=None, metadata=_k("lacp-rate"))
    mii_monitor_interval: int | str | None = field(default=None, metadata=_k("mii-monitor-interval"))
    min_links: int | None = field(default=None, metadata=_k("min-links"))
    transmit_hash_policy: str | None = field(default=None, metadata=_k("transmit-hash-policy"))
    ad_select: Literal["stable", "bandwidth", "count"] | None = field(default=None, metadata=_k("ad-select"))
    all_slaves_active: bool | None = field(default=None, metadata=_k("all-slaves-active"))
    arp_interval: int | str | None = field(default=None, metadata=_k("arp-interval"))
    arp_ip_targets: tuple[str, ...] = field(default=(), metadata=_k("arp-ip-targets"))
    arp_validate: Literal["none", "active", "backup", "all"] | None = field(default=None,
                                                                          metadata=_k("arp-validate"))
    arp_all_targets: Literal["any", "all"] | None = field(default=None, metadata=_k("arp-all-targets"))
    up_delay: int | str | None = field(default=None, metadata=_k("up-delay"))
    down_delay: int | str | None = field(default=None, metadata=_k("down-delay"))
    fail_over_mac_policy: Literal["none", "active", "follow"] | None = field(
        default=None, metadata=_k("fail-over-mac-policy"))
    gratuitous_arp: int | None = field(default=None, metadata=_k("gratuitous-arp"))
    packets_per_slave: int | None = field(default=None, metadata=_k("packets-per-slave"))
    primary_reselect_policy: Literal["always", "better", "failure"] | None = field(
        default=None, metadata=_k("primary-reselect-policy"))
    learn_packet_interval: int | str | None = field(default=None, metadata=_k("learn-packet-interval"))
    primary: str | None = None
    resend_igmp: int | None = field(default=None, metadata=_k("resend-igmp"))


@dataclass(frozen=True, kw_only=True)
class V2Bond(V2Common):
    interfaces: tuple[str, ...] = ()
    parameters: V2BondParameters = field(default_factory=V2BondParameters)


@dataclass(frozen=True)
class V2BridgeParameters:
    ageing_time: int | str | None = field(default=None, metadata=_k("ageing-time"))
    priority: int | None = None
    forward_delay: int | str | None = field(default=None, metadata=_k("forward-delay"))
    hello_time: int | str | None = field(default=None, metadata=_k("hello-time"))
    max_age: int | str | None = field(default=None, metadata=_k("max-age"))
    path_cost: dict[str, int] = field(default_factory=dict, metadata=_k("path-cost"))
    port_priority: dict[str, int] = field(default_factory=dict, metadata=_k("port-priority"))
    stp: bool | None = None


@dataclass(frozen=True, kw_only=True)
class V2Bridge(V2Common):
    interfaces: tuple[str, ...] = ()
    parameters: V2BridgeParameters = field(default_factory=V2BridgeParameters)


@dataclass(frozen=True, kw_only=True)
class V2Vlan(V2Common):
    id: int
    link: str


@dataclass(frozen=True)
class V2Network:
    version: Literal[2]
    renderer: Literal["networkd", "NetworkManager"] | None = None
    ethernets: dict[str, V2Ethernet] = field(default_factory=dict)
    bonds: dict[str, V2Bond] = field(default_factory=dict)
    bridges: dict[str, V2Bridge] = field(default_factory=dict)
    vlans: dict[str, V2Vlan] = field(default_factory=dict)


_SECTIONS = ("ethernets", "bonds", "bridges", "vlans")
_KIND = {"ethernets": "physical", "bonds": "bond", "bridges": "bridge", "vlans": "vlan"}


def parse_v2(doc: dict[str, Any]) -> NetworkModel:
    """``doc`` is ``{version: 2, ethernets: ..., ...}``; raises ``ConfigErrors`` listing every problem."""
    p = Problems()
    # an empty "ethernets:" in YAML is null; treat it as no entries
    doc = {k: v for k, v in doc.items() if not (k in _SECTIONS and v is None)}
    net = convert(V2Network, doc, "", strict=False, warnings=p.warnings)
    ids = [(i, f"{s}.{i}") for s in _SECTIONS for i in getattr(net, s)]
    checks.unique(p, "", ids)
    known = {i for i, _ in ids}
    owner: dict[str, str] = {}
    out: list[Interface] = []
    for section in _SECTIONS:
        for iid, d in getattr(net, section).items():
            iface = _interface(p, f"{section}.{iid}", _KIND[section], iid, d, known, owner)
            if iface is not None:
                out.append(iface)
    p.raise_if_any()
    return NetworkModel(tuple(out), version=2, warnings=tuple(p.warnings))


def _interface(p: Problems, path: str, kind: str, iid: str, d: Any, known: set[str],
               owner: dict[str, str]) -> Interface | None:
    f: dict[str, Any] = {"id": iid, "kind": kind}
    if kind == "physical":
        if d.match is not None:
            if not (d.match.name or d.match.macaddress or d.match.driver):
                p.err(f"{path}.match", "an empty match would match every interface")
            f["match"] = Match(d.match.name, checks.mac(p, f"{path}.match.macaddress", d.match.macaddress),
                               d.match.driver)
        elif d.set_name:
            p.err(f"{path}.set-name", "set-name needs a match (by macaddress, name or driver)")
        if d.set_name:
            f["set_name"] = checks.ifname(p, f"{path}.set-name", d.set_name)
        elif d.match is None:
            checks.ifname(p, path, iid)
        f["wakeonlan"] = d.wakeonlan
    else:
        checks.ifname(p, path, iid)
    if d.mtu is not None and not 68 <= d.mtu <= 65535:
        p.err(f"{path}.mtu", f"{d.mtu} is outside 68-65535")
    addrs = []
    for j, a in enumerate(d.addresses):
        text = next(iter(a)) if isinstance(a, dict) and len(a) == 1 else a
        if not isinstance(text, str) or "/" not in text:
            p.err(f"{path}.addresses[{j}]", f"expected an address with a prefix length like 10.0.0.5/24, got {a!r}")
            continue
        c = checks.cidr(p, f"{path}.addresses[{j}]", text)
        if c is not None:
            addrs.append(c)
    routes = []
    for key, gw in (("gateway4", d.gateway4), ("gateway6", d.gateway6)):
        if gw is not None and (g := checks.ip(p, f"{path}.{key}", gw)) is not None:
            if checks.family(g) != (4 if key == "gateway4" else 6):
                p.err(f"{path}.{key}", f"{gw!r} is not an IPv{key[-1]} address")
            else:
                routes.append(Route("0.0.0.0/0" if key == "gateway4" else "::/0", g))
    for j, r in enumerate(d.routes):
        rp = f"{path}.routes[{j}]"
        via = checks.ip(p, f"{rp}.via", r.via)
        to = checks.network(p, f"{rp}.to", r.to, family_hint=checks.family(via) if via else None)
        if to is not None and via is not None and checks.family(to) != checks.family(via):
            p.err(f"{rp}.via", f"{via} is not in the address family of {to}")
        elif to is not None:
            routes.append(Route(to, via, r.metric, r.on_link, r.table))
    ns: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    if d.nameservers is not None:
        ns = tuple(x for j, n in enumerate(d.nameservers.addresses)
                   if (x := checks.ip(p, f"{path}.nameservers.addresses[{j}]", n)) is not None)
        search = d.nameservers.search
    f.update(dhcp4=d.dhcp4, dhcp6=d.dhcp6, addresses=tuple(addrs), routes=tuple(routes), nameservers=ns,
             search=search, mtu=d.mtu, optional=d.optional, accept_ra=d.accept_ra, link_local=d.link_local,
             mac_address=checks.mac(p, f"{path}.macaddress", d.macaddress),
             dhcp4_options=_dhcp(d.dhcp4_overrides), dhcp6_options=_dhcp(d.dhcp6_overrides),
             dhcp_client_id_mac=d.dhcp_identifier == "mac")
    if kind in ("bond", "bridge"):
        members = []
        for j, m in enumerate(d.interfaces):
            mp = f"{path}.interfaces[{j}]"
            if m not in known or m == iid:
                p.err(mp, f"{m!r} is not defined in this config")
            elif m in owner:
                p.err(mp, f"{m!r} is already a member of {owner[m]!r}")
            else:
                owner[m] = iid
                members.append(m)
        f["members"] = tuple(members)
        if kind == "bond":
            f["bond"] = _bond(p, f"{path}.parameters", d.parameters, f["members"])
        else:
            f["bridge"] = _bridge(p, f"{path}.parameters", d.parameters, f["members"])
    if kind == "vlan":
        if not 0 <= d.id <= 4094:
            p.err(f"{path}.id", f"{d.id} is outside 0-4094")
        if d.link not in known:
            p.err(f"{path}.link", f"{d.link!r} is not defined in this config")
        f.update(vlan_id=d.id, vlan_link=d.link)
    return Interface(**f)


def _dhcp(o: V2DhcpOverrides | None) -> DhcpOptions | None:
    if o is None:
        return None
    use_domains = o.use_domains if isinstance(o.use_domains, bool) or o.use_domains is None else \
        o.use_domains.lower() in ("true", "yes", "route")
    return DhcpOptions(o.route_metric, o.use_dns, use_domains, o.use_hostname, o.use_mtu, o.use_ntp,
                       o.use_routes, o.send_hostname, o.hostname)


def _bond(p: Problems, path: str, b: V2BondParameters, members: tuple[str, ...]) -> BondParams:
    if b.mode is not None and b.mode not in BOND_MODES:
        p.err(f"{path}.mode", f"{b.mode!r} is not a bond mode networkd supports ({', '.join(BOND_MODES)})")
    if b.primary is not None and b.primary not in members:
        p.err(f"{path}.primary", f"{b.primary!r} is not one of the bond's interfaces")
    targets = tuple(x for j, t in enumerate(b.arp_ip_targets)
                    if (x := checks.ip(p, f"{path}.arp-ip-targets[{j}]", t)) is not None)
    return BondParams(
        mode=b.mode, lacp_rate=b.lacp_rate,
        mii_monitor_ms=checks.duration(p, f"{path}.mii-monitor-interval", b.mii_monitor_interval, "ms", "ms"),
        up_delay_ms=checks.duration(p, f"{path}.up-delay", b.up_delay, "ms", "ms"),
        down_delay_ms=checks.duration(p, f"{path}.down-delay", b.down_delay, "ms", "ms"),
        arp_interval_ms=checks.duration(p, f"{path}.arp-interval", b.arp_interval, "ms", "ms"),
        learn_packet_interval_s=checks.duration(p, f"{path}.learn-packet-interval", b.learn_packet_interval,
                                                "s", "s"),
        min_links=b.min_links, transmit_hash_policy=b.transmit_hash_policy, ad_select=b.ad_select,
        all_slaves_active=b.all_slaves_active, arp_ip_targets=targets, arp_validate=b.arp_validate,
        arp_all_targets=b.arp_all_targets, fail_over_mac=b.fail_over_mac_policy, gratuitous_arp=b.gratuitous_arp,
        packets_per_slave=b.packets_per_slave, primary_reselect=b.primary_reselect_policy, primary=b.primary,
        resend_igmp=b.resend_igmp)


def _bridge(p: Problems, path: str, b: V2BridgeParameters, members: tuple[str, ...]) -> BridgeParams:
    if b.priority is not None and not 0 <= b.priority <= 65535:
        p.err(f"{path}.priority", f"{b.priority} is outside 0-65535")
    pairs: dict[str, tuple[tuple[str, int], ...]] = {}
    for key, mapping, maximum in (("path-cost", b.path_cost, 65535), ("port-priority", b.port_priority, 63)):
        out = []
        for port, n in mapping.items():
            if port not in members:
                p.err(f"{path}.{key}.{port}", f"{port!r} is not one of the bridge's interfaces")
            elif not 0 <= n <= maximum:
                p.err(f"{path}.{key}.{port}", f"{n} is outside 0-{maximum}")
            else:
                out.append((port, n))
        pairs[key] = tuple(out)
    return BridgeParams(
        ageing_time_s=checks.duration(p, f"{path}.ageing-time", b.ageing_time, "s", "s"),
        priority=b.priority,
        forward_delay_s=checks.duration(p, f"{path}.forward-delay", b.forward_delay, "s", "s"),
        hello_time_s=checks.duration(p, f"{path}.hello-time", b.hello_time, "s", "s"),
        max_age_s=checks.duration(p, f"{path}.max-age", b.max_age, "s", "s"),
        stp=b.stp, path_cost=pairs["path-cost"], port_priority=pairs["port-priority"])
