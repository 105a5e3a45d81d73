"""Cross-reference checks of a host configuration that the schema alone cannot express."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection

from tether.engine.hostconfig import FileSystem, HostConfiguration
from tether.engine.parttypes import is_uuid, type_guid
from tether.engine.sizes import parse_size
from tether.errors import ConfigError

DEFAULT_DATASTORE = "/var/lib/tether/servicing/datastore.sqlite"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def datastore_path(hc: HostConfiguration) -> str:
    """Where the servicing datastore lives: ``trident.datastorePath``, else on a filesystem mounted at
    /var/lib/tether, else on one mounted at /var/lib/trident (Trident's layout), else the default path."""
    if hc.trident.datastore_path:
        return hc.trident.datastore_path
    mounted = {fs.mount.path for fs in hc.storage.filesystems if fs.mount is not None}
    if "/var/lib/tether" not in mounted and "/var/lib/trident" in mounted:
        return "/var/lib/trident/tether-datastore.sqlite"
    return DEFAULT_DATASTORE


def filesystem_for_path(hc: HostConfiguration, path: str) -> tuple[int, FileSystem] | None:
    """The filesystem (index, fs) whose mount point holds ``path`` (longest prefix wins)."""
    best: tuple[int, FileSystem] | None = None
    best_len = -1
    for i, fs in enumerate(hc.storage.filesystems):
        mp = fs.mount
        if mp is None or fs.type == "tmpfs":
            continue
        root = mp.path.rstrip("/") or "/"
        if (path == root or path.startswith(root.rstrip("/") + "/")) and len(root) > best_len:
            best, best_len = (i, fs), len(root)
    return best


ESP_MOUNTS = ("/boot/efi", "/efi")
VAR_TMP = "/var/tmp"


def config_notes(hc: HostConfiguration) -> list[str]:
    """What a valid configuration asks for that tether accepts but does not act on, one note per key."""
    notes: list[str] = []
    if hc.internal_params:
        notes.append(f"internalParams: ignored ({', '.join(sorted(hc.internal_params))}): Trident's internal "
                     "tuning knobs have no meaning for tether")
    return notes


def check_logic(hc: HostConfiguration, known_ids: Collection[str] = ()) -> list[ConfigError]:
    """Every cross-reference problem, each with its key path. ``known_ids`` are ids defined by sections cut out
    as not supported (RAID arrays, ...): references to them are neither errors nor checked further."""
    errs: list[ConfigError] = []

    def err(path: str, msg: str) -> None:
        errs.append(ConfigError(path, msg))

    st = hc.storage
    ids: dict[str, str] = {}
    partitions: dict[str, tuple[str, int | None, str]] = {}  # id -> (path, size or None for grow, type guid)
    uuids: dict[str, str] = {}  # partition UUID -> the partition's key path

    def claim(i: str, path: str) -> None:
        if not _ID.match(i):
            err(path, f"id {i!r} must start with a letter or digit and hold only letters, digits, '.', '_', '-'")
        if i in ids:
            err(path, f"id {i!r} is already used at {ids[i]}")
        else:
            ids[i] = path

    for d, disk in enumerate(st.disks):
        dp = f"storage.disks[{d}]"
        claim(disk.id, f"{dp}.id")
        if not disk.device.startswith("/dev/"):
            err(f"{dp}.device", f"{disk.device!r} is not a device path under /dev")
        for p, part in enumerate(disk.partitions):
            pp = f"{dp}.partitions[{p}]"
            claim(part.id, f"{pp}.id")
            size: int | None = None
            if part.size == "grow":
                if p != len(disk.partitions) - 1:
                    err(f"{pp}.size", "only the last partition of a disk can grow")
            else:
                try:
                    size = parse_size(part.size)
                    if size <= 0 or size % 4096:
                        err(f"{pp}.size", f"{part.size!r} must be a non-zero multiple of 4096 bytes")
                except ValueError as e:
                    err(f"{pp}.size", str(e))
            try:
                guid = type_guid(part.type)
            except ValueError as e:
                err(f"{pp}.type", str(e))
                guid = ""
            partitions[part.id] = (pp, size, guid)
            if part.label is not None and len(part.label) > 36:
                err(f"{pp}.label", "GPT labels hold at most 36 characters")
            if part.uuid is not None:
                if not is_uuid(part.uuid):
                    err(f"{pp}.uuid", f"{part.uuid!r} is not a UUID (8-4-4-4-12 hex digits)")
                elif part.uuid.lower() in uuids:
                    err(f"{pp}.uuid", f"{part.uuid!r} is already the UUID of {uuids[part.uuid.lower()]}")
                else:
                    uuids[part.uuid.lower()] = pp

    pair_ids: dict[str, tuple[str, str]] = {}
    in_pair: dict[str, str] = {}
    if st.ab_update is not None:
        for v, pair in enumerate(st.ab_update.volume_pairs):
            vp = f"storage.abUpdate.volumePairs[{v}]"
            claim(pair.id, f"{vp}.id")
            ok = True
            for key, ref in (("volumeAId", pair.volume_a_id), ("volumeBId", pair.volume_b_id)):
                if ref in known_ids and ref not in partitions:
                    ok = False
                elif ref not in partitions:
                    err(f"{vp}.{key}", f"{ref!r} is not a partition id")
                    ok = False
                elif ref in in_pair:
                    err(f"{vp}.{key}", f"partition {ref!r} is already in volume pair {in_pair[ref]!r}")
                    ok = False
                else:
                    in_pair[ref] = pair.id
            if ok and pair.volume_a_id == pair.volume_b_id:
                err(vp, "volume A and volume B must be different partitions")
            elif ok:
                _, sa, ta = partitions[pair.volume_a_id]
                _, sb, tb = partitions[pair.volume_b_id]
                if sa is None or sb is None:
                    err(vp, "A/B volumes need fixed sizes (not 'grow') so both slots are equal")
                elif sa != sb:
                    err(vp, f"volumes {pair.volume_a_id!r} ({sa} bytes) and {pair.volume_b_id!r} ({sb} bytes) "
                            "differ in size")
                if ta != tb:
                    err(vp, f"volumes {pair.volume_a_id!r} and {pair.volume_b_id!r} differ in partition type")
            pair_ids[pair.id] = (pair.volume_a_id, pair.volume_b_id)

    used: dict[str, str] = {}
    mounts: dict[str, str] = {}
    roots = 0
    needs_image = False
    for f, fs in enumerate(st.filesystems):
        fp = f"storage.filesystems[{f}]"
        if fs.type == "tmpfs":
            if fs.source != "new":
                err(f"{fp}.source", "tmpfs filesystems must have source 'new'")
            if fs.device_id is not None:
                err(f"{fp}.deviceId", "a tmpfs filesystem has no device")
        elif fs.device_id is None:
            err(f"{fp}.deviceId", "missing required key (only tmpfs filesystems have no device)")
        else:
            dev = fs.device_id
            if dev in known_ids and dev not in partitions and dev not in pair_ids:
                pass
            elif dev not in partitions and dev not in pair_ids:
                err(f"{fp}.deviceId", f"{dev!r} is not a partition or A/B volume pair id")
            elif dev in in_pair:
                err(f"{fp}.deviceId", f"partition {dev!r} belongs to volume pair {in_pair[dev]!r}; use the pair id")
            if dev in used:
                err(f"{fp}.deviceId", f"device {dev!r} is already used by {used[dev]}")
            used[dev] = fp
        if fs.source == "image":
            needs_image = True
            if fs.type is not None:
                err(f"{fp}.type", "the type of an image filesystem comes from the image; do not set it")
        mp = fs.mount
        if mp is None and fs.type == "tmpfs":
            err(f"{fp}.mountPoint", "missing: a tmpfs filesystem needs a mount point")
        if mp is not None:
            path = mp.path
            mpp = f"{fp}.mountPoint" + (".path" if not isinstance(fs.mount_point, str) else "")
            if not path.startswith("/"):
                err(mpp, f"{path!r} is not an absolute path")
            elif posixpath.normpath(path) != path.rstrip("/") and path != "/":
                err(mpp, f"{path!r} is not a normalized path (write {posixpath.normpath(path)!r})")
            elif any(c.isspace() for c in path):
                err(mpp, f"{path!r} contains white space")
            elif path in mounts:
                err(mpp, f"{path!r} is already the mount point of {mounts[path]}")
            else:
                mounts[path] = fp
            if path == "/":
                roots += 1
                if fs.source != "image":
                    err(f"{fp}.source", "the root filesystem must come from the image")
    if st.filesystems and roots != 1:
        err("storage.filesystems", "exactly one filesystem must be mounted at '/'" if roots == 0
            else "more than one filesystem is mounted at '/'")
    if needs_image and hc.image is None:
        err("image", "missing: filesystems with source 'image' need an image")
    if hc.image is not None and not st.filesystems:
        err("storage.filesystems", "an image needs filesystems to go to (at least the root)")

    for s, sw in enumerate(st.swap):
        sp = f"storage.swap[{s}].deviceId"
        if sw.device_id in known_ids and sw.device_id not in partitions:
            continue
        if sw.device_id not in partitions:
            err(sp, f"{sw.device_id!r} is not a partition id")
        elif sw.device_id in in_pair:
            err(sp, f"partition {sw.device_id!r} is an A/B volume and cannot be swap")
        elif sw.device_id in used:
            err(sp, f"device {sw.device_id!r} is already used by {used[sw.device_id]}")
        else:
            used[sw.device_id] = f"storage.swap[{s}]"

    ds = datastore_path(hc)
    if not ds.startswith("/") or not ds.endswith(".sqlite"):
        err("trident.datastorePath", f"{ds!r} must be an absolute path ending in .sqlite")
    elif st.ab_update is not None:
        holder = filesystem_for_path(hc, ds)
        if holder is not None and holder[1].device_id in pair_ids:
            err("trident.datastorePath" if hc.trident.datastore_path else "storage.filesystems",
                f"the servicing datastore {ds} would live on A/B volume {holder[1].device_id!r}; mount a "
                f"non-A/B filesystem at {posixpath.dirname(ds)} (or a parent) or set trident.datastorePath")

    if st.filesystems:
        _check_mounts(hc, pair_ids, partitions, known_ids, err)
    seen_disks: dict[str, int] = {}
    for d, disk in enumerate(st.disks):
        if disk.device in seen_disks:
            err(f"storage.disks[{d}].device", f"{disk.device!r} is already the device of "
                f"storage.disks[{seen_disks[disk.device]}]")
        seen_disks.setdefault(disk.device, d)
    _check_os(hc, err)
    return errs


def _check_mounts(hc: HostConfiguration, pair_ids: dict[str, tuple[str, str]],
                  partitions: dict[str, tuple[str, int | None, str]], known_ids: Collection[str],
                  err: Callable[[str, str], None]) -> None:
    """Trident's mount rules: an ESP, `/` on an A/B pair when A/B updates are configured, /var/tmp writable."""
    esp_guid = type_guid("esp")
    esps = [(f, fs) for f, fs in enumerate(hc.storage.filesystems)
            if fs.mount is not None and fs.mount.path in ESP_MOUNTS]
    if not esps:
        err("storage.filesystems", "no EFI system partition: mount a partition of type esp at /boot/efi "
            "(or /efi); the boot loader lives there")
    for f, fs in esps:
        dev = fs.device_id
        if dev in pair_ids:
            err(f"storage.filesystems[{f}].deviceId", f"the ESP cannot be on A/B volume pair {dev!r}: both slots "
                "boot through the same ESP")
        elif dev in partitions and partitions[dev][2] and partitions[dev][2] != esp_guid:
            err(f"storage.filesystems[{f}].deviceId", f"the ESP mounted at {fs.mount.path if fs.mount else ''} "
                f"must be a partition of type esp, not {dev!r} of another type")
    if hc.storage.ab_update is not None:
        for f, fs in enumerate(hc.storage.filesystems):
            if (fs.mount is not None and fs.mount.path == "/" and fs.device_id not in pair_ids
                    and fs.device_id not in known_ids):
                err(f"storage.filesystems[{f}].deviceId", "with abUpdate configured, '/' must be on an A/B volume "
                    "pair (the update writes the inactive volume)")
    tmpfs = [fs for fs in hc.storage.filesystems if fs.type == "tmpfs" and fs.mount and fs.mount.path == VAR_TMP]
    holder = None if tmpfs else filesystem_for_path(hc, VAR_TMP)
    if holder is not None and holder[1].mount is not None and "ro" in holder[1].mount.options.split(","):
        err(f"storage.filesystems[{holder[0]}].mountPoint.options", f"{VAR_TMP} must be writable, but the "
            f"filesystem holding it ({holder[1].mount.path}) is mounted read-only")


NETPLAN_DEVICE_KINDS = ("ethernets", "bonds", "bridges", "vlans", "wifis", "tunnels", "dummy-devices", "vrfs")


def _check_netplan(doc: dict[str, object], err: Callable[[str, str], None]) -> None:
    """Trident's netplan rules: no ``renderer: NetworkManager`` (tether chooses the renderer from what the new OS
    has, so the key would be ignored), and device ids netplan can use (no white space or glob characters: those
    only belong in ``match``)."""
    if doc.get("renderer") == "NetworkManager":
        err("os.netplan.renderer", "NetworkManager is not supported as a renderer key (as in Trident); leave "
            "renderer out: tether writes NetworkManager profiles by itself when the new OS has NetworkManager")
    for kind in NETPLAN_DEVICE_KINDS:
        devices = doc.get(kind)
        if not isinstance(devices, dict):
            continue
        for dev_id in devices:
            if not dev_id or any(c.isspace() or c in "*?[]" for c in str(dev_id)):
                err(f"os.netplan.{kind}.{dev_id}", f"{dev_id!r} is not a valid device id (no white space or "
                    "*?[]; use match: to select devices by pattern)")


def _check_os(hc: HostConfiguration, err: Callable[[str, str], None]) -> None:
    osc = hc.os
    if osc.netplan is not None:
        from tether.network.parse import unwrap

        inner = unwrap(osc.netplan)
        if not isinstance(inner, dict) or inner.get("version") != 2:
            err("os.netplan.version", "must be 2 (a netplan / network config version 2 document)")
        else:
            _check_netplan(inner, err)
    modules: dict[str, int] = {}
    for m, mod in enumerate(osc.modules):
        if mod.name in modules:
            err(f"os.modules[{m}].name", f"module {mod.name!r} is already configured at "
                f"os.modules[{modules[mod.name]}]")
        modules.setdefault(mod.name, m)
    for a, af in enumerate(osc.additional_files):
        if af.source is not None and not af.source.startswith("/"):
            err(f"os.additionalFiles[{a}].source", f"{af.source!r} is not an absolute path")
    for stage, scripts in (("preServicing", hc.scripts.pre_servicing), ("postProvision", hc.scripts.post_provision),
                           ("postConfigure", hc.scripts.post_configure)):
        for i, sc in enumerate(scripts):
            if sc.path is not None and not sc.path.startswith("/"):
                err(f"scripts.{stage}[{i}].path", f"{sc.path!r} is not an absolute path")
    if osc.hostname is not None and not _HOSTNAME.match(osc.hostname):
        err("os.hostname", f"{osc.hostname!r} is not a valid host name")
    seen_dest: set[str] = set()
    for a, af in enumerate(osc.additional_files):
        if af.destination in seen_dest:
            err(f"os.additionalFiles[{a}].destination", f"{af.destination!r} is given twice")
        seen_dest.add(af.destination)
    names: set[str] = set()
    for u, user in enumerate(osc.users):
        if user.name in names:
            err(f"os.users[{u}].name", f"user {user.name!r} is given twice")
        names.add(user.name)
