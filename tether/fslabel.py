"""Filesystem labels read straight from block devices' superblocks, for finding seed drives before udev runs.

The generator runs before udev has made ``/dev/disk/by-label`` and starting ``blkid`` (plus the subprocess
machinery to run it) costs more than the generator's whole budget. Seeds are ISO 9660 or FAT in practice
(cloud-init's ``cidata``, OpenStack's ``config-2``); ext2/3/4, XFS and btrfs labels are read too. A device that
cannot be opened or read (an empty CD tray, no permission) simply has no label. Only the standard library, only
``os``: the generator imports this.
"""

from __future__ import annotations

import os

_SECTOR = 512


def _read(fd: int, offset: int, length: int) -> bytes:
    try:
        return os.pread(fd, length, offset)
    except OSError:
        return b""


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _iso9660(fd: int) -> str | None:
    # Primary volume descriptor at sector 16 of 2048 bytes: type 1, "CD001", volume identifier at 40..72.
    pvd = _read(fd, 16 * 2048, 72)
    if len(pvd) < 72 or pvd[1:6] != b"CD001" or pvd[0] != 1:
        return None
    return pvd[40:72].decode("ascii", "replace").strip() or None


def _fat(fd: int, boot: bytes) -> str | None:
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa":
        return None
    bytes_per_sector = int.from_bytes(boot[11:13], "little")
    if bytes_per_sector not in (512, 1024, 2048, 4096):
        return None
    if boot[0x52:0x57] == b"FAT32":
        label_at, fat32 = 0x47, True
    elif boot[0x36:0x39] == b"FAT":
        label_at, fat32 = 0x2B, False
    else:
        return None
    # mkfs writes the label in the boot sector; mlabel and some tools only in the root directory's volume-label
    # entry, which (like blkid) wins when present.
    in_dir = _fat_root_label(fd, boot, bytes_per_sector, fat32)
    if in_dir:
        return in_dir
    label = boot[label_at:label_at + 11].decode("latin-1").strip()
    return None if label in ("", "NO NAME") else label


def _fat_root_label(fd: int, boot: bytes, bps: int, fat32: bool) -> str | None:
    reserved = int.from_bytes(boot[14:16], "little")
    nfats = boot[16]
    fat_size = int.from_bytes(boot[22:24], "little") or int.from_bytes(boot[36:40], "little")
    sectors_per_cluster = boot[13] or 1
    first_data = reserved + nfats * fat_size
    if fat32:
        root_cluster = int.from_bytes(boot[44:48], "little")
        start = first_data + (root_cluster - 2) * sectors_per_cluster
        length = sectors_per_cluster * bps
    else:
        root_entries = int.from_bytes(boot[17:19], "little")
        start = first_data
        length = root_entries * 32
    data = _read(fd, start * bps, min(length, 64 * 1024))
    for off in range(0, len(data) - 31, 32):
        entry = data[off:off + 32]
        if entry[0] == 0:
            break
        if entry[0] == 0xE5 or entry[11] == 0x0F:   # deleted, or a long-name piece
            continue
        if entry[11] & 0x08:                          # volume label attribute
            return entry[:11].decode("latin-1").strip() or None
    return None


def _ext(fd: int) -> str | None:
    sb = _read(fd, 1024, 136)
    if len(sb) < 136 or sb[56:58] != b"\x53\xef":
        return None
    return _text(sb[120:136]) or None


def _xfs(boot: bytes) -> str | None:
    if boot[:4] != b"XFSB" or len(boot) < 120:
        return None
    return _text(boot[108:120]) or None


def _btrfs(fd: int) -> str | None:
    sb = _read(fd, 0x10000, 0x12B + 256)
    if len(sb) < 0x12B + 256 or sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return _text(sb[0x12B:0x12B + 256]) or None


def read_label(device: str) -> str | None:
    """The filesystem label on ``device`` (a block device or an image file), or None."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        boot = _read(fd, 0, _SECTOR)
        return _xfs(boot) or _fat(fd, boot) or _ext(fd) or _iso9660(fd) or _btrfs(fd)
    finally:
        os.close(fd)


def block_devices(root: str = "/") -> list[str]:
    """Names of the block devices (whole disks and partitions) the kernel lists, skipping empty ones."""
    base = os.path.join(root, "sys/class/block")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith(("ram", "zram")):
            continue
        try:
            with open(os.path.join(base, name, "size")) as f:
                if int(f.read().strip() or "0") == 0:
                    continue
        except (OSError, ValueError):
            continue
        out.append(name)
    return out


def devices_with_labels(root: str, wanted: set[str]) -> list[str]:
    """Device paths (``ROOT/dev/NAME``) whose label, compared case-insensitively, is in ``wanted`` (lower case)."""
    found = []
    for name in block_devices(root):
        dev = os.path.join(root, "dev", name)
        label = read_label(dev)
        if label is not None and label.lower() in wanted:
            found.append(dev)
    return found
