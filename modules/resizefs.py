"""resizefs: grow the root filesystem (online) to fill its device (cloud-init's ``resize_rootfs``).

``true``: resize now; ``false``: do nothing; ``noblock``: start the resize detached (bounded by ``timeout``)
and go on with the boot. ext2/3/4 use ``resize2fs``, xfs ``xfs_growfs``, btrfs ``btrfs filesystem resize max``;
other filesystems are logged and left alone.

Off-line (a target root that is not ``/``) the filesystem is touched only when the target root is itself the
mount point of a loop-backed device (tests); otherwise the module only logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from tether import blockdev, log
from tether.blockdev import BlockDev, Mount
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, Stage

NAME = "resizefs"
STAGE = Stage.INIT
FREQUENCY = Frequency.ALWAYS
KEYS = ("resize_rootfs",)
RUN_WITHOUT_KEYS = True
LOG = log.get(__name__)
NOBLOCK_TIMEOUT = "900"  # seconds a detached resize may take before it is killed


@dataclass(frozen=True)
class Config:
    resize_rootfs: Literal[True, False, "noblock"] = field(
        default=True, metadata=meta(doc="Grow / to fill its device; noblock resizes in the background."))


def fs_resize_argv(fstype: str, device: str, mount_point: str) -> list[str] | None:
    if fstype in ("ext2", "ext3", "ext4"):
        return ["resize2fs", device]
    if fstype == "xfs":
        return ["xfs_growfs", mount_point]
    if fstype == "btrfs":
        return ["btrfs", "filesystem", "resize", "max", mount_point]
    return None


def ext_fills_device(device: str) -> bool:
    """True when the ext2/3/4 filesystem on ``device`` already spans it to the last whole block, i.e.
    ``resize2fs`` would only say "Nothing to do!". Read from the superblock; False whenever unsure."""
    try:
        with open(device, "rb") as f:
            f.seek(1024)
            sb = f.read(1024)
            size = f.seek(0, os.SEEK_END)
    except OSError:
        return False
    if len(sb) < 0x158 or int.from_bytes(sb[0x38:0x3A], "little") != 0xEF53:
        return False
    log_block = int.from_bytes(sb[0x18:0x1C], "little")
    if log_block > 6:
        return False
    block = 1024 << log_block
    blocks = int.from_bytes(sb[0x4:0x8], "little")
    if int.from_bytes(sb[0x60:0x64], "little") & 0x80:  # INCOMPAT_64BIT: the high half of the block count
        blocks |= int.from_bytes(sb[0x150:0x154], "little") << 32
    return blocks > 0 and size // block <= blocks


def resize_mounted(ctx: ModuleContext, mount: Mount, dev: BlockDev, background: bool = False) -> bool:
    """Grow the filesystem mounted at ``mount`` online. False when its type is not supported."""
    device = mount.source if mount.source.startswith("/dev/") and os.path.exists(mount.source) else dev.path
    argv = fs_resize_argv(mount.fstype, device, mount.mount_point)
    if argv is None:
        LOG.info("resizefs: %s filesystem at %s is not resized (unsupported type)", mount.fstype,
                 mount.mount_point)
        return False
    if argv[0] == "resize2fs" and ext_fills_device(device):
        # the common case on every boot after the first: no resize2fs process (~0.2-0.4 s under TCG)
        LOG.info("resizefs: %s (%s) at %s already fills its device", device, mount.fstype, mount.mount_point)
        return True
    if background:
        # setsid -f returns at once; output goes to tether's own stdout (not captured, so nothing waits
        # on a pipe held by the detached child).
        ctx.run(["setsid", "-f", "timeout", "--kill-after=30", NOBLOCK_TIMEOUT, *argv], capture=False,
                timeout=30)
        LOG.info("resizefs: started %s in the background", " ".join(argv))
        return True
    res = ctx.run(argv, timeout=600)
    LOG.info("resizefs: resized %s (%s) at %s%s", device, mount.fstype, mount.mount_point,
             ": " + res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "")
    return True


def root_mount(ctx: ModuleContext) -> tuple[Mount, BlockDev] | None:
    """The mount and device of the target's ``/``, or None (logged) when tether must not touch it."""
    m = blockdev.mount_at(ctx.target.root)
    if m is None:
        LOG.info("resizefs: %s is not a mount point; nothing to resize", ctx.target.root)
        return None
    dev = blockdev.device_of_mount(m)
    if dev is None:
        LOG.info("resizefs: %s (%s from %s) is not on a block device", m.mount_point, m.fstype, m.source)
        return None
    if not ctx.live and not dev.loop_backed():
        LOG.info("resizefs: off-line target on %s (not a loop device): would resize, doing nothing", dev.path)
        return None
    return m, dev


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if cfg.resize_rootfs is False:
        LOG.info("resizefs: disabled by resize_rootfs: false")
        return
    found = root_mount(ctx)
    if found is None:
        return
    m, dev = found
    try:
        resize_mounted(ctx, m, dev, background=cfg.resize_rootfs == "noblock")
    except (CommandError, OSError) as e:  # recoverable: the system still boots at the old size
        ctx.warn(f"resizefs: could not resize {m.mount_point} ({m.fstype} on {dev.path}): {e}")
