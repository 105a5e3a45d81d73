"""The internal network model every parser produces and every renderer consumes.

v1, v2 (netplan) and OpenStack network_data.json all end up here, so renderers never look at an input
format. Values are already validated and normalized: addresses are CIDR strings, MACs lower case,
gateways are default routes, time values carry their unit in the field name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["physical", "bond", "bridge", "vlan"]


@dataclass(frozen=True)
class Route:
    to: str                       # CIDR; "0.0.0.0/0" or "::/0" for a default route
    via: str | None = None
    metric: int | None = None
    on_link: bool = False         # gateway reachable on this link though outside its subnets
    table: int | None = None

    @property
    def is_default(self) -> bool:
        return self.to in ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class DhcpOptions:
    route_metric: int | None = None
    use_dns: bool | None = None
    use_domains: bool | None = None
    use_hostname: bool | None = None
    use_mtu: bool | None = None
    use_ntp: bool | None = None
    use_routes: bool | None = None
    send_hostname: bool | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class Match:
    """How to find a physical device. Name may be a glob; MAC is lower case."""

    name: str | None = None
    mac: str | None = None
    driver: str | None = None


@dataclass(frozen=True)
class BondParams:
    mode: str | None = None
    lacp_rate: str | None = None
    mii_monitor_ms: int | None = None
    up_delay_ms: int | None = None
    down_delay_ms: int | None = None
    arp_interval_ms: int | None = None
    learn_packet_interval_s: int | None = None
    min_links: int | None = None
    transmit_hash_policy: str | None = None
    ad_select: str | None = None
    all_slaves_active: bool | None = None
    arp_ip_targets: tuple[str, ...] = ()
    arp_validate: str | None = None
    arp_all_targets: str | None = None
    fail_over_mac: str | None = None
    gratuitous_arp: int | None = None
    packets_per_slave: int | None = None
    primary_reselect: str | None = None
    primary: str | None = None          # member id
    ad_actor_sys_prio: int | None = None
    ad_actor_system: str | None = None
    ad_user_port_key: int | None = None
    resend_igmp: int | None = None


@dataclass(frozen=True)
class BridgeParams:
    ageing_time_s: int | None = None
    priority: int | None = None
    forward_delay_s: int | None = None
    hello_time_s: int | None = None
    max_age_s: int | None = None
    stp: bool | None = None
    path_cost: tuple[tuple[str, int], ...] = ()       # (member id, cost)
    port_priority: tuple[tuple[str, int], ...] = ()   # (member id, priority 0-63)


@dataclass(frozen=True)
class Interface:
    id: str                       # v1 name / netplan id; a device name unless ``match`` says otherwise
    kind: Kind
    match: Match | None = None    # physical only; None means "the device called ``id``"
    set_name: str | None = None
    mac_address: str | None = None   # MAC to assign (v2 macaddress, v1 bond/vlan/bridge mac)
    mtu: int | None = None
    dhcp4: bool = False
    dhcp6: bool = False
    accept_ra: bool | None = None
    link_local: tuple[str, ...] | None = None   # subset of ("ipv4", "ipv6"); None = networkd default
    addresses: tuple[str, ...] = ()  # CIDR
    routes: tuple[Route, ...] = ()
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    dhcp4_options: DhcpOptions | None = None
    dhcp6_options: DhcpOptions | None = None
    dhcp_client_id_mac: bool = False
    optional: bool = False
    wakeonlan: bool = False
    members: tuple[str, ...] = ()    # bond/bridge member ids
    bond: BondParams | None = None
    bridge: BridgeParams | None = None
    vlan_id: int | None = None
    vlan_link: str | None = None

    @property
    def device_name(self) -> str | None:
        """The kernel name this interface will have, when the config says."""
        if self.set_name:
            return self.set_name
        return self.id if self.match is None else None

    @property
    def has_l3(self) -> bool:
        return bool(self.dhcp4 or self.dhcp6 or self.addresses or self.accept_ra)


@dataclass(frozen=True)
class NetworkModel:
    interfaces: tuple[Interface, ...] = ()
    # v1 nameservers not tied to an interface: they go to every interface with L3 config and no DNS of its own
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    version: int = 2
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def get(self, iface_id: str) -> Interface | None:
        for i in self.interfaces:
            if i.id == iface_id:
                return i
        return None

    def master_of(self, iface_id: str) -> Interface | None:
        """The bond or bridge that enslaves ``iface_id``."""
        for i in self.interfaces:
            if iface_id in i.members:
                return i
        return None

    def vlans_on(self, iface_id: str) -> list[Interface]:
        return [i for i in self.interfaces if i.kind == "vlan" and i.vlan_link == iface_id]

    def dns_for(self, iface: Interface) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(nameservers, search) to configure on ``iface``: its own, or the global ones if it has L3 config."""
        if iface.nameservers or iface.search:
            return iface.nameservers, iface.search
        if iface.has_l3 and self.master_of(iface.id) is None:
            return self.nameservers, self.search
        return (), ()
