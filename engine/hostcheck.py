"""Cross-reference checks of a host configuration that the schema alone cannot express."""

from __future__ import annotations

import posixpath
import re

from tether.engine.hostconfig import FileSystem, HostConfiguration
from tether.engine.parttypes import type_guid
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


def check_logic(hc: HostConfiguration) -> list[ConfigError]:
    errs: list[ConfigError] = []

    def err(path: str, msg: str) -> None:
        errs.append(ConfigError(path, msg))

    st = hc.storage
    ids: dict[str, str] = {}
    partitions: dict[str, tuple[str, int | None, str]] = {}  # id -> (path, size or None for grow, type guid)

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

    pair_ids: dict[str, tuple[str, str]] = {}
    in_pair: dict[str, str] = {}
    if st.ab_update is not None:
        for v, pair in enumerate(st.ab_update.volume_pairs):
            vp = f"storage.abUpdate.volumePairs[{v}]"
            claim(pair.id, f"{vp}.id")
            ok = True
            for key, ref in (("volumeAId", pair.volume_a_id), ("volumeBId", pair.volume_b_id)):
                if ref not in partitions:
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
            if dev not in partitions and dev not in pair_ids:
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

    osc = hc.os
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
    return errs
