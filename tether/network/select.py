"""Which network config applies this boot, in cloud-init's order.

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
from typing import Any

from tether import yamlsafe
from tether.errors import ConfigError
from tether.host import split_cmdline
from tether.network.live import Iface, fallback_nic
from tether.network.openstack import is_network_data, network_data_to_v1
from tether.network.parse import unwrap

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
