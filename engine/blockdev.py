"""Block device facts and ioctls: size, discard, partition node names, which disk holds the running root."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import time

from tether import blockdev as _kernel
from tether.errors import TetherError

BLKGETSIZE64 = 0x80081272
BLKDISCARD = 0x1277
BLKSSZGET = 0x1268
BLKFLSBUF = 0x1261


class BlockDeviceError(TetherError):
    pass


def is_block(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def size_of(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
            return int(struct.unpack("Q", buf)[0])
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def logical_block_size(fd: int) -> int:
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4))[0])
    except OSError:
        return 512


def discard(fd: int, start: int, length: int) -> bool:
    """BLKDISCARD the range; False when the device does not support discard."""
    try:
        fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", start, length))
        return True
    except OSError:
        return False


def discard_reads_zero(fd: int, length: int, samples: int = 16) -> bool:
    """After a discard, do discarded blocks read back as zeros? Sampled across the range, bypassing the cache.

    Discard does not promise zeros in general (it does on loop devices and on most NVMe/virtio disks), so
    tether only skips writing zero runs when the samples confirm it.
    """
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        fcntl.ioctl(fd, BLKFLSBUF)
    except OSError:
        pass
    step = max(4096, (length // samples) // 4096 * 4096)
    for off in range(0, length - 4096 + 1, step):
        if os.pread(fd, 4096, off).count(0) != 4096:
            return False
    return True


def partition_node(disk: str, number: int) -> str:
    """/dev/sda + 2 -> /dev/sda2; /dev/loop3 or /dev/nvme0n1 + 2 -> ...p2."""
    real = os.path.realpath(disk)
    sep = "p" if real[-1].isdigit() else ""
    return f"{real}{sep}{number}"


def wait_for_nodes(paths: list[str], timeout: float = 10.0) -> None:
    """Partition nodes appear asynchronously after a re-read (devtmpfs or udev); wait, bounded."""
    end = time.monotonic() + timeout
    while True:
        missing = [p for p in paths if not is_block(p)]
        if not missing:
            return
        if time.monotonic() > end:
            raise BlockDeviceError(f"partition device nodes did not appear within {timeout:g}s: "
                                   f"{', '.join(missing)}")
        time.sleep(0.1)


def mounts() -> list[tuple[str, str]]:
    """(source, mount point) of every mount: the mount table as tether.blockdev reads it (the one parser)."""
    try:
        return [(m.source, m.mount_point) for m in _kernel.mounts()]
    except OSError:
        return []


def _disk_of(path: str) -> _kernel.BlockDev | None:
    """The whole disk (or the device-mapper/md node) ``path`` names: a partition's disk, else the device."""
    dev = _kernel.by_path(path)
    if dev is not None and dev.is_partition:
        return dev.parent
    return dev


def disks_in_use() -> dict[str, str]:
    """Whole-disk names holding a mounted filesystem -> the mount point (the running root among them); a
    stacked device (LVM, md) counts with every disk under it, so a root on LVM still protects its disks."""
    used: dict[str, str] = {}
    try:
        table = _kernel.mounts()
    except OSError:
        return used
    for m in table:
        dev = _kernel.device_of_mount(m)
        if dev is None:
            continue
        top = dev.parent if dev.is_partition and dev.parent is not None else dev
        for disk in {top.name} | dev.disks():
            if disk not in used or m.mount_point == "/":
                used[disk] = m.mount_point
    return used


def check_disk_free(device: str, allow_root_disk: bool = False) -> None:
    """Refuse a disk that holds the running root or any mounted filesystem."""
    disk = _disk_of(device)
    if disk is None:
        raise BlockDeviceError(f"{device} is not a block device")
    name = disk.name
    used = disks_in_use()
    if name in used:
        where = used[name]
        if where == "/" and not allow_root_disk:
            raise BlockDeviceError(f"{device} holds the running root filesystem; refusing to repartition it "
                                   "(pass --allow-running-root-disk only in a test harness)")
        if where != "/":
            raise BlockDeviceError(f"{device} has a mounted filesystem at {where}; unmount it first")
