"""Block devices as the kernel sees them: mounts, partitions, parent disks, LVM stacks, on-disk signatures.

Reads ``/proc/self/mountinfo`` and ``/sys/class/block`` directly (no processes) so that a boot where nothing
changed costs a few file reads. Signature probing (``wipefs -n``, ``blkid -p``) goes through the runner.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from tether import log
from tether.errors import CommandError
from tether.runner import Runner

LOG = log.get(__name__)

# Module-level so tests can point them at a fake tree.
SYS_BLOCK = Path("/sys/class/block")
SYS_DEV_BLOCK = Path("/sys/dev/block")
MOUNTINFO = Path("/proc/self/mountinfo")
LOOP_MAJOR = 7
SECTOR = 512  # sysfs ``size`` and ``start`` are always in 512-byte units


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    mount_point: str
    major: int
    minor: int
    fstype: str
    source: str


def mounts() -> list[Mount]:
    out = []
    for line in MOUNTINFO.read_text().splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 5 or len(r) < 2:
            continue
        major, minor = (int(x) for x in f[2].split(":"))
        out.append(Mount(_unescape(f[4]), major, minor, r[0], _unescape(r[1])))
    return out


def mount_at(path: str | os.PathLike[str]) -> Mount | None:
    """The mount whose mount point is exactly ``path`` (the topmost one when stacked)."""
    want = os.path.normpath(str(path))
    found = None
    for m in mounts():
        if m.mount_point == want:
            found = m
    return found


def mount_containing(path: str | os.PathLike[str]) -> Mount | None:
    """The mount holding ``path``: the longest mount point that is a prefix of it."""
    want = os.path.realpath(str(path))
    best: Mount | None = None
    for m in mounts():
        mp = m.mount_point
        if want == mp or want.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    return best


@dataclass(frozen=True)
class BlockDev:
    """One kernel block device (disk, partition, loop, device-mapper node), by its sysfs directory."""

    name: str
    sysdir: Path

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    def _read(self, rel: str, default: str = "") -> str:
        try:
            return (self.sysdir / rel).read_text().strip()
        except OSError:
            return default

    @property
    def devnum(self) -> tuple[int, int]:
        a, b = self._read("dev", "0:0").split(":")
        return int(a), int(b)

    @property
    def size_sectors(self) -> int:
        return int(self._read("size", "0") or 0)

    @property
    def size_bytes(self) -> int:
        return self.size_sectors * SECTOR

    @property
    def is_partition(self) -> bool:
        return (self.sysdir / "partition").exists()

    @property
    def partition_number(self) -> int:
        return int(self._read("partition", "0") or 0)

    @property
    def start_sectors(self) -> int:
        return int(self._read("start", "0") or 0)

    @property
    def parent(self) -> BlockDev | None:
        """The disk a partition belongs to (its sysfs parent directory)."""
        if not self.is_partition:
            return None
        up = self.sysdir.resolve().parent
        return BlockDev(up.name, up)

    @property
    def dm_uuid(self) -> str:
        return self._read("dm/uuid")

    @property
    def dm_name(self) -> str:
        return self._read("dm/name")

    @property
    def is_lvm_lv(self) -> bool:
        return self.dm_uuid.startswith("LVM-")

    def slaves(self) -> list[BlockDev]:
        d = self.sysdir / "slaves"
        return [by_name(p.name) for p in sorted(d.iterdir())] if d.is_dir() else []

    def holders(self) -> list[str]:
        d = self.sysdir / "holders"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def partitions(self) -> list[BlockDev]:
        """A disk's partitions, by partition number."""
        parts = [BlockDev(p.name, p) for p in self.sysdir.iterdir() if (p / "partition").exists()]
        return sorted(parts, key=lambda b: b.partition_number)

    def partition(self, number: int) -> BlockDev | None:
        for p in self.partitions():
            if p.partition_number == number:
                return p
        return None

    def disks(self) -> set[str]:
        """Names of the whole disks underneath this device (through partitions and dm slaves)."""
        if self.is_partition and self.parent is not None:
            return self.parent.disks()
        sl = self.slaves()
        if sl:
            out: set[str] = set()
            for s in sl:
                out |= s.disks()
            return out
        return {self.name}

    def loop_backed(self) -> bool:
        """True when every disk underneath is a loop device: the only devices tether touches off-line."""
        names = self.disks()
        return bool(names) and all(by_name(n).devnum[0] == LOOP_MAJOR for n in names)


def by_name(name: str) -> BlockDev:
    return BlockDev(name, SYS_BLOCK / name)


def by_devnum(major: int, minor: int) -> BlockDev | None:
    link = SYS_DEV_BLOCK / f"{major}:{minor}"
    if not link.exists():
        return None
    real = link.resolve()
    return BlockDev(real.name, SYS_BLOCK / real.name)


def by_path(path: str) -> BlockDev | None:
    """The block device a /dev path (or a symlink to one) names, or None when it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat as _stat
    if not _stat.S_ISBLK(st.st_mode):
        return None
    return by_devnum(os.major(st.st_rdev), os.minor(st.st_rdev))


def device_of_mount(m: Mount) -> BlockDev | None:
    """btrfs and some others report an anonymous 0:N device number; fall back to the mount source."""
    if m.major != 0:
        dev = by_devnum(m.major, m.minor)
        if dev is not None:
            return dev
    return by_path(m.source) if m.source.startswith("/dev/") else None


def root_disks() -> set[str]:
    """Disks holding the running system's ``/``: nothing but growing may touch them."""
    m = mount_at("/")
    dev = device_of_mount(m) if m else None
    return dev.disks() if dev else set()


def in_use(dev: BlockDev) -> list[str]:
    """Why a disk (or one of its partitions) is busy: mounted or held by dm/md. Empty when free."""
    reasons = []
    members = [dev, *(dev.partitions() if not dev.is_partition else [])]
    nums = {b.devnum for b in members}
    for m in mounts():
        if (m.major, m.minor) in nums:
            reasons.append(f"mounted at {m.mount_point}")
    for b in members:
        for h in b.holders():
            reasons.append(f"{b.name} is held by {h}")
    return reasons


def wait_for(path: str, timeout: float = 5.0) -> bool:
    """Wait (bounded) for a device node to appear after a partition table change."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class Signature:
    kind: str      # wipefs/blkid type: ext4, xfs, gpt, dos, PMBR, LVM2_member, swap ...
    offset: str
    usage: str     # filesystem, partition table, raid, crypto, other

    def __str__(self) -> str:
        return f"{self.kind} ({self.usage}) at offset {self.offset}"


def signatures(run: Runner, device: str) -> list[Signature]:
    """Every signature libblkid finds on the device (``wipefs --no-act``): filesystems, partition
    tables, LVM and RAID members. Reads only; never changes the device."""
    res = run.run(["wipefs", "--no-act", "--json", device], timeout=30)
    if not res.stdout.strip():
        return []
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise CommandError(res.argv, res.code, res.stdout, "wipefs printed unreadable JSON") from None
    out = []
    for s in doc.get("signatures", []):
        kind = str(s.get("type", "?"))
        usage = "partition table" if kind in ("gpt", "PMBR", "dos", "atari", "bsd", "sun", "sgi", "mac") \
            else str(s.get("usage", "filesystem" if s.get("uuid") or s.get("label") else "other"))
        out.append(Signature(kind, str(s.get("offset", "?")), usage))
    return out


@dataclass(frozen=True)
class FsInfo:
    fstype: str | None
    label: str | None
    uuid: str | None
    pttype: str | None


def probe(run: Runner, device: str) -> FsInfo:
    """Low-level probe of what sits on a device (``blkid -p``, no cache). Exit 2 means nothing found."""
    res = run.run(["blkid", "-p", "-o", "export", device], check=False, timeout=30)
    if res.code not in (0, 2):
        raise CommandError(res.argv, res.code, res.stdout, res.stderr)
    vals: dict[str, str] = {}
    for line in res.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            vals[k] = v
    return FsInfo(vals.get("TYPE"), vals.get("LABEL"), vals.get("UUID"), vals.get("PTTYPE"))


def pv_recorded_size(device: str) -> int | None:
    """The size in bytes LVM recorded for this physical volume (``dev_size`` in the volume group metadata,
    updated by pvresize), read from the disk without running LVM: the label (``LABELONE`` in one of the
    first four sectors) gives the PV uuid and its metadata area; the area's header points at the current
    metadata text. None when the device is not a PV or the metadata cannot be read."""
    head = _read_direct(device, 4 * SECTOR)
    if head is None:
        return None
    for sector in range(4):
        lab = head[sector * SECTOR:(sector + 1) * SECTOR]
        if lab[:8] == b"LABELONE" and lab[24:32] == b"LVM2 001":
            break
    else:
        return None
    (off,) = struct.unpack_from("<I", lab, 20)
    pvh = sector * SECTOR + off
    uuid = head[pvh:pvh + 32].decode("ascii", "replace")
    pos = pvh + 40
    areas: list[list[tuple[int, int]]] = [[], []]   # data areas, then metadata areas, each 0-terminated
    for lst in areas:
        while pos + 16 <= len(head):
            a, b = struct.unpack_from("<QQ", head, pos)
            pos += 16
            if a == 0:
                break
            lst.append((a, b))
    if not areas[1]:
        return None
    mda_off, mda_size = areas[1][0]
    mda = _read_direct(device, mda_off + mda_size)
    if mda is None or len(mda) < mda_off + SECTOR:
        return None
    hdr = mda[mda_off:mda_off + SECTOR]
    if hdr[4:20] != b" LVM2 x[5A%r0N*>":
        return None
    (loc, size) = struct.unpack_from("<QQ", hdr, 40)
    if size == 0:
        return None
    ring = mda[mda_off + SECTOR:mda_off + mda_size]
    first = loc - SECTOR
    text = ring[first:first + size]
    if len(text) < size:  # the metadata wrapped around the circular buffer
        text += ring[:size - len(text)]
    meta = text.decode("utf-8", "replace")
    dashed = "-".join((uuid[0:6], uuid[6:10], uuid[10:14], uuid[14:18], uuid[18:22], uuid[22:26], uuid[26:32]))
    at = meta.find(f'id = "{dashed}"')
    if at < 0:
        return None
    m = re.search(r"dev_size\s*=\s*(\d+)", meta[at:at + 2000])
    return int(m.group(1)) * SECTOR if m else None


def _read_direct(device: str, length: int) -> bytes | None:
    """Read the first ``length`` bytes bypassing the page cache: LVM writes its label with O_DIRECT, so a
    buffered read after pvresize can return the old sectors."""
    try:
        fd = os.open(device, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    except OSError:
        return None
    try:
        buf = mmap.mmap(-1, (max(length, 4096) + 4095) // 4096 * 4096)  # page-aligned for O_DIRECT
        try:
            n = os.readv(fd, [buf])
        except OSError:
            os.lseek(fd, 0, os.SEEK_SET)
            os.posix_fadvise(fd, 0, length, os.POSIX_FADV_DONTNEED)
            return os.read(fd, length)
        return bytes(buf[:min(n, length)])
    finally:
        os.close(fd)
