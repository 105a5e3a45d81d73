"""Value checks shared by the network parsers: addresses, MACs, interface names, durations.

Each check returns the normalized value or records a path-qualified problem (``config[2].subnets[0].address:
...``) and returns None, so one pass reports every mistake in a document.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from tether.errors import ConfigError, ConfigErrors

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME_BAD = re.compile(r"[\s/:]")
MAX_IFNAME = 15
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
_DURATION = re.compile(r"^(\d+)\s*(ms|msec|s|sec|m|min)?$")


class Problems:
    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(ConfigError(path or "(top)", msg))

    def warn(self, path: str, msg: str) -> None:
        self.warnings.append(f"{path}: {msg}" if path else msg)

    def absorb(self, e: ConfigErrors | ConfigError) -> None:
        self.errors.extend(e.errors if isinstance(e, ConfigErrors) else [e])

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


def mac(p: Problems, path: str, value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower().replace("-", ":")
    if not _MAC.match(v):
        p.err(path, f"{value!r} is not a MAC address (expected six hex pairs like 52:54:00:12:34:56)")
        return None
    return v


def ifname(p: Problems, path: str, value: str) -> str | None:
    """A kernel interface name: 1-15 bytes, no whitespace, '/' or ':'."""
    if not value or len(value.encode()) > MAX_IFNAME or _IFNAME_BAD.search(value) or value in (".", ".."):
        p.err(path, f"{value!r} is not a valid interface name (1-{MAX_IFNAME} characters, no spaces, '/' or ':')")
        return None
    return value


def ip(p: Problems, path: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        p.err(path, f"{value!r} is not an IP address")
        return None


def prefix_len(mask: str | int, version: int) -> int | None:
    """Prefix length from a dotted/colon netmask or a number; None if it is not a contiguous mask."""
    if isinstance(mask, int) or str(mask).isdigit():
        n = int(mask)
        return n if 0 <= n <= (32 if version == 4 else 128) else None
    try:
        m = ipaddress.ip_address(str(mask).strip())
    except ValueError:
        return None
    if m.version != version:
        return None
    bits = m.max_prefixlen
    n = int(m)
    ones = bin(n).count("1")
    # contiguous: the mask is ``ones`` one-bits followed by zeros
    return ones if n == ((1 << bits) - 1) ^ ((1 << (bits - ones)) - 1) else None


def _address_and_prefix(p: Problems, path: str, text: str, netmask: str | int | None, netmask_path: str,
                        what: str) -> tuple[Any, int | None] | None:
    """(address, prefix or None when no prefix/netmask was given), or None after reporting the problem."""
    addr_part, _, pfx = text.strip().partition("/")
    try:
        a = ipaddress.ip_address(addr_part)
    except ValueError:
        p.err(path, f"{text!r} is not {what}")
        return None
    if pfx:
        n = prefix_len(pfx, a.version)
        if n is None:
            p.err(path, f"{text!r} has an invalid prefix length")
            return None
        return a, n
    if netmask is not None and str(netmask) != "":
        n = prefix_len(netmask, a.version)
        if n is None:
            p.err(netmask_path or path, f"{netmask!r} is not a valid IPv{a.version} netmask")
            return None
        return a, n
    return a, None


def cidr(p: Problems, path: str, address: str, netmask: str | int | None = None,
         netmask_path: str = "") -> str | None:
    """``address`` (maybe with /prefix) plus an optional netmask, as ``addr/prefix``."""
    got = _address_and_prefix(p, path, address, netmask, netmask_path, "an IP address")
    if got is None:
        return None
    a, n = got
    if n is None:
        n = 32 if a.version == 4 else 64   # cloud-init's defaults when no mask is given
    return f"{a}/{n}"


def network(p: Problems, path: str, dest: str, netmask: str | int | None = None,
            netmask_path: str = "", family_hint: int | None = None) -> str | None:
    """A route destination as a network CIDR; "default" is the default route of ``family_hint``.

    A bare address with no netmask is a host route (/32 or /128).
    """
    if dest.strip() == "default":
        return "::/0" if family_hint == 6 else "0.0.0.0/0"
    got = _address_and_prefix(p, path, dest, netmask, netmask_path, "a network address")
    if got is None:
        return None
    a, n = got
    return str(ipaddress.ip_network(f"{a}/{a.max_prefixlen if n is None else n}", strict=False))


def family(addr_or_net: str) -> int:
    return 6 if ":" in addr_or_net else 4


def duration(p: Problems, path: str, value: Any, default_unit: str, out_unit: str) -> int | None:
    """A time value as an integer count of ``out_unit`` ("ms" or "s"); plain numbers are ``default_unit``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        p.err(path, f"expected a number or a duration like '100ms', got {type(value).__name__}")
        return None
    m = _DURATION.match(str(value).strip())
    if not m:
        p.err(path, f"{value!r} is not a duration (a number, or with ms/s/min)")
        return None
    n, unit = int(m.group(1)), m.group(2) or default_unit
    ms = n * {"ms": 1, "msec": 1, "s": 1000, "sec": 1000, "m": 60000, "min": 60000}[unit]
    return ms if out_unit == "ms" else ms // 1000


def unique(p: Problems, path: str, names: Iterable[tuple[str, str]]) -> None:
    """Report names defined twice; ``names`` yields (name, path)."""
    seen: dict[str, str] = {}
    for name, where in names:
        if name in seen:
            p.err(where, f"{name!r} is defined twice (first at {seen[name]})")
        else:
            seen[name] = where
