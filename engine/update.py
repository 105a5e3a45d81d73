"""A/B staging: write the inactive slot while the active one keeps running.

Nothing here opens the active slot's partitions for writing or touches the boot configuration; the bootloader
switch is the finalize step. Each step appends a checkpoint to the servicing history. A run killed anywhere
leaves the servicing state as it was (the staging record says how far it got), and the next run starts the
staging over: the inactive slot holds nothing anyone relies on until ``ab-update-staged`` is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tether import log
from tether.engine import (
    checkpoints,
    chunkcache,
    filesystems,
    images,
    mounts,
    osconfig,
    preflight,
    scripts,
    slots,
    state,
    transitions,
)
from tether.engine.hostcheck import datastore_path, filesystem_for_path
from tether.engine.hostconfig import HostConfiguration, parse_host_config, to_data
from tether.engine.install import fstab_entries
from tether.engine.layout import Layout, other, resolve_partuuid
from tether.engine.progress import ProgressFn
from tether.errors import TetherError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)

NO_OP = "no-op"
AB_UPDATE = "ab-update"


class UpdateError(TetherError):
    pass


@dataclass
class UpdateOptions:
    progress: ProgressFn | None = None
    discard: bool = True
    net_timeout: float = 30.0
    net_retries: int = 5
    # makes a volume unbootable before its first byte is rewritten (finalize.remove_slot_entries); the CLI and the
    # metadata watch set it, so the boot configuration never names a slot while it is being written
    unboot: Callable[[str], None] | None = None


def servicing_type(installed: dict[str, Any], new: dict[str, Any]) -> str:
    """ab-update, no-op, or UpdateError when the storage layout would change (it is frozen after install)."""
    if (installed.get("storage") or {}) != (new.get("storage") or {}):
        raise UpdateError("storage: the storage layout cannot change after install (the disks are partitioned); "
                          "only image, os, scripts and health may change in an update")
    rest = ("image", "os", "scripts", "health", "trident")
    if all(installed.get(k) == new.get(k) for k in rest):
        return NO_OP
    return AB_UPDATE


def stage(hc: HostConfiguration, runner: Runner, root: Target, opts: UpdateOptions) -> tuple[str, dict[str, Any]]:
    """Stage ``hc`` into the inactive slot. Returns (what was done, host status)."""
    ds = state.datastore_location(root)
    if not ds.exists():
        raise UpdateError(f"no servicing datastore at {ds}: this host was not installed by tether")
    with state.StateStore(ds) as store:
        status = store.current()
        cur = status["servicingState"]
        new_spec = to_data(hc)
        try:
            transitions.require("stage", cur)
        except transitions.TransitionError as e:
            raise UpdateError(str(e)) from None
        active = status.get("abActiveVolume")
        if cur == state.AB_UPDATE_STAGED:
            if status["spec"] == new_spec and _holds(status, other(str(active)), new_spec):
                return "already staged", status
            installed = status["specOld"]
        else:
            installed = status["spec"]
        kind = servicing_type(installed, new_spec)
        if kind == NO_OP:
            if cur == state.AB_UPDATE_STAGED:
                # asking for the running configuration again cancels the pending staged update
                slot = {**(status["slots"].get(other(str(active))) or {}), "state": slots.CANCELLED,
                        "at": state.now()}
                store.update("staging-cancelled", servicingState=state.PROVISIONED, spec=installed, specOld=None,
                             slots={**status["slots"], other(str(active)): slot})
                return "cancelled the staged update (the requested configuration is the running one)", store.current()
            return "nothing to do: the requested configuration is the installed one", status
        installed_hc = parse_host_config(installed, "installed host configuration")
        layout = Layout(installed_hc)
        if not layout.pairs:
            raise UpdateError("storage.abUpdate: this host has no A/B volume pairs, so it cannot be A/B updated")
        if active not in ("volume-a", "volume-b"):
            raise UpdateError(f"the servicing state does not say which volume is active ({active!r})")
        inactive = other(active)
        for pid, puuid in status["partitionUuids"].items():
            dev = resolve_partuuid(runner, puuid, status["partitionPaths"].get(pid))
            if dev is None:
                raise UpdateError(f"partition {pid!r} (PARTUUID {puuid}) is not present on this host")
            layout.devices[pid] = dev
            layout.partuuids[pid] = puuid
        if status.get("staging"):
            was = status["staging"]
            LOG.warning("an earlier %s into %s was interrupted at step %s (started %s); starting over",
                        was.get("operation"), was.get("targetVolume"), was.get("step"), was.get("startedAt"))
        # check before you break: the image is reachable, pinned and fits, before scripts run or a byte is written
        net = {"timeout": opts.net_timeout, "retries": float(opts.net_retries)}
        try:
            plan = _plan(hc, layout, active, inactive, net)
        except TetherError as e:
            store.update("image-check-failed", lastError=state.error_record("image", str(e)))
            raise
        try:
            scripts.run_stage(scripts.PRE_SERVICING, hc.scripts.pre_servicing, servicing_type=AB_UPDATE,
                              runner=runner, servicing_root=root)
        except scripts.ScriptError as e:
            store.update("pre-servicing-failed", lastError=state.error_record("pre-servicing-script", str(e)))
            raise
        return _stage_into(hc, new_spec, installed, layout, plan, active, inactive, store, runner, root, opts)


def _holds(doc: dict[str, Any], volume: str, spec: dict[str, Any]) -> bool:
    try:
        slots.check_record(doc, volume, spec, (slots.STAGED,))
    except slots.SlotError as e:
        LOG.warning("%s", e)
        return False
    return True


@dataclass
class _Plan:
    info: images.ImageInfo | None
    targets: dict[str, str]             # mount point -> inactive device the image writes
    fresh: list[tuple[str, str]]        # (inactive device, fs type) made empty


def _plan(hc: HostConfiguration, layout: Layout, active: str, inactive: str, net: dict[str, float]) -> _Plan:
    info = images.probe(hc.image, **net) if hc.image else None
    pairs = layout.pairs
    active_devs = {layout.device(pid, active) for pid in pairs}
    targets: dict[str, str] = {}
    fresh: list[tuple[str, str]] = []
    for fs in hc.storage.filesystems:
        if fs.device_id not in pairs:
            continue  # shared filesystems (ESP, data) are not rewritten by an A/B update
        dev = layout.device(fs.device_id, inactive)
        if dev in active_devs:
            raise UpdateError(f"refusing to write {dev}: it belongs to the active volume")
        mp = fs.mount.path if fs.mount else None
        if fs.source == "image":
            if info is None or mp is None or not info.provides(mp):
                raise UpdateError(f"the image has no filesystem for {mp or fs.device_id}")
            targets[mp] = dev
        else:
            fresh.append((dev, fs.type or "ext4"))
    if hc.image is not None and info is not None:
        from tether.engine.blockdev import size_of

        preflight.check_fits(preflight.image_sizes(info, hc.image, net),
                             {mp: size_of(dev) for mp, dev in targets.items()}, hc.image.url)
    return _Plan(info, targets, fresh)


def _stage_into(hc: HostConfiguration, new_spec: dict[str, Any], installed: dict[str, Any], layout: Layout,
                plan: _Plan, active: str, inactive: str, store: state.StateStore, runner: Runner, root: Target,
                opts: UpdateOptions) -> tuple[str, dict[str, Any]]:
    pairs = layout.pairs
    base_status = store.current()
    generation = len(store.history()) + 1
    staging = {"operation": AB_UPDATE, "targetVolume": inactive, "step": "writing",
               "imageUrl": hc.image.url if hc.image else None, "startedAt": state.now(), "pid": os.getpid(),
               "bootId": slots.current_boot_id()}
    if opts.unboot is not None:  # first nothing may boot the slot, then it is marked as being written
        opts.unboot(inactive)
    # the slot is untrusted from here until it is recorded as staged; a staged update it held is given up
    slot_rec = slots.record(slots.WRITING, new_spec, generation)
    store.record({**base_status, "servicingState": state.PROVISIONED, "spec": installed, "specOld": None,
                  "staging": staging, "slots": {**base_status["slots"], inactive: slot_rec}}, "staging-started")
    checkpoints.reached("stage:started")

    targets, fresh = plan.targets, plan.fresh
    net = {"timeout": opts.net_timeout, "retries": float(opts.net_retries)}
    for dev in [*targets.values(), *(d for d, _t in fresh)]:
        mounts.release(runner, dev)
    # adaptive downloads reuse the active root's chunks (engine/adaptive.py) when the image has a chunk index
    seeds = [layout.device(_device_id_for_mount(hc, "/"), active)] if "/" in targets else []
    try:
        deployed = images.deploy_seeded(hc.image, targets, seeds, str(root.path(chunkcache.DEFAULT_DIR)),
                                        discard=opts.discard, progress=opts.progress,
                                        **net) if hc.image and targets else []
    except images.ImageHashError as e:
        _mark_bad(store, runner, inactive, list(targets.values()), "image-hash-mismatch", str(e))
        raise
    except TetherError as e:
        _mark_bad(store, runner, inactive, list(targets.values()), "image-deployment", str(e))
        raise
    checkpoints.reached("stage:written")
    for dev, fstype in fresh:
        filesystems.make(runner, dev, fstype)
    for dep in deployed:
        fstype = dep.fs_type or filesystems.probe(runner, dep.device).get("TYPE", "")
        filesystems.check_and_grow(runner, dep.device, fstype)
        # two filesystems with one UUID would make mount-by-UUID pick either slot
        active_dev = layout.device(_device_id_for_mount(hc, dep.mount_point), active)
        if filesystems.probe(runner, dep.device).get("UUID") == filesystems.probe(runner, active_dev).get("UUID"):
            LOG.info("%s has the active slot's filesystem UUID; giving it a new one", dep.device)
            filesystems.new_uuid(runner, dep.device, fstype)
    doc = store.current()
    store.update("staging-written", staging={**staging, "step": "configuring"},
                 slots={**doc["slots"], inactive: {**slot_rec, "state": slots.WRITTEN, "verified": True,
                                                   "at": state.now()}})
    checkpoints.reached("stage:resized")

    ds = datastore_path(hc)
    shared = [fs.mount.path for fs in hc.storage.filesystems if fs.mount and fs.device_id not in pairs]
    holder = filesystem_for_path(hc, ds)
    exclude = shared + ([holder[1].mount.path] if holder and holder[1].mount else [])
    entries = []
    for fs in hc.storage.filesystems:
        if fs.mount and fs.device_id in pairs:
            entries.append((layout.device(fs.device_id, inactive), fs.mount.path, None, ""))
    base = mounts.work_dir("stage-" + os.path.basename(layout.device(_device_id_for_mount(hc, "/"), inactive)))
    with mounts.mounted(runner, base, entries):
        new_root = Target.at(base)
        # a marker left by the image or an earlier staging must not vouch for this content while it is written
        new_root.remove(slots.MARKER)
        for fs in hc.storage.filesystems:
            if fs.mount and fs.mount.path != "/":
                new_root.makedirs(fs.mount.path)
        new_root.write("/etc/fstab", osconfig.render_fstab(fstab_entries(runner, layout, inactive)), mode=0o644)
        # identity first, then the new configuration, so a hostname the new configuration sets wins
        copied = osconfig.carry_over(root, new_root, exclude=exclude)
        LOG.info("carried over: %s", ", ".join(copied) or "nothing")
        try:
            scripts.run_stage(scripts.POST_PROVISION, hc.scripts.post_provision, servicing_type=AB_UPDATE,
                              runner=runner, servicing_root=root, new_root=new_root)
            osconfig.apply_os(new_root, hc, source_root=root, runner=runner)
            osconfig.install_units(new_root)
            scripts.run_stage(scripts.POST_CONFIGURE, hc.scripts.post_configure, servicing_type=AB_UPDATE,
                              runner=runner, servicing_root=root, new_root=new_root)
            osconfig.finish(new_root, hc, runner=runner)  # SELinux relabel: last, so every file is labelled
        except (scripts.ScriptError, osconfig.OsConfigError) as e:
            # the inactive slot is incomplete: nothing may boot it; the next run stages it again
            category = "script" if isinstance(e, scripts.ScriptError) else "os-configuration"
            doc = store.current()
            store.update("staging-failed", staging=None, lastError=state.error_record(category, str(e)),
                         slots={**doc["slots"], inactive: {**slot_rec, "state": slots.BAD, "reason": str(e),
                                                           "at": state.now()}})
            raise
        state.write_pointer(new_root, ds)
        # the last write into the slot: from here on it vouches for this configuration
        slots.write_marker(new_root, inactive, new_spec, generation)
        checkpoints.reached("stage:configured")
    os.sync()  # the slot is unmounted; its marker and files are on the disk before the record says staged
    doc = store.current()
    doc.update({
        "servicingState": state.AB_UPDATE_STAGED,
        "spec": new_spec,
        "specOld": installed,
        "staging": None,
        "slots": {**doc["slots"], inactive: {**slot_rec, "state": slots.STAGED, "verified": True,
                                             "stagedAt": state.now(), "at": state.now()}},
        "lastError": None,
    })
    store.record(doc, "ab-update-staged")
    checkpoints.reached("stage:recorded")
    return f"staged into {inactive}", doc


def _device_id_for_mount(hc: HostConfiguration, mount_point: str) -> str:
    for fs in hc.storage.filesystems:
        if fs.mount and fs.mount.path == mount_point and fs.device_id:
            return fs.device_id
    raise UpdateError(f"no filesystem is mounted at {mount_point}")


def _mark_bad(store: state.StateStore, runner: Runner, volume: str, devices: list[str], category: str,
              message: str) -> None:
    for dev in devices:
        try:
            filesystems.wipe_signatures(runner, dev)
        except TetherError as e:  # the record below still marks the slot bad
            LOG.warning("%s", e)
    doc = store.current()
    rec = {**(doc["slots"].get(volume) or {}), "state": slots.BAD, "reason": message, "at": state.now()}
    store.update("staging-failed", staging=None, lastError=state.error_record(category, message),
                 slots={**doc["slots"], volume: rec})
