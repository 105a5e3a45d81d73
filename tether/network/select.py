"""Which network config applies this boot, in cloud-init's order, and which renderer writes it.

1. kernel command line ``network-config=`` (base64, optionally gzipped; or ``disabled``)
2. system config ``network:`` (/etc/cloud/cloud.cfg and .d)
3. the datasource's network config (v1/v2 as given, or OpenStack network_data.json)
4. fallback: DHCPv4 on the first physical NIC

The first source that says anything wins; ``{config: disabled}`` in a source reached before any real config
turns network configuration off (tether then writes nothing). A source that holds only renderer options
(no ``version``) says nothing and the search goes on.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import os
from typing import Any

from tether import log, yamlsafe
from tether.errors import ConfigError
from tether.host import split_cmdline
from tether.network.live import Iface, fallback_nic
from tether.network.netplan import has_netplan
from tether.network.openstack import is_network_data, network_data_to_v1
from tether.network.parse import unwrap
from tether.target import Target

LOG = log.get(__name__)
CMDLINE_SOURCE = "kernel command line network-config="
MAX_CMDLINE_CONFIG = 1 << 20   # decompressed; a kernel command line is at most a few KiB anyway


def is_disabled(doc: Any) -> bool:
    doc = unwrap(doc)
    return isinstance(doc, dict) and doc.get("config") == "disabled"


def _says_something(doc: Any) -> bool:
    doc = unwrap(doc)
    return isinstance(doc, dict) and ("version" in doc or doc.get("config") == "disabled" or is_network_data(doc))


def cmdline_config(cmdline: str) -> dict[str, Any] | None:
    """The config from the last ``network-config=`` on the command line, or None."""
    args = split_cmdline(cmdline)
    value = None
    for a in args:
        if a.startswith("network-config="):
            value = a.split("=", 1)[1]
    if value is None:
        return None
    if value == "disabled":
        return {"config": "disabled"}
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("", "not valid base64", CMDLINE_SOURCE) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(MAX_CMDLINE_CONFIG + 1)
        except (OSError, EOFError) as e:
            raise ConfigError("", f"not valid gzip data: {e}", CMDLINE_SOURCE) from None
        if len(raw) > MAX_CMDLINE_CONFIG:
            raise ConfigError("", "decompressed config is over 1 MiB", CMDLINE_SOURCE)
    doc = yamlsafe.load(raw, CMDLINE_SOURCE)
    if not isinstance(doc, dict):
        raise ConfigError("", f"expected a mapping, got {type(doc).__name__}", CMDLINE_SOURCE)
    return doc


def fallback_config(ifaces: list[Iface]) -> tuple[dict[str, Any] | None, str]:
    nic = fallback_nic(ifaces)
    if nic is None:
        return None, "fallback: no physical interface to configure"
    eth: dict[str, Any] = {"dhcp4": True}
    if nic.mac:
        eth = {"match": {"macaddress": nic.mac}, "set-name": nic.name, **eth}
    return {"version": 2, "ethernets": {nic.name: eth}}, f"fallback: DHCPv4 on {nic.name}"


def select_config(*, cmdline: str, system_config: dict[str, Any], datasource_config: dict[str, Any] | None,
                  fallback_ifaces: list[Iface]) -> tuple[dict[str, Any] | None, str]:
    """(config or None when disabled / nothing to do, reason for the log). The config is unwrapped from
    ``network:`` and OpenStack network_data.json is converted to v1. Raises ``ConfigError`` when the kernel
    command line carries a config that cannot be decoded."""
    sources: list[tuple[str, Any]] = [
        (CMDLINE_SOURCE, cmdline_config(cmdline)),
        ("system config network:", system_config.get("network") if isinstance(system_config, dict) else None),
        ("datasource network config", datasource_config),
    ]
    for name, doc in sources:
        if not _says_something(doc):
            continue
        if is_disabled(doc):
            return None, f"disabled by {name}"
        doc = unwrap(doc)
        if is_network_data(doc):
            known = {i.mac: i.name for i in fallback_ifaces if i.mac}
            return network_data_to_v1(doc, known), f"{name} (OpenStack network_data.json)"
        return doc, name
    return fallback_config(fallback_ifaces)


# Renderers by cloud-init's names, in cloud-init's default order of preference.
RENDERERS = ("netplan", "network-manager", "networkd")
CLOUD_INIT_ONLY = ("eni", "sysconfig", "freebsd", "netbsd", "openbsd")
NM_BINS = ("/usr/sbin/NetworkManager", "/sbin/NetworkManager")
NM_UNITS = ("/usr/lib/systemd/system/NetworkManager.service", "/lib/systemd/system/NetworkManager.service")
NM_ENABLED = ("/etc/systemd/system/multi-user.target.wants/NetworkManager.service",
              "/etc/systemd/system/dbus-org.freedesktop.NetworkManager.service")
NETWORKD_BINS = ("/usr/lib/systemd/systemd-networkd", "/lib/systemd/systemd-networkd")
NM_CONNECTIONS = "/etc/NetworkManager/system-connections"
NM_PROFILE_PREFIX, NM_PROFILE_SUFFIX = "tether-", ".nmconnection"   # the profiles tether writes there


def _any(target: Target, paths: tuple[str, ...]) -> bool:
    return any(target.exists(p) for p in paths)


def _masked(target: Target, unit: str) -> bool:
    try:
        return os.readlink(target.path_nofollow(f"/etc/systemd/system/{unit}")) == "/dev/null"
    except OSError:
        return False


def has_nm_profiles(target: Target) -> bool:
    """Whether tether's NetworkManager profiles are in the target (so another renderer must remove them)."""
    try:
        names = os.listdir(target.path(NM_CONNECTIONS))
    except OSError:
        return False
    return any(n.startswith(NM_PROFILE_PREFIX) and n.endswith(NM_PROFILE_SUFFIX) for n in names)


def has_network_manager(target: Target) -> bool:
    """NetworkManager is installed (binary or unit) and not masked."""
    return (_any(target, NM_BINS) or _any(target, NM_UNITS)) and not _masked(target, "NetworkManager.service")


def renderer_available(target: Target, name: str) -> bool:
    """cloud-init's availability test, against the target root and without running anything.

    netplan: its binary. network-manager: installed, not masked, and either enabled or the only choice (no
    systemd-networkd binary); a Debian image, which always has networkd, picks NetworkManager only when it is
    enabled (cloud-init asks ``systemctl is-enabled``). networkd: always (the last resort, as before).
    """
    if name == "netplan":
        return has_netplan(target)
    if name == "network-manager":
        if not has_network_manager(target):
            return False
        return _any(target, NM_ENABLED) or not _any(target, NETWORKD_BINS)
    return name == "networkd"


def renderer_order(system_config: dict[str, Any]) -> tuple[list[str], str]:
    """(the renderers to try, where the order came from): cloud-init's ``system_info: {network: {renderers:
    [...]}}``, else tether's older ``network: {renderers: [...]}``, else the default order."""
    for where, holder in (("system_info.network.renderers", _dig(system_config, "system_info", "network")),
                          ("network.renderers", _dig(system_config, "network"))):
        wanted = holder.get("renderers") if isinstance(holder, dict) else None
        if wanted is None:
            continue
        if not isinstance(wanted, list) or not all(isinstance(r, str) for r in wanted):
            LOG.warning("%s: expected a list of renderer names, got %r; using the default order", where, wanted)
            return list(RENDERERS), "default"
        for r in wanted:
            if r not in RENDERERS:
                # cloud-init's other renderers are expected in its stock lists; anything else is a typo
                (LOG.info if r in CLOUD_INIT_ONLY else LOG.warning)(
                    "%s: tether does not render %r (it renders %s); skipped", where, r, ", ".join(RENDERERS))
        return [r for r in wanted if r in RENDERERS], where
    return list(RENDERERS), "default"


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def choose_renderer(target: Target, system_config: dict[str, Any]) -> str:
    """The first available renderer in the configured (or default) order; networkd when none is."""
    order, where = renderer_order(system_config)
    for name in order:
        if renderer_available(target, name):
            return name
    if where != "default":
        LOG.warning("%s: none of %s is available in the target; using networkd", where, ", ".join(order) or "[]")
    return "networkd"
