"""EC2's instance metadata (``network/interfaces/macs/<mac>/...``) as network config v2.

DHCP on the primary NIC (the one ``mac`` names, else the first by network card and device number); with
``full`` (``apply_full_imds_network_config``) every NIC, each with a route metric that keeps the default route on
the primary, and the secondary addresses the metadata lists. NICs keep their current name when the machine has
that MAC (``names``), else ``eth<device-number>`` (``eth<100 * card + device>`` beyond the first card).
"""

from __future__ import annotations

from typing import Any


def text_lines(v: Any) -> list[str]:
    """A metadata leaf as its non-empty lines (a list leaf item by item)."""
    if isinstance(v, list):
        return [str(x).strip() for x in v if str(x).strip()]
    if isinstance(v, str):
        return [x.strip() for x in v.splitlines() if x.strip()]
    return []


def _prefix(cidr: Any) -> str | None:
    first = text_lines(cidr)
    if first and "/" in first[0]:
        return first[0].split("/", 1)[1]
    return None


def metadata_to_v2(md: dict[str, Any], full: bool, names: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Netplan v2 from ``network/interfaces/macs``: DHCP on the primary NIC (all NICs when ``full``)."""
    macs = (((md.get("network") or {}).get("interfaces") or {}).get("macs")) if isinstance(md, dict) else None
    if not isinstance(macs, dict) or not macs:
        return None
    names = names or {}

    def num(v: Any, default: int) -> int:
        try:
            return int(str(v).strip())
        except (TypeError, ValueError):
            return default

    nics = []
    for mac, info in macs.items():
        info = info if isinstance(info, dict) else {}
        nics.append((num(info.get("network-card", info.get("network-card-index")), 0),
                     num(info.get("device-number"), 99), mac.lower(), info))
    nics.sort()
    primary = str(md.get("mac") or "").strip().lower() or nics[0][2]
    if primary not in {n[2] for n in nics}:
        primary = nics[0][2]
    ethernets: dict[str, Any] = {}
    for card, dev, mac, info in nics:
        if not full and mac != primary:
            continue
        idx = dev if card == 0 else 100 * card + dev
        name = names.get(mac, f"eth{idx}")
        cfg: dict[str, Any] = {"match": {"macaddress": mac}, "dhcp4": True}
        ipv6s = text_lines(info.get("ipv6s"))
        if ipv6s:
            cfg["dhcp6"] = True
        if full and len(nics) > 1:
            # A lower metric for the primary NIC keeps the default route there.
            metric = 100 * (idx + 1)
            cfg["dhcp4-overrides"] = {"route-metric": metric}
            if ipv6s:
                cfg["dhcp6-overrides"] = {"route-metric": metric}
        addrs = []
        p4 = _prefix(info.get("subnet-ipv4-cidr-block"))
        for ip in text_lines(info.get("local-ipv4s"))[1:]:
            if p4:
                addrs.append(f"{ip}/{p4}")
        p6 = _prefix(info.get("subnet-ipv6-cidr-blocks"))
        for ip in ipv6s[1:]:
            if p6:
                addrs.append(f"{ip}/{p6}")
        if addrs:
            cfg["addresses"] = addrs
        ethernets[name] = cfg
    return {"version": 2, "ethernets": ethernets}
