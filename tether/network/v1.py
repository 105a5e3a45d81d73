"""Network config version 1 (cloud-init's list of typed entries) into the model.

Shapes are checked with ``tether.convert`` (unknown keys are warnings, as cloud-init tolerates them); values
and cross-references are checked here. Errors name the entry: ``config[3].subnets[0].address: ...``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from tether.convert import convert, meta
from tether.errors import ConfigErrors
from tether.network import checks
from tether.network.checks import BOND_MODES, Problems
from tether.network.model import BondParams, BridgeParams, DhcpOptions, Interface, Match, NetworkModel, Route

SubnetType = Literal["dhcp4", "dhcp", "dhcp6", "static", "static6", "ipv6_dhcpv6-stateful",
                     "ipv6_dhcpv6-stateless", "ipv6_slaac", "manual"]


@dataclass(frozen=True)
class V1Route:
    type: Literal["route"] = "route"
    destination: str | None = None
    network: str | None = field(default=None, metadata=meta(doc="alias of destination (OpenStack)"))
    netmask: str | int | None = None
    gateway: str | None = None
    metric: int | None = None


@dataclass(frozen=True)
class V1Subnet:
    type: SubnetType
    control: Literal["manual", "auto", "hotplug"] | None = None
    address: str | None = None
    netmask: str | int | None = None
    broadcast: str | None = None
    gateway: str | None = None
    dns_nameservers: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    routes: tuple[V1Route, ...] = ()
    ipv4: bool | None = None
    ipv6: bool | None = None
    metric: int | None = None


@dataclass(frozen=True)
class V1Physical:
    type: Literal["physical"]
    name: str
    mac_address: str | None = None
    mtu: int | None = None
    subnets: tuple[V1Subnet, ...] = ()
    accept_ra: bool | None = field(default=None, metadata=meta(key="accept-ra"))
    keep_configuration: bool | None = None


@dataclass(frozen=True)
class V1Bond:
    type: Literal["bond"]
    name: str
    bond_interfaces: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    mac_address: str | None = None
    mtu: int | None = None
    subnets: tuple[V1Subnet, ...] = ()
    accept_ra: bool | None = field(default=None, metadata=meta(key="accept-ra"))


@dataclass(frozen=True)
class V1Bridge:
    type: Literal["bridge"]
    name: str
    bridge_interfaces: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    mac_address: str | None = None
    mtu: int | None = None
    subnets: tuple[V1Subnet, ...] = ()
    accept_ra: bool | None = field(default=None, metadata=meta(key="accept-ra"))


@dataclass(frozen=True)
class V1Vlan:
    type: Literal["vlan"]
    name: str
    vlan_link: str
    vlan_id: int
    mac_address: str | None = None
    mtu: int | None = None
    subnets: tuple[V1Subnet, ...] = ()
    accept_ra: bool | None = field(default=None, metadata=meta(key="accept-ra"))


@dataclass(frozen=True)
class V1Nameserver:
    type: Literal["nameserver"]
    address: str | tuple[str, ...] = ()
    search: str | tuple[str, ...] = ()
    interface: str | None = None


_ENTRY_TYPES: dict[str, type] = {"physical": V1Physical, "bond": V1Bond, "bridge": V1Bridge, "vlan": V1Vlan,
                                 "nameserver": V1Nameserver, "route": V1Route}
_DEVICE = V1Physical | V1Bond | V1Bridge | V1Vlan

# v1 bond params (ifupdown names, "bond-" prefix) -> (model field, kind); kind says how to read the value
_BOND_KEYS: dict[str, tuple[str, str]] = {
    "mode": ("mode", "mode"), "lacp_rate": ("lacp_rate", "str"), "miimon": ("mii_monitor_ms", "ms"),
    "updelay": ("up_delay_ms", "ms"), "downdelay": ("down_delay_ms", "ms"),
    "arp_interval": ("arp_interval_ms", "ms"), "lp_interval": ("learn_packet_interval_s", "s"),
    "min_links": ("min_links", "int"), "xmit_hash_policy": ("transmit_hash_policy", "str"),
    "ad_select": ("ad_select", "str"), "all_slaves_active": ("all_slaves_active", "bool"),
    "arp_ip_target": ("arp_ip_targets", "ips"), "arp_validate": ("arp_validate", "str"),
    "arp_all_targets": ("arp_all_targets", "str"), "fail_over_mac": ("fail_over_mac", "str"),
    "num_grat_arp": ("gratuitous_arp", "int"), "num_unsol_na": ("gratuitous_arp", "int"),
    "packets_per_slave": ("packets_per_slave", "int"), "primary_reselect": ("primary_reselect", "str"),
    "primary": ("primary", "str"), "ad_actor_sys_prio": ("ad_actor_sys_prio", "int"),
    "ad_actor_system": ("ad_actor_system", "str"), "ad_user_port_key": ("ad_user_port_key", "int"),
    "resend_igmp": ("resend_igmp", "int"),
}
_BOND_IGNORED = {"slaves", "active_slave", "ad_aggregator", "ad_num_ports", "ad_partner_key",
                 "ad_partner_mac", "mii_status", "queue_id", "tlb_dynamic_lb", "use_carrier", "peer_notif_delay",
                 "ad_actor_key"}
_BRIDGE_TIMES = {"bridge_ageing": "ageing_time_s", "bridge_fd": "forward_delay_s", "bridge_hello": "hello_time_s",
                 "bridge_maxage": "max_age_s"}
_BRIDGE_IGNORED = {"bridge_maxwait", "bridge_waitport", "bridge_ports", "bridge_gcint"}


def parse_v1(doc: dict[str, Any]) -> NetworkModel:
    """``doc`` is ``{version: 1, config: [...]}``; raises ``ConfigErrors`` listing every problem."""
    p = Problems()
    if doc.get("version") != 1:
        p.err("version", f"expected 1, got {doc.get('version')!r}")
    entries = doc.get("config")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        p.err("config", "expected a list of entries")
        p.raise_if_any()
    for k in doc:
        if k not in ("version", "config"):
            p.warn(str(k), "unknown key, ignored")

    devices: list[tuple[str, Any]] = []
    others: list[tuple[str, Any]] = []
    for i, raw in enumerate(entries):
        path = f"config[{i}]"
        if not isinstance(raw, dict):
            p.err(path, "expected a mapping")
            continue
        kind = raw.get("type")
        tp = _ENTRY_TYPES.get(kind) if isinstance(kind, str) else None
        if tp is None:
            p.err(f"{path}.type", f"expected one of {', '.join(_ENTRY_TYPES)}, got {kind!r}")
            continue
        try:
            entry: Any = convert(tp, raw, path, strict=False, warnings=p.warnings)
        except ConfigErrors as e:
            p.absorb(e)
            continue
        (devices if isinstance(entry, _DEVICE) else others).append((path, entry))

    checks.unique(p, "", ((d.name, f"{path}.name") for path, d in devices))
    ifaces: dict[str, Interface] = {}
    for path, d in devices:
        iface = _device(p, path, d, {x.name for _, x in devices})
        if iface is not None:
            ifaces.setdefault(iface.id, iface)

    g_ns: list[str] = []
    g_search: list[str] = []
    for path, other in others:
        if isinstance(other, V1Nameserver):
            _nameserver(p, path, other, ifaces, g_ns, g_search)
        else:
            _global_route(p, path, other, ifaces)
    _check_membership(p, devices)
    p.raise_if_any()
    return NetworkModel(tuple(ifaces.values()), tuple(g_ns), tuple(g_search), version=1,
                        warnings=tuple(p.warnings))


def _device(p: Problems, path: str, d: Any, names: set[str]) -> Interface | None:
    name = checks.ifname(p, f"{path}.name", d.name)
    mac = checks.mac(p, f"{path}.mac_address", d.mac_address)
    if d.mtu is not None and not 68 <= d.mtu <= 65535:
        p.err(f"{path}.mtu", f"{d.mtu} is outside 68-65535")
    if name is None:
        return None
    base: dict[str, Any] = {"id": name, "mtu": d.mtu, "accept_ra": d.accept_ra}
    if isinstance(d, V1Physical):
        base.update(kind="physical")
        if mac:
            base.update(match=Match(mac=mac), set_name=name)
    else:
        base.update(mac_address=mac)
    if isinstance(d, V1Bond):
        base.update(kind="bond", members=_refs(p, f"{path}.bond_interfaces", d.bond_interfaces, names, name),
                    bond=_bond_params(p, f"{path}.params", d.params, d.bond_interfaces))
    elif isinstance(d, V1Bridge):
        members = d.bridge_interfaces or tuple(d.params.get("bridge_ports") or ())
        base.update(kind="bridge", members=_refs(p, f"{path}.bridge_interfaces", members, names, name),
                    bridge=_bridge_params(p, f"{path}.params", d.params, members))
    elif isinstance(d, V1Vlan):
        if not 0 <= d.vlan_id <= 4094:
            p.err(f"{path}.vlan_id", f"{d.vlan_id} is outside 0-4094")
        if d.vlan_link not in names:
            p.err(f"{path}.vlan_link", f"{d.vlan_link!r} is not defined in this config")
        base.update(kind="vlan", vlan_id=d.vlan_id, vlan_link=d.vlan_link)
    iface = Interface(**base)
    for j, s in enumerate(d.subnets):
        iface = _subnet(p, f"{path}.subnets[{j}]", s, iface)
    return iface


def _refs(p: Problems, path: str, refs: tuple[str, ...], names: set[str], self_name: str) -> tuple[str, ...]:
    out = []
    for j, r in enumerate(refs):
        if r not in names or r == self_name:
            p.err(f"{path}[{j}]", f"{r!r} is not defined in this config")
        else:
            out.append(r)
    return tuple(out)


def _subnet(p: Problems, path: str, s: V1Subnet, iface: Interface) -> Interface:
    t = s.type
    if t in ("dhcp", "dhcp4"):
        opts = DhcpOptions(route_metric=s.metric) if s.metric is not None else iface.dhcp4_options
        return replace(iface, dhcp4=True, dhcp4_options=opts)
    if t in ("dhcp6", "ipv6_dhcpv6-stateful"):
        return replace(iface, dhcp6=True)
    if t in ("ipv6_slaac", "ipv6_dhcpv6-stateless"):
        # networkd asks DHCPv6 for "other" information by itself when the RA says so
        return replace(iface, accept_ra=True)
    if t == "manual":
        return iface
    # static / static6
    if not s.address:
        p.err(f"{path}.address", "a static subnet needs an address")
        return iface
    addr = checks.cidr(p, f"{path}.address", s.address, s.netmask, f"{path}.netmask")
    if addr is None:
        return iface
    fam = checks.family(addr)
    if t == "static6" and fam != 6:
        p.err(f"{path}.address", f"{s.address!r} is not an IPv6 address (type static6)")
    routes = list(iface.routes)
    if s.gateway:
        gw = checks.ip(p, f"{path}.gateway", s.gateway)
        if gw is not None:
            if checks.family(gw) != fam:
                p.err(f"{path}.gateway", f"{gw} is not in the address family of {addr}")
            routes.append(Route("::/0" if fam == 6 else "0.0.0.0/0", gw, s.metric))
    for k, r in enumerate(s.routes):
        route = _route(p, f"{path}.routes[{k}]", r, default_metric=s.metric)
        if route is not None:
            routes.append(route)
    ns = tuple(x for j, n in enumerate(s.dns_nameservers)
               if (x := checks.ip(p, f"{path}.dns_nameservers[{j}]", n)) is not None)
    return replace(iface, addresses=iface.addresses + (addr,), routes=tuple(routes),
                   nameservers=_merge(iface.nameservers, ns), search=_merge(iface.search, s.dns_search))


def _merge(a: tuple[str, ...], b: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


def _route(p: Problems, path: str, r: V1Route, default_metric: int | None = None) -> Route | None:
    dest = r.destination if r.destination is not None else r.network
    if dest is None:
        p.err(path, "a route needs a destination (or network)")
        return None
    gw = checks.ip(p, f"{path}.gateway", r.gateway) if r.gateway else None
    if r.gateway is None:
        p.err(f"{path}.gateway", "a route needs a gateway")
    net = checks.network(p, f"{path}.destination", dest, r.netmask, f"{path}.netmask",
                         family_hint=checks.family(gw) if gw else None)
    if net is None or gw is None:
        return None
    if checks.family(net) != checks.family(gw):
        p.err(f"{path}.gateway", f"{gw} is not in the address family of {net}")
        return None
    return Route(net, gw, r.metric if r.metric is not None else default_metric)


def _global_route(p: Problems, path: str, r: V1Route, ifaces: dict[str, Interface]) -> None:
    """A top-level route goes to the interface whose subnet holds its gateway; failing that, to the first
    interface with a static address of its family, marked on-link so the kernel accepts it."""
    route = _route(p, path, r)
    if route is None or route.via is None:
        return
    gw = ipaddress.ip_address(route.via)
    fallback: Interface | None = None
    for iface in ifaces.values():
        for a in iface.addresses:
            net = ipaddress.ip_interface(a).network
            if net.version != gw.version:
                continue
            if gw in net:
                ifaces[iface.id] = replace(iface, routes=iface.routes + (route,))
                return
            fallback = fallback or iface
    if fallback is None:
        p.err(path, f"no interface has a static IPv{gw.version} address to reach gateway {gw}")
        return
    p.warn(path, f"gateway {gw} is outside every subnet; routing it on-link via {fallback.id}")
    ifaces[fallback.id] = replace(fallback, routes=fallback.routes + (replace(route, on_link=True),))


def _nameserver(p: Problems, path: str, e: V1Nameserver, ifaces: dict[str, Interface],
                g_ns: list[str], g_search: list[str]) -> None:
    addrs = (e.address,) if isinstance(e.address, str) else e.address
    search = (e.search,) if isinstance(e.search, str) else e.search
    ns = [x for j, a in enumerate(addrs) if (x := checks.ip(p, f"{path}.address[{j}]", a)) is not None]
    if e.interface is None:
        g_ns.extend(x for x in ns if x not in g_ns)
        g_search.extend(x for x in search if x not in g_search)
        return
    iface = ifaces.get(e.interface)
    if iface is None:
        p.err(f"{path}.interface", f"{e.interface!r} is not defined in this config")
        return
    ifaces[e.interface] = replace(iface, nameservers=_merge(iface.nameservers, ns),
                                  search=_merge(iface.search, search))


def _check_membership(p: Problems, devices: list[tuple[str, Any]]) -> None:
    owner: dict[str, str] = {}
    for path, d in devices:
        members = getattr(d, "bond_interfaces", None) or getattr(d, "bridge_interfaces", None) or ()
        for m in members:
            if m in owner:
                p.err(path, f"{m!r} is already a member of {owner[m]!r}")
            owner[m] = d.name
    for path, d in devices:
        if d.name in owner and d.subnets:
            p.warn(f"{path}.subnets", f"{d.name} is a member of {owner[d.name]}; its subnets are ignored")


def _bond_params(p: Problems, path: str, params: dict[str, Any], members: tuple[str, ...]) -> BondParams:
    out: dict[str, Any] = {}
    for key, value in params.items():
        sub = f"{path}.{key}"
        norm = key.replace("-", "_")
        short = norm[5:] if norm.startswith("bond_") else norm
        if short in _BOND_IGNORED:
            p.warn(sub, "not supported by the networkd renderer, ignored")
            continue
        spec = _BOND_KEYS.get(short)
        if spec is None:
            p.warn(sub, "unknown bond parameter, ignored")
            continue
        fname, kind = spec
        v = _bond_value(p, sub, value, kind)
        if v is not None:
            out[fname] = v
    if out.get("primary") and out["primary"] not in members:
        p.err(f"{path}.bond-primary", f"{out['primary']!r} is not one of the bond's interfaces")
    return BondParams(**out)


def _bond_value(p: Problems, path: str, value: Any, kind: str) -> Any:
    if kind == "ms":
        return checks.duration(p, path, value, "ms", "ms")
    if kind == "s":
        return checks.duration(p, path, value, "s", "s")
    if kind == "int":
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        p.err(path, f"expected an integer, got {value!r}")
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "on", "yes", "true"):
            return True
        if str(value).lower() in ("0", "off", "no", "false"):
            return False
        p.err(path, f"expected a boolean, got {value!r}")
        return None
    if kind == "ips":
        items = value if isinstance(value, list) else str(value).replace(",", " ").split()
        return tuple(x for j, a in enumerate(items) if (x := checks.ip(p, f"{path}[{j}]", str(a))) is not None)
    if kind == "mode":
        if value not in BOND_MODES:
            p.err(path, f"{value!r} is not a bond mode networkd supports ({', '.join(BOND_MODES)})")
            return None
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        p.err(path, f"expected a string, got {value!r}")
        return None
    return str(value)


def _bridge_params(p: Problems, path: str, params: dict[str, Any], members: tuple[str, ...]) -> BridgeParams:
    out: dict[str, Any] = {}
    for key, value in params.items():
        sub = f"{path}.{key}"
        if key in _BRIDGE_IGNORED:
            continue
        if key in _BRIDGE_TIMES:
            out[_BRIDGE_TIMES[key]] = checks.duration(p, sub, value, "s", "s")
        elif key == "bridge_bridgeprio":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                p.err(sub, f"expected an integer 0-65535, got {value!r}")
            else:
                out["priority"] = value
        elif key == "bridge_stp":
            v = str(value).lower() if not isinstance(value, bool) else ("on" if value else "off")
            if v not in ("on", "off"):
                p.err(sub, f"expected 'on' or 'off', got {value!r}")
            else:
                out["stp"] = v == "on"
        elif key in ("bridge_pathcost", "bridge_portprio"):
            pairs = _port_pairs(p, sub, value, members, 63 if key == "bridge_portprio" else 65535)
            out["path_cost" if key == "bridge_pathcost" else "port_priority"] = pairs
        elif key == "bridge_hw":
            p.warn(sub, "use mac_address on the bridge instead; ignored")
        else:
            p.warn(sub, "unknown bridge parameter, ignored")
    return BridgeParams(**{k: v for k, v in out.items() if v is not None})


def _port_pairs(p: Problems, path: str, value: Any, members: tuple[str, ...],
                maximum: int) -> tuple[tuple[str, int], ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for j, item in enumerate(items):
        parts = str(item).split()
        if len(parts) != 2 or not parts[1].isdigit():
            p.err(f"{path}[{j}]", f"expected 'PORT NUMBER', got {item!r}")
            continue
        port, n = parts[0], int(parts[1])
        if port not in members:
            p.err(f"{path}[{j}]", f"{port!r} is not one of the bridge's interfaces")
        elif n > maximum:
            p.err(f"{path}[{j}]", f"{n} is over the maximum {maximum}")
        else:
            out.append((port, n))
    return tuple(out)

