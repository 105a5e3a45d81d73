"""Grow a partition into the free space after it, then an LVM stack on top of it.

The decision "is there anything to grow" is made from sysfs and the on-disk PV label alone, so a boot where
the disk did not change runs no process and writes nothing. Growing itself uses, by mode:

- ``growpart``: cloud-utils' ``growpart DISK N`` (it tells the kernel itself);
- ``sgdisk``: GPT only; the entry is re-created at the same start with the same type, GUID, name and
  attributes, and the backup header moved to the new end, in one ``sgdisk`` write;
- ``tether``: ``sfdisk --no-reread -N N`` with ``, +`` (grow to the end of the free space following the
  partition: the disk's end, or the next partition), then ``partx -u`` (BLKPG) so the kernel sees the new
  size of a partition that is in use.
``auto`` is ``growpart`` when installed, else ``tether``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from tether import log
from tether.blockdev import SECTOR, BlockDev, pv_recorded_size
from tether.errors import CommandError
from tether.runner import Runner

LOG = log.get(__name__)

# Grow only when at least this much (in 512-byte sectors) would be gained: 1 MiB, as alignment can eat
# less than that and growing by a few sectors is a table write for nothing.
MIN_GAIN = 2048
# The GPT backup header and entries take up to 33 sectors of 4 KiB at the end of a disk.
GPT_TAIL = 33 * 4096 // SECTOR
MBR_MAX_END = 2**32  # an MBR entry cannot address past 2 TiB (in 512-byte sectors)
PV_MIN_GAIN = 4 << 20
MODES = ("auto", "growpart", "sgdisk", "tether")


class GrowError(Exception):
    """The partition could not be grown; the message says why."""


@dataclass(frozen=True)
class Gap:
    limit: int   # first sector (512 units) the partition may not reach
    gain: int    # sectors it would gain


def table_type(disk: BlockDev) -> str:
    """gpt, dos or '' from the disk's first sectors (read-only, no process)."""
    try:
        lbs = int((disk.sysdir / "queue" / "logical_block_size").read_text().strip())
    except (OSError, ValueError):
        lbs = SECTOR
    try:
        with open(disk.path, "rb") as f:
            head = f.read(2 * lbs)
    except OSError:
        return ""
    if head[lbs:lbs + 8] == b"EFI PART":
        return "gpt"
    if head[510:512] == b"\x55\xaa":
        return "dos"
    return ""


def gap_after(part: BlockDev, disk: BlockDev, ptype: str) -> Gap:
    """Free sectors between the end of ``part`` and the next partition (or the usable end of the disk)."""
    start, end = part.start_sectors, part.start_sectors + part.size_sectors
    limit = disk.size_sectors - (GPT_TAIL if ptype == "gpt" else 0)
    if ptype == "dos":
        limit = min(limit, MBR_MAX_END)
    for other in disk.partitions():
        s = other.start_sectors
        if other.name != part.name and s >= start and s < limit:
            limit = s
    return Gap(limit, max(0, limit - end))


def pick_mode(mode: str) -> str:
    if mode == "auto":
        return "growpart" if shutil.which("growpart") else "tether"
    if mode not in MODES:
        raise GrowError(f"unknown growpart mode {mode!r} (expected one of {', '.join(MODES)})")
    need = {"growpart": "growpart", "sgdisk": "sgdisk", "tether": "sfdisk"}[mode]
    if shutil.which(need) is None:
        raise GrowError(f"mode {mode!r} needs {need}, which is not installed")
    return mode


def grow_partition(run: Runner, part: BlockDev, mode: str = "auto") -> bool:
    """Grow ``part`` into the free space after it. False (and nothing written) when there is none."""
    disk = part.parent
    if disk is None:
        raise GrowError(f"{part.path} is not a partition")
    ptype = table_type(disk)
    if ptype not in ("gpt", "dos"):
        raise GrowError(f"{disk.path}: no MBR or GPT partition table found")
    num = part.partition_number
    if ptype == "dos" and num > 4:
        raise GrowError(f"{part.path} is a logical partition inside an extended one; not grown")
    gap = gap_after(part, disk, ptype)
    if gap.gain < MIN_GAIN:
        LOG.debug("%s: nothing to grow (%d free sectors after it)", part.path, gap.gain)
        return False
    tool = pick_mode(mode)
    before = part.size_sectors
    LOG.info("growing %s (%s partition %d) by %d MiB with %s", part.path, ptype, num,
             gap.gain * SECTOR >> 20, tool)
    if tool == "growpart":
        res = run.run(["growpart", disk.path, str(num)], check=False, timeout=120)
        if res.code == 1 and "NOCHANGE" in res.stdout:
            LOG.info("growpart: %s", res.stdout.strip())
            return False
        if res.code != 0:
            raise CommandError(res.argv, res.code, res.stdout, res.stderr)
    elif tool == "sgdisk":
        if ptype != "gpt":
            raise GrowError(f"mode 'sgdisk' handles GPT only; {disk.path} has an MBR table")
        _grow_sgdisk(run, disk, num)
        _tell_kernel(run, disk, num)
    else:
        run.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-N", str(num), disk.path],
                data=", +\n", timeout=120)
        _tell_kernel(run, disk, num)
    after = part.size_sectors
    if after <= before:
        raise GrowError(f"{part.path}: the table was written but the kernel still reports {before} sectors")
    LOG.info("grew %s from %d to %d MiB", part.path, before * SECTOR >> 20, after * SECTOR >> 20)
    return True


def _tell_kernel(run: Runner, disk: BlockDev, num: int) -> None:
    """BLKPG resize of one partition: works while it is mounted, unlike a full re-read."""
    run.run(["partx", "--update", "--nr", str(num), disk.path], timeout=60)


_SG_FIELDS = {
    "type": re.compile(r"Partition GUID code:\s*([0-9A-Fa-f-]{36})"),
    "guid": re.compile(r"Partition unique GUID:\s*([0-9A-Fa-f-]{36})"),
    "first": re.compile(r"First sector:\s*(\d+)"),
    "attrs": re.compile(r"Attribute flags:\s*([0-9A-Fa-f]+)"),
    "name": re.compile(r"Partition name:\s*'(.*)'"),
}


def _grow_sgdisk(run: Runner, disk: BlockDev, num: int) -> None:
    info = run.run(["sgdisk", "-i", str(num), disk.path], env={"LANG": "C"}, timeout=60).stdout
    got = {k: (m.group(1) if (m := rx.search(info)) else None) for k, rx in _SG_FIELDS.items()}
    if not (got["type"] and got["guid"] and got["first"]):
        raise GrowError(f"{disk.path}: could not read partition {num} from sgdisk -i")
    argv = ["sgdisk", "--move-second-header", "--delete", str(num),
            "--new", f"{num}:{got['first']}:0", "--typecode", f"{num}:{got['type']}",
            "--partition-guid", f"{num}:{got['guid']}"]
    if got["name"]:
        argv += ["--change-name", f"{num}:{got['name']}"]
    attrs = int(got["attrs"] or "0", 16)
    argv += [a for bit in range(64) if attrs >> bit & 1 for a in ("--attributes", f"{num}:set:{bit}")]
    res = run.run([*argv, disk.path], check=False, timeout=120)
    # sgdisk exits 4 when only the kernel re-read failed (the partition is busy); the table is written.
    if res.code not in (0, 4):
        raise CommandError(res.argv, res.code, res.stdout, res.stderr)


@dataclass
class LvmResult:
    grown_partitions: list[str]
    resized_pvs: list[str]
    extended_by: int  # extents added to the LV


def _lvm(devices: list[str] | None) -> list[str]:
    return ["--devices", ",".join(devices)] if devices else []


def grow_lvm(run: Runner, lv: BlockDev, mode: str = "auto", devices: list[str] | None = None) -> LvmResult:
    """Grow the stack under a logical volume (a device-mapper node whose uuid starts with ``LVM-``)."""
    pvs = lv.slaves()
    if not pvs:
        raise GrowError(f"{lv.path} ({lv.dm_name}) has no underlying devices")
    return grow_lvm_on(run, pvs, f"/dev/mapper/{lv.dm_name}", mode, devices)


def grow_lvm_on(run: Runner, pvs: list[BlockDev], lvpath: str, mode: str = "auto",
                devices: list[str] | None = None, lvm_args: tuple[str, ...] = ()) -> LvmResult:
    """Grow each partition holding a physical volume, the PV (``pvresize``), then the LV by exactly the
    extents the PVs gained: space the image left free in the volume group stays free.
    ``devices`` restricts LVM to those devices (tests on loop devices), else the system's LVM config;
    ``lvm_args`` are added to every LVM command."""
    res = LvmResult([], [], 0)
    to_resize = []
    for pv in pvs:
        if pv.is_partition and grow_partition(run, pv, mode):
            res.grown_partitions.append(pv.path)
        recorded = pv_recorded_size(pv.path)
        if recorded is None:
            LOG.info("%s: no LVM label readable; leaving it", pv.path)
            continue
        # LVM records the size rounded down to its 1 MiB alignment; below one default extent
        # (4 MiB) of growth pvresize could add nothing.
        if pv.size_bytes - recorded >= PV_MIN_GAIN:
            to_resize.append(pv)
    if not to_resize:
        return res
    extra = [*_lvm(devices), *lvm_args]
    vg = run.run(["lvs", *extra, "--noheadings", "-o", "vg_name", lvpath], timeout=60).stdout.strip()
    if not vg:
        raise GrowError(f"lvs did not name the volume group of {lvpath}")
    free_before = _vg_free(run, vg, extra)
    for pv in to_resize:
        run.run(["pvresize", *extra, pv.path], timeout=120)
        res.resized_pvs.append(pv.path)
    gained = _vg_free(run, vg, extra) - free_before
    if gained > 0:
        run.run(["lvextend", *extra, "-l", f"+{gained}", lvpath], timeout=120)
        res.extended_by = gained
        LOG.info("extended %s by %d extents", lvpath, gained)
    return res


def _vg_free(run: Runner, vg: str, extra: list[str]) -> int:
    out = run.run(["vgs", *extra, "--noheadings", "-o", "vg_free_count", vg], timeout=60).stdout.strip()
    try:
        return int(out)
    except ValueError:
        raise GrowError(f"vgs printed {out!r} for the free extents of {vg}") from None
