"""Host configuration features tether does not implement: cut out of the data and reported by key path.

Each is reported as "<path>: <feature> is not supported by tether", never silently ignored. Empty or default
values (``raid: {software: []}``, ``selinux: {mode: null}``) are accepted and dropped, as they ask for nothing.
"""

from __future__ import annotations

from typing import Any

from tether.errors import ConfigError

_NOT = "is not supported by tether"


def _empty(v: Any) -> bool:
    if v is None or v == [] or v == {}:
        return True
    if isinstance(v, dict):
        return all(_empty(x) for x in v.values())
    return False


def _cut(parent: Any, key: str, path: str, what: str, errors: list[ConfigError],
         allowed: Any = None) -> None:
    """Remove ``parent[key]``; report it unless it is empty (or equal to ``allowed``)."""
    if not isinstance(parent, dict) or key not in parent:
        return
    v = parent.pop(key)
    if _empty(v) or (allowed is not None and v == allowed):
        return
    errors.append(ConfigError(path, f"{what} {_NOT}"))


def strip_unsupported(data: dict[str, Any]) -> list[ConfigError]:
    """Mutates ``data`` (a copy) in place; returns one error per unsupported feature used."""
    errors: list[ConfigError] = []
    _cut(data, "managementOs", "managementOs", "configuring the management OS", errors)
    storage = data.get("storage")
    if isinstance(storage, dict):
        _cut(storage, "raid", "storage.raid", "software RAID", errors)
        _cut(storage, "encryption", "storage.encryption", "encryption", errors)
        _cut(storage, "verity", "storage.verity", "dm-verity", errors)
        for i, disk in enumerate(storage.get("disks") or []):
            if not isinstance(disk, dict):
                continue
            _cut(disk, "adoptedPartitions", f"storage.disks[{i}].adoptedPartitions", "adopting partitions", errors)
            for j, part in enumerate(disk.get("partitions") or []):
                if isinstance(part, dict) and part.get("type") in ("root-verity", "usr-verity"):
                    errors.append(ConfigError(f"storage.disks[{i}].partitions[{j}].type",
                                              f"a {part['type']} partition (dm-verity) {_NOT}"))
                    part.pop("type")
        for i, fs in enumerate(storage.get("filesystems") or []):
            if not isinstance(fs, dict):
                continue
            if fs.get("source") == "adopted":
                errors.append(ConfigError(f"storage.filesystems[{i}].source",
                                          f"an adopted filesystem {_NOT}"))
                fs.pop("source")
            if fs.get("type") in ("ntfs", "auto"):
                errors.append(ConfigError(f"storage.filesystems[{i}].type", f"filesystem type {fs['type']} {_NOT}"))
                fs.pop("type")
            _cut(fs, "overrideEspMount", f"storage.filesystems[{i}].overrideEspMount",
                 "overriding the ESP mount", errors, allowed="use-default")
    os_ = data.get("os")
    if isinstance(os_, dict):
        _cut(os_, "sysexts", "os.sysexts", "systemd system extensions (sysexts)", errors)
        _cut(os_, "confexts", "os.confexts", "systemd configuration extensions (confexts)", errors)
        _cut(os_, "modules", "os.modules", "kernel module configuration", errors)
        sel = os_.get("selinux")
        if isinstance(sel, dict) and sel.get("mode") in ("permissive", "enforcing"):
            errors.append(ConfigError("os.selinux.mode", f"SELinux ({sel['mode']}) {_NOT}"))
            os_.pop("selinux")
    trident = data.get("trident")
    if isinstance(trident, dict):
        _cut(trident, "disable", "trident.disable", "disabling the agent from the host configuration", errors,
             allowed=False)
        _cut(trident, "phonehome", "trident.phonehome", "phone-home reporting", errors)
        _cut(trident, "logstream", "trident.logstream", "log streaming", errors)
    return errors
