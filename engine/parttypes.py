"""GPT partition type GUIDs by the names the host configuration uses (Discoverable Partitions Specification)."""

from __future__ import annotations

import platform
import re

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_COMMON = {
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "xbootldr": "BC13C2FF-59E6-4262-A352-B275FD6F7172",
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "home": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
    "srv": "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
    "var": "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
    "tmp": "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1",
    "linux-generic": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}
_PER_ARCH = {
    "x86_64": {"root": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "usr": "8484680C-9521-48C6-9C11-B0720656F69E",
               "root-verity": "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
               "usr-verity": "77FF5F63-E7B6-4633-ACF4-1565B864C0E6"},
    "aarch64": {"root": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", "usr": "B0E01050-EE5F-4390-949A-9101B17104E9",
                "root-verity": "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
                "usr-verity": "6E11A4E7-FBCA-4DED-B9E9-E1A512BB664E"},
}
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

NAMES = tuple(_COMMON) + ("root", "usr", "root-verity", "usr-verity")


def arch() -> str:
    m = platform.machine().lower()
    return _ARCH_ALIASES.get(m, m)


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


def type_guid(name: str, machine: str | None = None) -> str:
    """GUID for a type name (or a GUID given directly). Raises ValueError for an unknown name."""
    if is_uuid(name):
        return name.upper()
    if name in _COMMON:
        return _COMMON[name]
    table = _PER_ARCH.get(machine or arch())
    if table is None:
        raise ValueError(f"partition type {name!r} has no GUID known for architecture {machine or arch()}")
    if name in table:
        return table[name]
    raise ValueError(f"unknown partition type {name!r} (one of {', '.join(NAMES)}, or a GUID)")
