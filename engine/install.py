"""Clean install from a live or installer environment onto blank disks.

Order matters for safety: everything that can be checked without writing (configuration, disk not in use,
image reachable, metadata pin) is checked before the first byte goes to a disk. A run killed part-way leaves a
disk that the next run simply repartitions; the install restarts from the top, which is its idempotence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tether import log
from tether.engine import (
    blockdev,
    checkpoints,
    filesystems,
    images,
    mounts,
    osconfig,
    partitioning,
    preflight,
    scripts,
    slots,
    state,
)
from tether.engine.hostcheck import datastore_path, filesystem_for_path
from tether.engine.hostconfig import HostConfiguration, to_data
from tether.engine.layout import VOLUME_A, Layout, new_fs_type
from tether.engine.progress import ProgressFn
from tether.errors import TetherError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)


CLEAN_INSTALL = "clean-install"
GENERATION = 1  # slot A's content at install; each staging records a newer one


class InstallError(TetherError):
    pass


@dataclass
class InstallOptions:
    allow_root_disk: bool = False
    progress: ProgressFn | None = None
    discard: bool = True
    net_timeout: float = 30.0
    net_retries: int = 5


def install(hc: HostConfiguration, runner: Runner, opts: InstallOptions) -> dict[str, object]:
    """Stage a clean install; returns the recorded host status."""
    if not hc.storage.disks:
        raise InstallError("storage.disks: a clean install needs at least one disk")
    devices = {}
    for d in hc.storage.disks:
        real = os.path.realpath(d.device)
        if not blockdev.is_block(real):
            raise InstallError(f"storage.disks: {d.device} is not a block device")
        blockdev.check_disk_free(real, opts.allow_root_disk)
        devices[d.id] = real
    # check before you break: everything below is read-only, and preServicing scripts run only once it passed
    planned = preflight.planned_partition_sizes(hc, devices)
    net = {"timeout": opts.net_timeout, "retries": float(opts.net_retries)}
    info = images.probe(hc.image, **net) if hc.image else None
    layout = Layout(hc)
    if hc.image is not None and info is not None:
        wanted = {fs.mount.path: planned[layout.partition_for(fs.device_id, VOLUME_A)]
                  for fs in hc.storage.filesystems
                  if fs.source == "image" and fs.mount and fs.device_id and info.provides(fs.mount.path)}
        preflight.check_fits(preflight.image_sizes(info, hc.image, net), wanted, hc.image.url)
        if info.metadata is None:
            preflight.verify_hash(hc.image, net)
    checkpoints.reached("install:checked")
    installer = Target.at("/")
    scripts.run_stage(scripts.PRE_SERVICING, hc.scripts.pre_servicing, servicing_type=CLEAN_INSTALL, runner=runner,
                      servicing_root=installer)

    for d in hc.storage.disks:
        for p in partitioning.partition(runner, d, devices[d.id]):
            layout.devices[p.id] = p.device
            layout.partuuids[p.id] = p.partuuid
    checkpoints.reached("install:partitioned")

    targets: dict[str, str] = {}
    for fs in hc.storage.filesystems:
        if fs.type == "tmpfs" or fs.device_id is None:
            continue
        dev = layout.device(fs.device_id, VOLUME_A)
        mp = fs.mount.path if fs.mount else None
        if fs.source == "image" and info is not None and mp is not None and info.provides(mp):
            targets[mp] = dev
        elif fs.source == "image" and layout.is_esp(fs):
            LOG.warning("%s: the image has no ESP; creating an empty vfat filesystem for the bootloader step",
                        mp or fs.device_id)
            filesystems.make(runner, dev, "vfat", "ESP")
        elif fs.source == "image":
            raise InstallError(f"the image {hc.image.url if hc.image else ''} has no filesystem for "
                               f"{mp or fs.device_id}")
        else:
            filesystems.make(runner, dev, new_fs_type(layout, fs), fs.device_id)
    for sw in hc.storage.swap:
        filesystems.make(runner, layout.devices[sw.device_id], "swap")
    checkpoints.reached("install:formatted")

    if hc.image is not None and targets:
        try:
            deployed = images.deploy(hc.image, targets, discard=opts.discard, progress=opts.progress, **net)
        except TetherError:
            # whatever was written is not to be trusted: it must not look like a filesystem anyone mounts
            for dev in targets.values():
                try:
                    filesystems.wipe_signatures(runner, dev)
                except TetherError as e:
                    LOG.warning("%s", e)
            raise
        for dep in deployed:
            fstype = dep.fs_type or filesystems.probe(runner, dep.device).get("TYPE", "")
            filesystems.check_and_grow(runner, dep.device, fstype)
    checkpoints.reached("install:imaged")

    ds = datastore_path(hc)
    spec = to_data(hc)
    # Only the new root and the datastore's filesystem are mounted: nothing else is written now (the ESP is the
    # bootloader step's), and the installer's kernel may lack drivers (vfat) the target's has.
    holder = filesystem_for_path(hc, ds)
    wanted_mounts = {"/"} | ({holder[1].mount.path} if holder and holder[1].mount else set())
    entries = [(d, mp, t, "") for d, mp, t, _o in mount_entries(runner, layout, VOLUME_A) if mp in wanted_mounts]
    base = mounts.work_dir("install-" + os.path.basename(devices[hc.storage.disks[0].id]))
    with mounts.mounted(runner, base, entries):
        root = Target.at(base)
        for fs in hc.storage.filesystems:  # mount points exist in the image, as fstab needs them at boot
            if fs.mount and fs.mount.path != "/":
                root.makedirs(fs.mount.path)
        root.write("/etc/fstab", osconfig.render_fstab(fstab_entries(runner, layout, VOLUME_A)), mode=0o644)
        scripts.run_stage(scripts.POST_PROVISION, hc.scripts.post_provision, servicing_type=CLEAN_INSTALL,
                          runner=runner, servicing_root=installer, new_root=root)
        osconfig.apply_os(root, hc, runner=runner)
        osconfig.install_units(root)
        scripts.run_stage(scripts.POST_CONFIGURE, hc.scripts.post_configure, servicing_type=CLEAN_INSTALL,
                          runner=runner, servicing_root=installer, new_root=root)
        osconfig.finish(root, hc, runner=runner)  # SELinux relabel: last, so every file written is labelled
        state.write_pointer(root, ds)
        slots.write_marker(root, VOLUME_A, spec, GENERATION)
        os.sync()
        checkpoints.reached("install:configured")
        with state.StateStore(root.path(ds)) as store:
            doc = state.empty_status()
            doc.update({
                "servicingState": state.CLEAN_INSTALL_STAGED,
                "spec": spec,
                "abActiveVolume": VOLUME_A if layout.pairs else None,
                "disks": devices,
                "partitionPaths": dict(layout.devices),
                "partitionUuids": dict(layout.partuuids),
                "slots": {VOLUME_A: slots.record(slots.STAGED, spec, GENERATION)} if layout.pairs else {},
            })
            store.record(doc, "clean-install-staged")
    checkpoints.reached("install:recorded")
    return doc


def mount_entries(runner: Runner, layout: Layout, volume: str) -> list[tuple[str, str, str, str]]:
    """(device, mount point, fstype, options) for every mounted filesystem of the slot."""
    out = []
    for fs in layout.hc.storage.filesystems:
        mp = fs.mount
        if mp is None or fs.device_id is None:
            continue
        dev = layout.device(fs.device_id, volume)
        fstype = filesystems.probe(runner, dev).get("TYPE", "")
        out.append((dev, mp.path, fstype, mp.options))
    return out


def fstab_entries(runner: Runner, layout: Layout, volume: str) -> list[osconfig.FstabEntry]:
    out = []
    for fs in layout.hc.storage.filesystems:
        mp = fs.mount
        if mp is None:
            continue
        if fs.type == "tmpfs" or fs.device_id is None:
            out.append(osconfig.FstabEntry(None, mp.path, "tmpfs", mp.options, 0))
            continue
        info = filesystems.probe(runner, layout.device(fs.device_id, volume))
        fstype = info.get("TYPE", "auto")
        # the ESP is checked too (pass 2): power cuts during boot-entry writes leave FAT damage that otherwise
        # accumulates until the kernel sets it read-only; systemd-fsck skips a type whose fsck is not installed
        out.append(osconfig.FstabEntry(info.get("UUID"), mp.path, fstype, mp.options,
                                       1 if mp.path == "/" else 2))
    for sw in layout.hc.storage.swap:
        info = filesystems.probe(runner, layout.devices[sw.device_id])
        out.append(osconfig.FstabEntry(info.get("UUID"), "none", "swap", "defaults", 0))
    return out
