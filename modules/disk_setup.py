"""disk_setup and fs_setup: partition blank disks and make filesystems on them (cloud-init's cc_disk_setup).

Safety comes first, stricter than cloud-init:
- a disk or partition holding a filesystem, a partition table, an LVM or RAID signature is never written
  unless ``overwrite: true`` (or, for fs_setup, ``replace_fs`` names the filesystem found); the decision and
  the signature are logged;
- the disk holding the running ``/`` is never touched, nor a disk with a mounted or held partition;
- each entry fails alone (``ctx.warn``) and the rest goes on;
- ``cmd`` is a template, but it becomes an argv (split first, then each word filled in), never a shell line;
- off-line (target root not ``/``) only loop devices are touched; any other device is only logged.

Both tables are written with one ``sfdisk`` call each (``label: gpt`` or ``dos``); sizes are percentages of
the disk, 1 MiB aligned, the last partition taking the rest (as cloud-init does).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Any, Literal

from tether import blockdev, log
from tether.blockdev import BlockDev
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, Stage

NAME = "disk_setup"
STAGE = Stage.INIT
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("disk_setup", "fs_setup", "device_aliases")
RUN_WITHOUT_KEYS = False
LOG = log.get(__name__)
MIB = 1 << 20

LayoutItem = int | float | list[int | float | str]


@dataclass(frozen=True)
class DiskSpec:
    table_type: Literal["mbr", "gpt"] = field(default="mbr", metadata=meta(doc="Partition table type."))
    layout: bool | Literal["remove"] | list[LayoutItem] = field(default=False, metadata=meta(
        doc="true: one partition on the whole disk; a list of percentages or [percent, type]; "
            "remove: wipe the table (needs overwrite)."))
    overwrite: bool = field(default=False, metadata=meta(doc="Write even over existing data. Dangerous."))


@dataclass(frozen=True)
class FsSpec:
    label: str | None = None
    filesystem: str | None = None
    device: str | None = field(default=None, metadata=meta(doc="Path, alias, or alias.N (partition N)."))
    partition: int | str | None = field(default=None, metadata=meta(doc="auto, any, none or a number."))
    overwrite: bool = False
    replace_fs: str | None = field(default=None, metadata=meta(
        doc="With partition auto/any: a filesystem of this type may be replaced."))
    extra_opts: list[str] | str | None = None
    cmd: list[str] | str | None = field(default=None, metadata=meta(
        doc="mkfs command template with %(label)s %(filesystem)s %(device)s; run as argv, not by a shell."))


@dataclass(frozen=True)
class Config:
    device_aliases: dict[str, str] = field(default_factory=dict)
    disk_setup: dict[str, DiskSpec] = field(default_factory=dict)
    fs_setup: list[FsSpec] = field(default_factory=list)


class EntryError(Exception):
    """One disk_setup/fs_setup entry cannot be done; the others go on."""


# ---------------------------------------------------------------- device names

def _block_device_mapping(ctx: ModuleContext) -> dict[str, Any]:
    for src in (ctx.instance.metadata, ctx.instance.ds, ctx.instance.ds.get("meta_data") or {}):
        for key in ("block-device-mapping", "block_device_mapping"):
            bdm = src.get(key) if isinstance(src, dict) else None
            if isinstance(bdm, dict):
                return bdm
    return {}


def resolve_name(ctx: ModuleContext, name: str, aliases: dict[str, str] | None = None) -> str | None:
    """A /dev path for a disk name: an absolute path, a ``device_aliases`` name, or a datasource name such
    as ``ephemeral0``/``swap`` from its block-device-mapping (sdX tried also as xvdX and vdX)."""
    aliases = aliases if aliases is not None else dict(ctx.cloud_config.get("device_aliases") or {})
    name = aliases.get(name, name)
    if name.startswith("/"):
        return name
    mapped = _block_device_mapping(ctx).get(name)
    if not isinstance(mapped, str) or not mapped:
        return None
    base = mapped.removeprefix("/dev/")
    cands = [base]
    if base.startswith("sd"):
        cands += ["xvd" + base[2:], "vd" + base[2:]]
    for c in cands:
        if os.path.exists("/dev/" + c):
            return "/dev/" + c
    return "/dev/" + base


def split_dotted(name: str) -> tuple[str, int | None]:
    """``my_alias.2`` -> (``my_alias``, 2); anything else is returned whole."""
    head, dot, tail = name.rpartition(".")
    if dot and head and tail.isdigit():
        return head, int(tail)
    return name, None


def device_for(ctx: ModuleContext, name: str) -> str | None:
    """The /dev path for a name as ``mounts`` and ``fs_setup`` accept it (``alias``, ``alias.N``, a path)."""
    base, part = split_dotted(name)
    path = resolve_name(ctx, base)
    if path is None:
        return None
    if not part:
        return path
    dev = blockdev.by_path(path)
    p = dev.partition(part) if dev else None
    return p.path if p else None


SETTLE_SECONDS = 10


def _open_disk(ctx: ModuleContext, what: str, path: str, allow_partition: bool = False) -> BlockDev | None:
    """The device for ``path``, or None when tether must only log (off-line and not a loop device)."""
    real = os.path.realpath(path)
    dev = blockdev.by_path(real)
    if dev is None and ctx.live:
        # a disk named by a udev link (/dev/disk/by-id/...) may not have its link yet early in a boot: let udev
        # finish its queue once (bounded), as cloud-init does, before calling it missing
        LOG.info("%s: %s is not there yet; waiting for udev (at most %d s)", what, path, SETTLE_SECONDS)
        ctx.run(["udevadm", "settle", f"--timeout={SETTLE_SECONDS}"], check=False, timeout=SETTLE_SECONDS + 10)
        real = os.path.realpath(path)
        dev = blockdev.by_path(real)
    if dev is None:
        raise EntryError(f"{what}: device {path} does not exist or is not a block device")
    if dev.is_partition and not allow_partition:
        raise EntryError(f"{what}: {path} is a partition, not a disk")
    if not ctx.live and not dev.loop_backed():
        LOG.info("%s: off-line target, %s is not a loop device: would set it up, doing nothing", what, path)
        return None
    root = blockdev.root_disks() & dev.disks()
    if root:
        raise EntryError(f"{what}: {path} is on {', '.join(sorted(root))}, the disk of the running root; "
                         "refusing to touch it")
    return dev


def _all_signatures(ctx: ModuleContext, disk: BlockDev) -> list[str]:
    found = [f"{disk.path}: {s}" for s in blockdev.signatures(ctx.runner, disk.path)]
    for p in disk.partitions() if not disk.is_partition else []:
        found += [f"{p.path}: {s}" for s in blockdev.signatures(ctx.runner, p.path)]
        if not any(x.startswith(p.path + ":") for x in found):
            found.append(f"{p.path}: partition {p.partition_number}")
    return found


# ---------------------------------------------------------------- partition tables

GPT_TYPES = {
    "8300": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "8200": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "8e00": "E6D6D379-F507-44C2-A23C-238F2A3DF928", "fd00": "A19D880F-05FC-4D3B-A006-743F0F84911E",
    "ef00": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "ef02": "21686148-6449-6E6F-744E-656564454649",
    "0700": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "8302": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
    "8304": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "8306": "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
    "8309": "CA7D7CCB-63ED-4C53-861C-1742536059CC",
}
MBR_TO_GPT = {"83": "8300", "82": "8200", "8e": "8e00", "fd": "fd00", "ef": "ef00", "7": "0700", "b": "0700",
              "c": "0700"}
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


def type_code(table: str, code: int | float | str | None) -> str:
    """sfdisk's type for a cloud-init type code: MBR hex byte, or a GPT GUID (sgdisk 4-digit codes and the
    usual 2-digit MBR codes are translated)."""
    if code is None:
        return "83" if table == "mbr" else GPT_TYPES["8300"]
    s = str(code).strip().lower().removeprefix("0x")
    if table == "mbr":
        if re.fullmatch(r"[0-9a-f]{4}", s) and s.endswith("00"):
            s = s[:2]
        if re.fullmatch(r"[0-9a-f]{1,2}", s) and int(s, 16) != 0:
            return format(int(s, 16), "x")
        raise EntryError(f"partition type {code!r} is not an MBR type byte (e.g. 83, 82, 8e)")
    if _GUID.match(s):
        return s.upper()
    if re.fullmatch(r"[0-9a-f]{1,2}", s):
        s = MBR_TO_GPT.get(s.lstrip("0") or "0", "")
    if s in GPT_TYPES:
        return GPT_TYPES[s]
    raise EntryError(f"GPT partition type {code!r} is unknown; give a type GUID or one of "
                     f"{', '.join(sorted(GPT_TYPES))}")


@dataclass(frozen=True)
class Part:
    size_mib: int | None  # None: the rest of the disk
    type: str


def plan_layout(spec: DiskSpec, disk_bytes: int, where: str) -> list[Part]:
    layout = spec.layout
    if layout is True:
        return [Part(None, type_code(spec.table_type, None))]
    assert isinstance(layout, tuple | list)
    if not layout:
        raise EntryError(f"{where}.layout: an empty list")
    if spec.table_type == "mbr" and len(layout) > 4:
        raise EntryError(f"{where}.layout: {len(layout)} partitions; an MBR table holds 4 primary ones")
    usable = disk_bytes // MIB - 2  # 1 MiB of alignment at the start, room for a GPT backup at the end
    parts, total = [], 0.0
    for i, item in enumerate(layout):
        code: Any = None
        if isinstance(item, tuple | list):
            if len(item) != 2:
                raise EntryError(f"{where}.layout[{i}]: expected [percent, type], got {list(item)}")
            pct, code = item
        else:
            pct = item
        if isinstance(pct, bool) or not isinstance(pct, int | float) or pct <= 0:
            raise EntryError(f"{where}.layout[{i}]: size {pct!r} is not a positive percentage")
        total += pct
        if total > 100:
            raise EntryError(f"{where}.layout: sizes add up to {total:g}% of the disk; that does not fit")
        size = int(usable * pct / 100)
        if size < 1:
            raise EntryError(f"{where}.layout[{i}]: {pct}% of a {disk_bytes // MIB} MiB disk is under 1 MiB; "
                             "that does not fit")
        parts.append(Part(size, type_code(spec.table_type, code)))
    last = parts[-1]
    parts[-1] = Part(None, last.type)  # as cloud-init: the last partition takes the rest
    return parts


def read_table(ctx: ModuleContext, disk: BlockDev) -> dict[str, Any] | None:
    res = ctx.run(["sfdisk", "--json", disk.path], check=False, timeout=30)
    if res.code != 0 or not res.stdout.strip():
        return None
    try:
        return dict(json.loads(res.stdout).get("partitiontable") or {})
    except ValueError:
        return None


def table_matches(table: dict[str, Any] | None, spec: DiskSpec, plan: list[Part]) -> bool:
    if not table or table.get("label") != ("gpt" if spec.table_type == "gpt" else "dos"):
        return False
    found = table.get("partitions") or []
    if spec.layout is True:
        return len(found) >= 1
    if len(found) != len(plan):
        return False
    return all(str(f.get("type", "")).lower().lstrip("0") == p.type.lower().lstrip("0")
               for f, p in zip(found, plan, strict=True))


def sfdisk_script(table: str, plan: list[Part]) -> str:
    lines = [f"label: {'gpt' if table == 'gpt' else 'dos'}"]
    for p in plan:
        size = f"size={p.size_mib}MiB, " if p.size_mib is not None else ""
        lines.append(f"{size}type={p.type}")
    return "\n".join(lines) + "\n"


def setup_disk(ctx: ModuleContext, name: str, path: str, spec: DiskSpec) -> None:
    where = f"disk_setup.{name}"
    if spec.layout is False:
        LOG.info("%s: layout false, not partitioning", where)
        return
    disk = _open_disk(ctx, where, path)
    if disk is None:
        return
    busy = blockdev.in_use(disk)
    if spec.layout == "remove":
        sigs = _all_signatures(ctx, disk)
        if not sigs:
            LOG.info("%s: %s holds nothing to remove", where, disk.path)
        elif not spec.overwrite:
            LOG.info("%s: not removing the table of %s: overwrite is false and it holds %s", where, disk.path,
                     "; ".join(sigs))
        elif busy:
            raise EntryError(f"{where}: {disk.path} is in use ({'; '.join(busy)})")
        else:
            LOG.warning("%s: overwrite: true, wiping %s (%s)", where, disk.path, "; ".join(sigs))
            _wipe(ctx, disk)
        return
    plan = plan_layout(spec, disk.size_bytes, where)
    if table_matches(read_table(ctx, disk), spec, plan):
        LOG.info("%s: %s already has the requested %s layout; nothing to do", where, disk.path, spec.table_type)
        return
    sigs = _all_signatures(ctx, disk)
    if sigs and not spec.overwrite:
        LOG.info("%s: not partitioning %s: overwrite is false and it holds %s", where, disk.path,
                 "; ".join(sigs))
        return
    if busy:
        raise EntryError(f"{where}: {disk.path} is in use ({'; '.join(busy)}); not partitioning")
    if sigs:
        LOG.warning("%s: overwrite: true, replacing on %s: %s", where, disk.path, "; ".join(sigs))
        _wipe(ctx, disk)
    script = sfdisk_script(spec.table_type, plan)
    LOG.info("%s: writing a %s table on %s: %s", where, spec.table_type, disk.path, script.replace("\n", "; "))
    ctx.run(["sfdisk", "--wipe", "always", "--wipe-partitions", "always", disk.path], data=script, timeout=120)
    _settle(ctx, disk, len(plan))


def _wipe(ctx: ModuleContext, disk: BlockDev) -> None:
    for p in disk.partitions():
        ctx.run(["wipefs", "--all", p.path], timeout=60)
    ctx.run(["wipefs", "--all", disk.path], timeout=60)
    ctx.run(["partx", "--delete", disk.path], check=False, timeout=60)


def _settle(ctx: ModuleContext, disk: BlockDev, count: int) -> None:
    """Make sure the kernel knows the new partitions and their nodes exist (bounded wait)."""
    if len(disk.partitions()) < count:
        ctx.run(["partx", "--add", disk.path], check=False, timeout=60)
    for p in disk.partitions():
        if not blockdev.wait_for(p.path, timeout=5):
            raise EntryError(f"disk_setup: {p.path} did not appear after partitioning {disk.path}")


# ---------------------------------------------------------------- filesystems

FORCE = {"ext2": "-F", "ext3": "-F", "ext4": "-F", "xfs": "-f", "btrfs": "-f", "swap": "-f", "f2fs": "-f",
         "ntfs": "-F"}
LABEL_FLAG = {"vfat": "-n", "fat": "-n", "msdos": "-n"}


def mkfs_tool(fs: str) -> str | None:
    return shutil.which("mkswap" if fs == "swap" else f"mkfs.{fs}")


def _fill(template: str, values: dict[str, str | None], where: str) -> str:
    for key in re.findall(r"%\((\w+)\)s", template):
        if key not in values:
            raise EntryError(f"{where}.cmd: unknown placeholder %({key})s (label, filesystem, device)")
        if values[key] is None:
            raise EntryError(f"{where}.cmd: uses %({key})s but {key} is not set")
    try:
        return template % {k: v or "" for k, v in values.items()}
    except (ValueError, TypeError, KeyError) as e:
        raise EntryError(f"{where}.cmd: bad template {template!r}: {e}") from None


def mkfs_argv(spec: FsSpec, device: str, force: bool, where: str) -> list[str]:
    if spec.cmd:
        words = shlex.split(spec.cmd) if isinstance(spec.cmd, str) else list(spec.cmd)
        if not words:
            raise EntryError(f"{where}.cmd: empty")
        values = {"label": spec.label, "filesystem": spec.filesystem, "device": device}
        return [_fill(w, values, where) for w in words]
    fs = spec.filesystem or ""
    tool = mkfs_tool(fs)
    if tool is None:
        raise EntryError(f"{where}: unknown filesystem {fs!r} (no mkfs.{fs} installed)")
    argv = [tool]
    if spec.label:
        argv += [LABEL_FLAG.get(fs, "-L"), spec.label]
    if force and fs in FORCE:
        argv.append(FORCE[fs])
    if spec.extra_opts:
        argv += shlex.split(spec.extra_opts) if isinstance(spec.extra_opts, str) else list(spec.extra_opts)
    return [*argv, device]


def _pick_auto(ctx: ModuleContext, spec: FsSpec, dev: BlockDev, mode: str,
               where: str) -> tuple[BlockDev | None, str]:
    """cloud-init's auto/any search: reuse a matching filesystem, else a replace_fs one, else the first
    partition (or the bare disk when it has none) holding nothing at all."""
    cands = dev.partitions() if not dev.is_partition else []
    cands = cands or [dev]
    free, replace = None, None
    for c in cands:
        info = blockdev.probe(ctx.runner, c.path)
        if info.fstype and info.fstype == spec.filesystem and (
                mode == "any" or (info.label or "") == (spec.label or "")):
            return c, "match"
        if spec.replace_fs and info.fstype == spec.replace_fs and replace is None:
            replace = c
        if free is None and not info.fstype and not info.pttype and not blockdev.signatures(ctx.runner, c.path):
            free = c
    if replace is not None:
        return replace, "replace"
    if free is not None:
        return free, "free"
    return None, "none"


def setup_fs(ctx: ModuleContext, i: int, spec: FsSpec, aliases: dict[str, str]) -> None:
    where = f"fs_setup[{i}]"
    if not spec.device:
        raise EntryError(f"{where}: no device given")
    if not (spec.filesystem or spec.cmd):
        raise EntryError(f"{where}: neither filesystem nor cmd given")
    base, dotted = split_dotted(spec.device)
    path = resolve_name(ctx, base, aliases)
    if path is None:
        raise EntryError(f"{where}: device {spec.device!r} is neither a path, an alias nor a name the datasource "
                         "maps")
    part: int | str = "any" if spec.partition is None else spec.partition
    if dotted is not None:
        part = dotted
    if isinstance(part, str) and part.isdigit():
        part = int(part)
    if isinstance(part, str):
        part = part.lower()
        if part not in ("auto", "any", "none"):
            raise EntryError(f"{where}.partition: {spec.partition!r} is not auto, any, none or a number")
    if not spec.cmd and mkfs_tool(spec.filesystem or "") is None:
        raise EntryError(f"{where}: unknown filesystem {spec.filesystem!r} (no mkfs.{spec.filesystem} installed)")
    dev = _open_disk(ctx, where, path, allow_partition=True)
    if dev is None:
        return
    replacing = False
    if isinstance(part, int):
        target = dev if part == 0 else dev.partition(part)
        if target is None:
            raise EntryError(f"{where}: {dev.path} has no partition {part}")
    elif part == "none":
        target = dev
    else:
        found, why = _pick_auto(ctx, spec, dev, part, where)
        if found is None:
            raise EntryError(f"{where}: no free partition on {dev.path} for {spec.filesystem}")
        if why == "match":
            LOG.info("%s: %s already holds %s (label %r); nothing to do", where, found.path, spec.filesystem,
                     spec.label)
            return
        target, replacing = found, why == "replace"
    info = blockdev.probe(ctx.runner, target.path)
    if info.fstype and info.fstype == spec.filesystem and (info.label or "") == (spec.label or "") \
            and not spec.overwrite:
        LOG.info("%s: %s already holds %s (label %r); nothing to do", where, target.path, info.fstype, info.label)
        return
    sigs = [str(s) for s in blockdev.signatures(ctx.runner, target.path)]
    if target is dev and not dev.is_partition and dev.partitions():
        sigs.append(f"{len(dev.partitions())} partitions")
    if sigs and not (spec.overwrite or replacing):
        LOG.info("%s: not creating %s on %s: overwrite is false and it holds %s", where, spec.filesystem,
                 target.path, "; ".join(sigs))
        return
    busy = blockdev.in_use(target)
    if busy:
        raise EntryError(f"{where}: {target.path} is in use ({'; '.join(busy)})")
    if sigs:
        LOG.warning("%s: %s on %s, replacing: %s", where,
                    "replace_fs" if replacing else "overwrite: true", target.path, "; ".join(sigs))
    force = bool(sigs) or not target.is_partition
    argv = mkfs_argv(spec, target.path, force, where)
    LOG.info("%s: creating %s on %s", where, spec.filesystem or "a filesystem", target.path)
    ctx.run(argv, timeout=900)


def handle(ctx: ModuleContext, cfg: Config) -> None:
    aliases = dict(cfg.device_aliases)
    for name, spec in cfg.disk_setup.items():
        try:
            path = resolve_name(ctx, name, aliases)
            if path is None:
                raise EntryError(f"disk_setup.{name}: not a path, an alias nor a name the datasource maps")
            setup_disk(ctx, name, path, spec)
        except (EntryError, CommandError, OSError) as e:
            ctx.warn(str(e) if isinstance(e, EntryError) else f"disk_setup.{name}: {e}")
    for i, fs in enumerate(cfg.fs_setup):
        try:
            setup_fs(ctx, i, fs, aliases)
        except (EntryError, CommandError, OSError) as e:
            ctx.warn(str(e) if isinstance(e, EntryError) else f"fs_setup[{i}]: {e}")
