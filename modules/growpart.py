"""growpart: grow the partition under each listed mount point (or device) into the free space after it.

cloud-init compatible keys (``mode``, ``devices`` default ``["/"]``, ``ignore_growroot_disabled``), plus:
- a logical volume: the partitions under its physical volumes are grown, then ``pvresize``, then the LV
  by the extents gained (cloud-init #3265, #4718);
- a partition that is not the last one grows into free space up to the next partition;
- for a mount point other than ``/``, the filesystem is grown too (``/`` is left to ``resizefs``).
A boot where nothing changed reads sysfs and the PV label only: no process, no table write.

Off-line (target root not ``/``) only loop-backed devices mounted inside the target, or named as loop
device paths, are touched; anything else is logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from tether import blockdev, log, partgrow
from tether.blockdev import BlockDev, Mount
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, Stage
from tether.modules import resizefs

NAME = "growpart"
STAGE = Stage.INIT
FREQUENCY = Frequency.ALWAYS
KEYS = ("growpart",)
RUN_WITHOUT_KEYS = True
LOG = log.get(__name__)
DISABLED_FLAG = "/etc/growroot-disabled"


@dataclass(frozen=True)
class GrowpartConfig:
    mode: Literal["auto", "growpart", "sgdisk", "tether", "gpart", "off", False] = field(
        default="auto", metadata=meta(doc="auto (growpart if installed, else tether's own), growpart, sgdisk, "
                                          "off. gpart is FreeBSD's and refused here; false means off."))
    devices: list[str] = field(default_factory=lambda: ["/"],
                               metadata=meta(doc="Mount points or /dev paths whose partition is grown."))
    ignore_growroot_disabled: bool = field(default=False, metadata=meta(
        doc="Grow even when /etc/growroot-disabled exists."))


@dataclass(frozen=True)
class Config:
    growpart: GrowpartConfig = field(default_factory=GrowpartConfig)


def _resolve(ctx: ModuleContext, entry: str) -> tuple[BlockDev, Mount | None] | str:
    """The device for one ``devices`` entry, or the reason it is skipped."""
    if entry.startswith("/dev/"):
        dev = blockdev.by_path(entry)
        if dev is None:
            return f"{entry} is not a block device"
        if not ctx.live and not dev.loop_backed():
            return f"off-line target: {entry} is not a loop device; would grow it, doing nothing"
        return dev, None
    host = ctx.target.path(entry)
    if not host.exists():
        return f"{entry} does not exist in the target"
    m = blockdev.mount_containing(host)
    if m is None:
        return f"no mount holds {entry}"
    if not ctx.live:
        root = str(ctx.target.root)
        if m.mount_point != root and not m.mount_point.startswith(root.rstrip("/") + "/"):
            return f"off-line target: {entry} is not on a filesystem mounted inside {root}; doing nothing"
    dev = blockdev.device_of_mount(m)
    if dev is None:
        return f"{entry} is on {m.fstype} from {m.source}, not a block device"
    if not ctx.live and not dev.loop_backed():
        return f"off-line target: {entry} is on {dev.path}, not a loop device; would grow it, doing nothing"
    return dev, m


def _lvm_devices(ctx: ModuleContext, lv: BlockDev) -> list[str] | None:
    """Off-line (tests), restrict LVM to the loop devices under the LV so the host's LVM is left alone."""
    if ctx.live:
        return None
    out = []
    for name in sorted(lv.disks()):
        disk = blockdev.by_name(name)
        out += [disk.path] + [p.path for p in disk.partitions()]
    return out


def grow_one(ctx: ModuleContext, dev: BlockDev, mode: str) -> bool:
    if dev.is_lvm_lv:
        r = partgrow.grow_lvm(ctx.runner, dev, mode, devices=_lvm_devices(ctx, dev))
        return bool(r.grown_partitions or r.resized_pvs or r.extended_by)
    if dev.dm_uuid:
        LOG.info("growpart: %s is a device-mapper device (%s) that is not LVM; not grown", dev.path,
                 dev.dm_uuid.split("-")[0])
        return False
    if not dev.is_partition:
        LOG.info("growpart: %s is a whole disk, not a partition; nothing to grow", dev.path)
        return False
    return partgrow.grow_partition(ctx.runner, dev, mode)


def handle(ctx: ModuleContext, cfg: Config) -> None:
    gp = cfg.growpart
    if gp.mode in ("off", False):
        LOG.info("growpart: mode is off")
        return
    if gp.mode == "gpart":
        ctx.warn("growpart: mode 'gpart' is FreeBSD's tool; use auto, growpart or sgdisk on Linux")
        return
    if not gp.ignore_growroot_disabled and ctx.target.exists(DISABLED_FLAG):
        LOG.info("growpart: %s exists; not growing (set ignore_growroot_disabled to override)", DISABLED_FLAG)
        return
    mode = str(gp.mode)
    for entry in gp.devices:
        found = _resolve(ctx, entry)
        if isinstance(found, str):
            LOG.info("growpart: %s", found)
            continue
        dev, mount = found
        try:
            grew = grow_one(ctx, dev, mode)
            if grew and mount is not None and os.path.normpath(entry) != "/":
                resizefs.resize_mounted(ctx, mount, blockdev.device_of_mount(mount) or dev)
        except (partgrow.GrowError, CommandError, OSError) as e:
            ctx.warn(f"growpart: {entry} ({dev.path}): {e}")
