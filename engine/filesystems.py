"""Filesystem tools on partitions: create, probe, check and grow, give a fresh UUID."""

from __future__ import annotations

from tether.errors import CommandError, TetherError
from tether.runner import Runner

MKFS_TIMEOUT = 600.0


class FilesystemError(TetherError):
    pass


def probe(runner: Runner, device: str) -> dict[str, str]:
    """TYPE, UUID, LABEL... read from the device itself (``-p``: no cache, which may be stale after a write)."""
    res = runner.run(["blkid", "-p", "-o", "export", device], check=False, timeout=60)
    if res.code not in (0, 2):  # 2: nothing found
        raise FilesystemError(f"blkid {device} failed: {res.stderr.strip()}")
    out = {}
    for line in res.stdout.splitlines():
        k, _, v = line.partition("=")
        if k:
            out[k] = v
    return out


def make(runner: Runner, device: str, fstype: str, label: str | None = None) -> None:
    if fstype == "ext4":
        argv = ["mkfs.ext4", "-F", "-q", *(["-L", label[:16]] if label else []), device]
    elif fstype == "xfs":
        argv = ["mkfs.xfs", "-f", "-q", *(["-L", label[:12]] if label else []), device]
    elif fstype == "vfat":
        argv = ["mkfs.vfat", *(["-n", label[:11].upper()] if label else []), device]
    elif fstype == "swap":
        argv = ["mkswap", *(["-L", label[:15]] if label else []), device]
    else:
        raise FilesystemError(f"cannot create a {fstype} filesystem")
    runner.run(argv, timeout=MKFS_TIMEOUT)


def check_and_grow(runner: Runner, device: str, fstype: str) -> None:
    """e2fsck then resize2fs (ext*), or xfs_repair -n then xfs_growfs (xfs), so an image smaller than its
    partition fills it. vfat images are written at their own size."""
    if fstype == "xfs":
        grow_xfs(runner, device)
        return
    if fstype not in ("ext4", "ext3", "ext2"):
        return
    res = runner.run(["e2fsck", "-f", "-y", device], check=False, timeout=MKFS_TIMEOUT)
    if res.code >= 4:  # 0 clean, 1 corrected, 2 corrected (reboot advised): anything else is damage left behind
        raise FilesystemError(f"e2fsck {device} found errors it could not fix (exit {res.code}): "
                              f"{res.stdout.strip().splitlines()[-1:] or res.stderr.strip()}")
    runner.run(["resize2fs", device], timeout=MKFS_TIMEOUT)


def grow_xfs(runner: Runner, device: str) -> None:
    """xfs grows only while mounted: check it read-only, mount it on a private directory (``nouuid``: a slot
    image carries the same UUID as the active slot until ``new_uuid``), ``xfs_growfs``, unmount."""
    import os

    from tether.engine import mounts

    res = runner.run(["xfs_repair", "-n", device], check=False, timeout=MKFS_TIMEOUT)
    if res.code != 0:
        raise FilesystemError(f"xfs_repair -n {device} found errors (exit {res.code}): "
                              f"{(res.stderr.strip() or res.stdout.strip()).splitlines()[-1:]}")
    where = mounts.work_dir("grow-" + os.path.basename(device))
    with mounts.mounted(runner, where, [(device, "/", "xfs", "nouuid")]):
        runner.run(["xfs_growfs", str(where)], timeout=MKFS_TIMEOUT)


def new_uuid(runner: Runner, device: str, fstype: str) -> None:
    if fstype in ("ext4", "ext3", "ext2"):
        runner.run(["tune2fs", "-U", "random", device], timeout=120)
    elif fstype == "xfs":
        runner.run(["xfs_admin", "-U", "generate", device], timeout=120)
    else:
        raise FilesystemError(f"cannot change the UUID of a {fstype} filesystem on {device}")


def wipe_signatures(runner: Runner, device: str) -> None:
    """Make a half-written slot unmountable so nothing mistakes it for a good filesystem."""
    try:
        runner.run(["wipefs", "-a", "-q", device], timeout=60)
    except CommandError as e:
        raise FilesystemError(f"could not wipe {device}: {e}") from None
