"""Host configuration features tether does not implement: cut out of the data and reported by key path.

Each is reported as "<path>: <feature> is not supported by tether", never silently ignored. Empty or default
values (``raid: {software: []}``) are accepted and dropped, as they ask for nothing. The ids the cut-out
sections define (RAID arrays, encrypted volumes, verity devices, adopted partitions) are returned too, so the
cross-reference checks still run over the rest and do not echo them as unknown ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.errors import ConfigError

_NOT = "is not supported by tether"
_WHY_MANAGEMENT_OS = (
    "configuring the management OS is not supported by tether: managementOs sets users and netplan of "
    "Trident's own installer image; tether installs from whatever live system runs it and does not reconfigure "
    "that system (give the live system its own cloud-config instead)")
_WHY_NTFS = ("filesystem type ntfs is not supported by tether: the engine creates only ext4, xfs, vfat and swap "
             "(making ntfs needs mkntfs from ntfs-3g, which tether does not depend on, and the new OS an ntfs3 or "
             "FUSE driver to mount it); use ext4, xfs or vfat, or create it in a postConfigure script")


@dataclass
class Cut:
    """What was cut out: one error per feature, and the ids the cut-out sections defined."""

    errors: list[ConfigError] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


def _ids(section: Any, keys: tuple[str, ...]) -> set[str]:
    """Every value under ``keys`` in a (nested) section: the ids it defines."""
    out: set[str] = set()
    if isinstance(section, dict):
        for k, v in section.items():
            if k in keys and isinstance(v, str):
                out.add(v)
            else:
                out |= _ids(v, keys)
    elif isinstance(section, list):
        for v in section:
            out |= _ids(v, keys)
    return out


def _empty(v: Any) -> bool:
    if v is None or v == [] or v == {}:
        return True
    if isinstance(v, dict):
        return all(_empty(x) for x in v.values())
    return False


def _cut(parent: Any, key: str, path: str, what: str, errors: list[ConfigError],
         allowed: Any = None, message: str | None = None) -> Any:
    """Remove ``parent[key]`` and return it; report it unless it is empty (or equal to ``allowed``)."""
    if not isinstance(parent, dict) or key not in parent:
        return None
    v = parent.pop(key)
    if _empty(v) or (allowed is not None and v == allowed):
        return None
    errors.append(ConfigError(path, message or f"{what} {_NOT}"))
    return v


def _list(v: Any) -> list[Any]:
    """A list as given; anything else is not walked here (the converter reports its type)."""
    return v if isinstance(v, list) else []


def strip_unsupported(data: dict[str, Any]) -> Cut:
    """Mutates ``data`` (a copy) in place; returns one error per unsupported feature used."""
    cut = Cut()
    errors = cut.errors
    _cut(data, "managementOs", "managementOs", "", errors, message=_WHY_MANAGEMENT_OS)
    storage = data.get("storage")
    if isinstance(storage, dict):
        for key, what in (("raid", "software RAID"), ("encryption", "encryption"), ("verity", "dm-verity")):
            cut.ids |= _ids(_cut(storage, key, f"storage.{key}", what, errors), ("id", "name"))
        for i, disk in enumerate(_list(storage.get("disks"))):
            if not isinstance(disk, dict):
                continue
            cut.ids |= _ids(_cut(disk, "adoptedPartitions", f"storage.disks[{i}].adoptedPartitions",
                                 "adopting partitions", errors), ("id",))
            for j, part in enumerate(_list(disk.get("partitions"))):
                if isinstance(part, dict) and part.get("type") in ("root-verity", "usr-verity"):
                    errors.append(ConfigError(f"storage.disks[{i}].partitions[{j}].type",
                                              f"a {part['type']} partition (dm-verity) {_NOT}"))
                    part.pop("type")
        for i, fs in enumerate(_list(storage.get("filesystems"))):
            if not isinstance(fs, dict):
                continue
            if fs.get("source") == "adopted":
                errors.append(ConfigError(f"storage.filesystems[{i}].source",
                                          f"an adopted filesystem {_NOT}"))
                fs["source"] = "new"  # checked on as a new filesystem on the same device
            if fs.get("type") == "ntfs":
                errors.append(ConfigError(f"storage.filesystems[{i}].type", _WHY_NTFS))
                fs.pop("type")
            elif fs.get("type") == "auto":
                errors.append(ConfigError(f"storage.filesystems[{i}].type", f"filesystem type auto (only for "
                                          f"adopted filesystems) {_NOT}"))
                fs.pop("type")
            _cut(fs, "overrideEspMount", f"storage.filesystems[{i}].overrideEspMount",
                 "overriding the ESP mount", errors, allowed="use-default")
    os_ = data.get("os")
    if isinstance(os_, dict):
        _cut(os_, "sysexts", "os.sysexts", "systemd system extensions (sysexts)", errors)
        _cut(os_, "confexts", "os.confexts", "systemd configuration extensions (confexts)", errors)
    trident = data.get("trident")
    if isinstance(trident, dict):
        _cut(trident, "disable", "trident.disable", "disabling the agent from the host configuration", errors,
             allowed=False)
        _cut(trident, "phonehome", "trident.phonehome", "phone-home reporting", errors)
        _cut(trident, "logstream", "trident.logstream", "log streaming", errors)
    return cut
