"""The machine's interfaces as they are now: names, MACs, link state, physical or virtual.

Two views behind one shape (``Iface``): ``sysfs_interfaces(sysroot)`` reads ``/sys/class/net`` under a
root (cheap, no imports, a fake tree in tests), and ``netlink_interfaces(netns)`` asks the kernel through
pyroute2, imported only when called (it is an optional dependency and slow to import).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tether.record import Record

TYPE_CHECKING = False  # the boot's first stage does not import typing; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

ARPHRD_ETHER = 1


class Iface(Record):
    """One interface: ``up`` administratively (IFF_UP); ``carrier`` None when unknown (link down: the kernel
    will not say); ``physical`` when backed by a device (PCI, virtio, ...), not a bridge/bond/veth/tun.
    Read-only by convention (hashable)."""

    __slots__ = ("name", "mac", "up", "carrier", "physical", "driver")

    def __init__(self, name: str, mac: str | None, up: bool, carrier: bool | None, physical: bool,
                 driver: str | None = None) -> None:
        self.name = name
        self.mac = mac
        self.up = up
        self.carrier = carrier
        self.physical = physical
        self.driver = driver

    def __hash__(self) -> int:
        return hash(self._values())


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def sysfs_interfaces(sysroot: str | os.PathLike[str] = "/") -> list[Iface]:
    """Interfaces under ``<sysroot>/sys/class/net``, sorted by name."""
    base = Path(sysroot) / "sys/class/net"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    out = []
    for name in names:
        d = base / name
        flags = _read(d / "flags")
        carrier = _read(d / "carrier")
        mac = _read(d / "address")
        driver_link = d / "device" / "driver"
        driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
        # virtual devices have no "device" link; wireless, bridge and bond children have marker directories
        physical = (d / "device").exists() and _read(d / "type") == str(ARPHRD_ETHER) and not any(
            (d / x).exists() for x in ("bridge", "bonding", "wireless", "phy80211"))
        out.append(Iface(
            name=name,
            mac=mac.lower() if mac and mac != "00:00:00:00:00:00" else None,
            up=bool(int(flags, 16) & 0x1) if flags and flags.startswith("0x") else False,
            carrier=None if carrier not in ("0", "1") else carrier == "1",
            physical=physical,
            driver=driver,
        ))
    return out


def interface_names(sysroot: str | os.PathLike[str] = "/") -> dict[str, str]:
    """The machine's interface names by MAC (lower case; the first name in name order when two share one), what
    the metadata formats that name NICs by MAC need to keep a NIC's current name."""
    out: dict[str, str] = {}
    for iface in sysfs_interfaces(sysroot):
        if iface.mac:
            out.setdefault(iface.mac, iface.name)
    return out


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def fallback_nic(ifaces: list[Iface]) -> Iface | None:
    """The NIC to DHCP on when nobody configured networking: a physical one, preferring one with carrier,
    then by natural name order (eth2 before eth10), as cloud-init does."""
    cands = [i for i in ifaces if i.physical and i.name != "lo" and i.mac]
    if not cands:
        return None
    return sorted(cands, key=lambda i: (i.carrier is not True, _natural(i.name)))[0]


def netlink_interfaces(netns: str | None = None) -> list[Iface]:
    """Interfaces seen through netlink, in ``netns`` (by name) or the current namespace."""
    from pyroute2 import IPRoute, NetNS  # lazy: optional dependency

    ipr = NetNS(netns) if netns else IPRoute()
    try:
        out = []
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            kind = None
            info = link.get_attr("IFLA_LINKINFO")
            if info is not None:
                kind = info.get_attr("IFLA_INFO_KIND")
            mac = link.get_attr("IFLA_ADDRESS")
            out.append(Iface(
                name=name,
                mac=mac if mac and mac != "00:00:00:00:00:00" else None,
                up=bool(link["flags"] & 0x1),
                carrier=bool(link.get_attr("IFLA_CARRIER")) if link["flags"] & 0x1 else None,
                # netlink cannot see the bus; a link with no kind is what a NIC driver creates
                physical=kind is None and name != "lo" and link["ifi_type"] == ARPHRD_ETHER,
            ))
        return sorted(out, key=lambda i: i.name)
    finally:
        ipr.close()


def netlink_addresses(ifname: str, netns: str | None = None) -> list[str]:
    """Addresses on ``ifname`` as ``addr/prefix`` strings."""
    from pyroute2 import IPRoute, NetNS

    ipr = NetNS(netns) if netns else IPRoute()
    try:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return []
        return sorted(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0]))
    finally:
        ipr.close()
