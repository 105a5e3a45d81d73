"""Finalize: install the staged slot's boot entry as a trial, switch to it, record it, and reboot.

The entry is written with a boot counter (``tries``), so the new slot has to prove itself: commit marks it good
after its health checks; a panic, a hang under a watchdog or a reset before that uses up the tries and the boot
loader returns to the previous entry by itself. Every check that needs no write (servicing state, ESP mounted,
boot loader found, kernel present in the slot) comes first; a failure afterwards removes the new entry again,
so an error always leaves the running slot and the boot configuration as they were.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether import log
from tether.engine import checkpoints, mounts, slots, state, transitions
from tether.engine.boot import BootBackend, BootError, EfiVarsError, MissingEspError, find_entry
from tether.engine.bootsetup import (
    DEFAULT_TRIES,
    SYSTEMD_BOOT_EFI,
    Machine,
    entry_cmdline,
    esp_dir,
    esp_mount_point,
    extra_cmdline,
    find_kernel,
    open_backend,
)
from tether.engine.hostconfig import HostConfiguration, parse_host_config
from tether.engine.layout import VOLUME_A, Layout, other, resolve_partuuid
from tether.errors import TetherError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)


class FinalizeError(TetherError):
    pass


@dataclass
class ServicingEnv:
    """What finalize, commit and rollback act on. ``backend`` set: use it as is (tests, orchestrators)."""

    root: Target
    runner: Runner
    machine: Machine = field(default_factory=Machine)
    backend_name: str = "auto"
    backend: BootBackend | None = None
    tries: int = DEFAULT_TRIES
    reboot: bool = True
    uefi_disk: tuple[str, int] | None = None
    firmware_entry: bool = True  # clean install: register the new disk's boot loader with the firmware


def error_category(e: Exception) -> str:
    if isinstance(e, MissingEspError):
        return "missing-esp"
    if isinstance(e, EfiVarsError):
        return "efi-variables"
    if isinstance(e, BootError):
        return "boot-configuration"
    return "finalize"


def settle_boot_writes() -> None:
    """Every boot-entry write reaches the disk before the datastore records what it did. On a vfat ESP a renamed
    entry file's size lives in its directory entry, written back with the inode, and new directories (the
    kernel's) are not fsynced by the file writes: a power cut right after the record left a 0-byte entry that
    systemd-boot skips (found by the QEMU power cuts). sync() flushes them all; servicing records are few."""
    os.sync()


def remove_slot_entries(env: ServicingEnv, volume: str) -> None:
    """Before a slot is rewritten, the boot entries of its old content go (RAUC marks a slot non-bootable before
    writing it the same way): until finalize installs the new one, nothing in the boot configuration names the
    slot. Best effort: a boot loader that cannot be opened here (no ESP mounted) is logged; the old entry is never
    the default then (the running slot's is), and finalize removes it anyway."""
    ds = state.datastore_location(env.root)
    with state.StateStore(ds) as store:
        doc = store.current()
    try:
        hc = parse_host_config(doc["spec"], "host configuration")
        backend, _name, _esp = backend_for(env, hc, (doc.get("boot") or {}).get("backend"))
        gone = [e.id for e in backend.entries() if e.slot == volume and not e.booted]
        for entry in gone:
            backend.remove_entry(entry)
        settle_boot_writes()
    except TetherError as e:
        LOG.warning("could not remove the boot entries of %s before rewriting it: %s", volume, e)
        return
    if gone:
        LOG.info("%s is being rewritten: removed its boot entries %s", volume, ", ".join(gone))
    checkpoints.reached("boot:slot-unbootable")


def reboot(env: ServicingEnv, why: str) -> None:
    if not env.reboot:
        print(f"not rebooting: {why} on the next boot")
        return
    LOG.info("rebooting: %s", why)
    env.runner.run(["systemctl", "reboot"], timeout=60)


def backend_for(env: ServicingEnv, hc: HostConfiguration, recorded: str | None = None) -> tuple[BootBackend, str,
                                                                                                  str | None]:
    """(backend, its name, ESP mount point) for the running host."""
    found = esp_mount_point(hc)
    mp = found[1] if found else None
    if env.backend is not None:
        return env.backend, env.backend.name, mp
    name = recorded if recorded and env.backend_name == "auto" else env.backend_name
    esp = esp_dir(env.root, hc) if found is not None or name in ("auto", "systemd-boot", "uefi") else None
    be = open_backend(name, root=env.root, esp=esp, machine=env.machine, runner=env.runner, uefi_disk=env.uefi_disk)
    return be, be.name, mp


def root_device_id(hc: HostConfiguration) -> str:
    for fs in hc.storage.filesystems:
        if fs.mount is not None and fs.mount.path == "/" and fs.device_id:
            return str(fs.device_id)
    raise FinalizeError("storage.filesystems: no filesystem is mounted at /")


def next_version(store: state.StateStore, backend: BootBackend) -> str:
    """A generation newer than every tether entry (systemd-boot boots the newest version first)."""
    nums = [int(e.version) for e in backend.entries() if e.version.isdigit()]
    return str(max([*nums, len(store.history())]) + 1)


def make_next(backend: BootBackend, entry_id: str) -> None:
    """Make sure the new entry is what boots next: the default (newest counted entry under a ``tether-*``
    default), else through a one-shot (a default pinned elsewhere, e.g. a loader.conf naming another entry)."""
    e = find_entry(backend, entry_id)
    if not (e.default or e.oneshot):
        backend.set_oneshot(entry_id)


def _slot_root_partition(doc: dict[str, Any], hc: HostConfiguration, volume: str,
                         runner: Runner) -> tuple[str, str]:
    pid = Layout(hc).partition_for(root_device_id(hc), volume)
    puuid = (doc.get("partitionUuids") or {}).get(pid)
    if not puuid:
        raise FinalizeError(f"the servicing state has no PARTUUID for partition {pid!r}")
    dev = resolve_partuuid(runner, puuid, (doc.get("partitionPaths") or {}).get(pid))
    if dev is None:
        raise FinalizeError(f"partition {pid!r} (PARTUUID {puuid}) is not present on this host")
    return dev, puuid


def switch_to(env: ServicingEnv, store: state.StateStore, doc: dict[str, Any], volume: str, *, operation: str,
              new_spec: dict[str, Any], old_spec: dict[str, Any] | None) -> dict[str, Any]:
    """Install ``volume``'s entry as the trial and record ``ab-update-finalized``. On error: nothing changed
    except ``lastError``. The slot must be what its record says: staged (an update) or committed (a rollback)
    with ``new_spec``, and its marker must agree, or no entry is written for it."""
    hc = parse_host_config(new_spec, "host configuration")
    want = (slots.STAGED,) if operation == "ab-update" else (slots.COMMITTED,)
    try:
        slots.check_record(doc, volume, new_spec, want)
        backend, name, esp_mp = backend_for(env, hc, (doc.get("boot") or {}).get("backend"))
        dev, puuid = _slot_root_partition(doc, hc, volume, env.runner)
        previous = backend.booted_entry()
        version = next_version(store, backend)
        cmdline = entry_cmdline(env.machine.cmdline_words(), extra_cmdline(old_spec), extra_cmdline(new_spec))
        with mounts.mounted(env.runner, mounts.work_dir(f"finalize-{os.path.basename(dev)}"),
                            [(dev, "/", None, "ro")]) as base:
            slots.check_marker(Target.at(base), doc, volume, new_spec)
            kernel, initrd = find_kernel(Target.at(base))
            # entries of this slot's earlier content point at what is no longer there
            stale = [e.id for e in backend.entries() if e.slot == volume and not e.booted]
            for old in stale:
                backend.remove_entry(old)
                checkpoints.reached("boot:stale-entry-removed")
            entry = backend.install_entry(volume, kernel=kernel, initrd=initrd, root_partuuid=puuid,
                                          cmdline=cmdline, version=version, tries=env.tries)
            checkpoints.reached("boot:entry-installed")
        try:
            make_next(backend, entry)
            checkpoints.reached("boot:next-set")
        except BootError:
            with contextlib.suppress(BootError):
                backend.remove_entry(entry)
            raise
    except TetherError as e:
        store.update(f"{operation}-finalize-failed", lastError=state.error_record(error_category(e), str(e)))
        raise FinalizeError(f"finalize: {e}; the running slot and the boot configuration are unchanged") from None
    settle_boot_writes()
    boot = {"backend": name, "espMount": esp_mp, "entryId": entry, "previousEntryId": previous,
            "targetVolume": volume, "operation": operation, "tries": env.tries,
            "finalizedBootId": env.machine.current_boot_id(), "finalizedAt": state.now()}
    doc = store.current()
    doc.update(servicingState=state.AB_UPDATE_FINALIZED, spec=new_spec, specOld=old_spec, boot=boot, staging=None,
               lastError=None)
    store.record(doc, f"{operation}-finalized")
    return doc


def finalize(env: ServicingEnv) -> tuple[str, dict[str, Any]]:
    """``update --allowed-operations finalize``: switch to the staged slot. Returns (message, status)."""
    ds = state.datastore_location(env.root)
    if not ds.exists():
        raise FinalizeError(f"nothing staged to finalize: no servicing datastore at {ds} (this host was not "
                            "installed by tether)")
    with state.StateStore(ds) as store:
        doc = store.current()
        cur = doc["servicingState"]
        if cur == state.AB_UPDATE_FINALIZED:
            boot = doc.get("boot") or {}
            msg = f"already finalized: {boot.get('entryId')} ({boot.get('targetVolume')}) boots next"
            return msg, doc
        if cur not in transitions.OPERATIONS["finalize"]:
            raise FinalizeError(f"nothing staged to finalize (servicing state {cur}); "
                                + transitions.hint("finalize", cur))
        volume = other(doc["abActiveVolume"])
        doc = switch_to(env, store, doc, volume, operation="ab-update", new_spec=doc["spec"], old_spec=doc["specOld"])
    return f"finalized: {doc['boot']['entryId']} ({volume}) boots next, with {env.tries} tries", doc


# ---- clean install --------------------------------------------------------------------------------------------

def _install_devices(hc: HostConfiguration) -> dict[str, str]:
    """Partition id -> device node, as partitioning numbered them (in configuration order)."""
    from tether.engine.blockdev import partition_node

    out = {}
    for d in hc.storage.disks:
        real = os.path.realpath(d.device)
        for i, p in enumerate(d.partitions):
            out[p.id] = partition_node(real, i + 1)
    return out


def finalize_install(hc: HostConfiguration, env: ServicingEnv) -> tuple[str, dict[str, Any]]:
    """Finalize a staged clean install: put the boot loader (systemd-boot, when the image carries it) and the
    new root's entry on the new disk's ESP and record ``clean-install-finalized`` in the new disk's datastore.
    No boot counting: there is nothing to fall back to."""
    from tether.engine.hostcheck import datastore_path, filesystem_for_path

    layout = Layout(hc)
    layout.devices.update(_install_devices(hc))
    root_id = root_device_id(hc)
    found = esp_mount_point(hc)
    if found is None:
        raise MissingEspError("storage.filesystems: the host configuration has no EFI system partition")
    esp_id, esp_mp = found
    ds = datastore_path(hc)
    holder = filesystem_for_path(hc, ds)
    entries: list[tuple[str, str, str | None, str]] = [(layout.device(root_id, VOLUME_A), "/", None, ""),
                                                        (layout.device(esp_id, VOLUME_A), esp_mp, None, "")]
    if holder and holder[1].mount and holder[1].device_id and holder[1].mount.path not in ("/", esp_mp):
        entries.append((layout.device(holder[1].device_id, VOLUME_A), holder[1].mount.path, None, ""))
    for dev, _mp, _t, _o in entries:
        if not Path(dev).exists():
            raise FinalizeError(f"{dev} does not exist: stage the clean install first")
    base = mounts.work_dir("finalize-install-" + os.path.basename(os.path.realpath(hc.storage.disks[0].device)))
    with mounts.mounted(env.runner, base, entries):
        new_root = Target.at(base)
        if not new_root.path(ds).exists():
            raise FinalizeError(f"nothing staged to finalize: no servicing datastore at {ds} on the new disk")
        with state.StateStore(new_root.path(ds)) as store:
            doc = store.current()
            cur = doc["servicingState"]
            if cur == state.CLEAN_INSTALL_FINALIZED:
                return f"already finalized: {(doc.get('boot') or {}).get('entryId')} boots next", doc
            if cur != state.CLEAN_INSTALL_STAGED:
                raise FinalizeError(f"nothing staged to finalize (servicing state {cur} on the new disk)")
            try:
                if Layout(hc).pairs:
                    slots.check_record(doc, VOLUME_A, doc["spec"], (slots.STAGED,))
                slots.check_marker(new_root, doc, VOLUME_A, doc["spec"])
                backend, name = _install_backend(env, new_root, new_root.path(esp_mp), hc.os.uefi_fallback)
                kernel, initrd = find_kernel(new_root)
                cmdline = entry_cmdline([], [], extra_cmdline(doc["spec"]), carry=False)
                puuid = doc["partitionUuids"][layout.partition_for(root_id, VOLUME_A)]
                entry = backend.install_entry(VOLUME_A, kernel=kernel, initrd=initrd, root_partuuid=puuid,
                                              cmdline=cmdline, version=next_version(store, backend), tries=0)
                checkpoints.reached("boot:entry-installed")
                try:
                    make_next(backend, entry)
                    checkpoints.reached("boot:next-set")
                    firmware = _firmware_entry(env, name, layout.device(esp_id, VOLUME_A),
                                               doc["partitionUuids"].get(layout.partition_for(esp_id, VOLUME_A)))
                    checkpoints.reached("boot:firmware-entry")
                except BootError:
                    with contextlib.suppress(BootError):
                        backend.remove_entry(entry)
                    raise
            except TetherError as e:
                store.update("clean-install-finalize-failed", lastError=state.error_record(error_category(e), str(e)))
                raise FinalizeError(f"finalize: {e}; the new disk's boot configuration is unchanged") from None
            settle_boot_writes()
            boot = {"backend": name, "espMount": esp_mp, "entryId": entry, "previousEntryId": None,
                    "targetVolume": VOLUME_A, "operation": "clean-install", "tries": 0, "firmwareEntry": firmware,
                    "finalizedBootId": env.machine.current_boot_id(), "finalizedAt": state.now()}
            doc.update(servicingState=state.CLEAN_INSTALL_FINALIZED, boot=boot, lastError=None)
            store.record(doc, "clean-install-finalized")
    return f"finalized: {entry} on {hc.storage.disks[0].device} boots next", doc


def _firmware_entry(env: ServicingEnv, backend_name: str, esp_device: str, esp_partuuid: str | None) -> str | None:
    """Register the new disk's systemd-boot with the firmware, first in ``BootOrder`` (what ``bootctl install``
    does), so the next boot starts the new disk even while the installer's medium stays attached. Returns the
    entry's variable name, or None where there is nothing to register (another backend, no EFI variables, or
    ``firmware_entry`` off): then the firmware has to find ``EFI/BOOT/BOOTX64.EFI`` on the new disk by itself."""
    from tether.engine import efiboot
    from tether.engine.boot_uefi import EfiVars

    if backend_name != "systemd-boot" or env.backend is not None or not env.firmware_entry:
        return None
    efivars = EfiVars(env.machine.efivars)
    if not efivars.available:
        LOG.warning("no EFI variables at %s: no firmware boot entry registered; the firmware must find "
                    "EFI/BOOT/BOOTX64.EFI on the new disk itself", efivars.path)
        return None
    if not esp_partuuid:
        raise efiboot.FirmwareEntryError(f"the servicing state has no PARTUUID for the ESP ({esp_device})")
    num = efiboot.register(efivars, "tether systemd-boot", efiboot.partition_of(esp_device, esp_partuuid),
                           efiboot.SYSTEMD_BOOT_LOADER)
    LOG.info("firmware boot entry Boot%04X (%s on %s) is first in BootOrder", num, efiboot.SYSTEMD_BOOT_LOADER,
             esp_device)
    return f"Boot{num:04X}"


def _install_backend(env: ServicingEnv, new_root: Target, esp: Path,
                     uefi_fallback: str) -> tuple[BootBackend, str]:
    from tether.engine.bootsetup import fallback_action

    if env.backend is not None:
        return env.backend, env.backend.name
    name = env.backend_name
    image_sdboot = new_root.path(SYSTEMD_BOOT_EFI)
    if name == "auto":
        name = "systemd-boot" if image_sdboot.is_file() or (esp / "loader").is_dir() else "grub"
    backend = open_backend(name, root=new_root, esp=esp, machine=env.machine, runner=env.runner,
                           uefi_disk=env.uefi_disk)
    note = fallback_action(name, uefi_fallback, "clean-install", "finalize")[1]
    if note:
        LOG.warning("%s", note)
    if name == "systemd-boot":
        from tether.engine.boot_systemd import SystemdBoot

        assert isinstance(backend, SystemdBoot)
        if image_sdboot.is_file():
            # os.uefiFallback: whether the removable path EFI/BOOT/BOOTX64.EFI gets systemd-boot too
            fallback, _note = fallback_action("systemd-boot", uefi_fallback, "clean-install", "finalize")
            backend.install_loader(image_sdboot, fallback=fallback)
        elif not (esp / "loader").is_dir():
            raise BootError(f"the image has no systemd-boot ({SYSTEMD_BOOT_EFI}) and the ESP has none")
    return backend, name
