"""Which boot loader a host uses, where its ESP is, and what the running boot looks like.

The servicing verbs (finalize, commit, rollback) share this: they open the same backend the finalize step
chose (recorded in the host status under ``boot.backend``), find the kernel and initrd inside a slot's root,
and build the new entry's kernel command line from the running one.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether.engine.boot import BootBackend, BootError, MissingEspError, make_backend
from tether.engine.hostconfig import HostConfiguration
from tether.engine.layout import Layout
from tether.runner import Runner
from tether.target import Target

BACKENDS = ("auto", "systemd-boot", "grub", "uefi", "fake")
DEFAULT_TRIES = 3
SYSTEMD_BOOT_EFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
# Words of the running command line that describe *this* boot, not the host: never carried into a new entry.
_BOOT_SPECIFIC = ("root=", "tether.entry=", "BOOT_IMAGE=", "initrd=")


@dataclass(frozen=True)
class Machine:
    """Where facts about the running boot come from: the real /proc and /sys, or files a test controls."""

    cmdline: Path = Path("/proc/cmdline")
    boot_id: Path = Path("/proc/sys/kernel/random/boot_id")
    efivars: Path = Path("/sys/firmware/efi/efivars")

    def current_boot_id(self) -> str | None:
        try:
            return self.boot_id.read_text().strip() or None
        except OSError:
            return None

    def cmdline_words(self) -> list[str]:
        try:
            return self.cmdline.read_text(errors="replace").split()
        except OSError:
            return []

    def root_partuuid(self) -> str | None:
        for w in self.cmdline_words():
            if w.upper().startswith("ROOT=PARTUUID="):
                return w.split("=", 2)[2].lower() or None
        return None


def esp_mount_point(hc: HostConfiguration) -> tuple[str, str] | None:
    """(partition or device id, mount point) of the ESP in the host configuration, or None."""
    layout = Layout(hc)
    for fs in hc.storage.filesystems:
        if fs.mount is not None and fs.device_id is not None and layout.is_esp(fs):
            return fs.device_id, fs.mount.path
    return None


def esp_dir(root: Target, hc: HostConfiguration, *, require_mounted: bool = True) -> Path:
    """The ESP as mounted in ``root``; MissingEspError when the configuration has none or it is not mounted."""
    found = esp_mount_point(hc)
    if found is None:
        raise MissingEspError("storage.filesystems: the host configuration has no EFI system partition "
                              "(a filesystem mounted at /boot/efi or /efi, or a partition of type esp)")
    dev_id, mp = found
    path = root.path(mp)
    if require_mounted and not os.path.ismount(path):
        raise MissingEspError(f"the EFI system partition ({dev_id!r}) is not mounted at {mp}"
                              + (f" (under {root.root})" if not root.live else "")
                              + "; mount it and run again")
    return path


def detect_backend(root: Target, esp: Path | None) -> str:
    """The boot loader found on the ESP or in /boot: systemd-boot first, then GRUB."""
    if esp is not None and ((esp / "loader").is_dir() or (esp / "EFI" / "systemd").is_dir()):
        return "systemd-boot"
    if _grub_dir(root, esp) is not None:
        return "grub"
    raise BootError(f"no supported boot loader found (systemd-boot: {esp or '<no ESP>'}/loader; GRUB: "
                    "/boot/grub/grub.cfg); pass --boot-loader")


def _grub_dir(root: Target, esp: Path | None) -> tuple[Path, str] | None:
    for base, sub in ((root.path("/boot"), "grub"), (root.path("/boot"), "grub2")):
        if (base / sub / "grub.cfg").is_file():
            return base, sub
    if esp is not None:
        for cfg in sorted(glob.glob(str(esp / "EFI" / "*" / "grub.cfg"))):
            return esp, os.path.relpath(os.path.dirname(cfg), esp)
    return None


def open_backend(name: str, *, root: Target, esp: Path | None, machine: Machine, runner: Runner,
                 uefi_disk: tuple[str, int] | None = None, fake_state: Path | None = None) -> BootBackend:
    """A backend by name (``auto`` detects it) for a host whose ESP is at ``esp``."""
    if name == "auto":
        name = detect_backend(root, esp)
    kwargs: dict[str, Any]
    if name == "systemd-boot":
        if esp is None:
            raise MissingEspError("systemd-boot needs the EFI system partition")
        from tether.engine.boot_uefi import EfiVars
        kwargs = {"esp": esp, "efivars": EfiVars(machine.efivars), "cmdline_path": machine.cmdline}
    elif name == "grub":
        found = _grub_dir(root, esp)
        if found is None:
            raise MissingEspError("no GRUB directory (/boot/grub, /boot/grub2 or EFI/*/grub.cfg on the ESP)")
        kwargs = {"boot_root": found[0], "grub_dir": found[1], "cmdline_path": machine.cmdline}
    elif name == "uefi":
        if esp is None or uefi_disk is None:
            raise MissingEspError("UEFI BootNext needs the EFI system partition and its disk")
        kwargs = {"runner": runner, "esp": esp, "disk": uefi_disk[0], "part": uefi_disk[1],
                  "cmdline_path": machine.cmdline}
    elif name == "fake":
        kwargs = {"path": fake_state or root.path("/var/lib/tether/servicing/fake-boot.json")}
    else:
        raise BootError(f"unknown boot loader {name!r}; use one of {', '.join(BACKENDS)}")
    return make_backend(name, **kwargs)


def find_kernel(slot_root: Target) -> tuple[Path, Path | None]:
    """The kernel and initrd a slot boots: Debian's /boot/vmlinuz links, else the newest /boot/vmlinuz-VER
    with its initrd, else /usr/lib/modules/VER/vmlinuz. Paths are host paths inside ``slot_root``."""
    for k, i in (("/boot/vmlinuz", "/boot/initrd.img"), ("/vmlinuz", "/initrd.img")):
        kp = slot_root.path(k)
        if kp.is_file():
            ip = slot_root.path(i)
            return kp, ip if ip.is_file() else None
    from tether.engine.boot import version_key

    versions: dict[str, Path] = {}
    for p in glob.glob(str(slot_root.path("/boot")) + "/vmlinuz-*"):
        versions.setdefault(os.path.basename(p)[len("vmlinuz-"):], Path(p))
    for p in glob.glob(str(slot_root.path("/usr/lib/modules")) + "/*/vmlinuz"):
        versions.setdefault(os.path.basename(os.path.dirname(p)), Path(p))
    if not versions:
        raise BootError("the slot has no kernel (/boot/vmlinuz, /boot/vmlinuz-VERSION or "
                        "/usr/lib/modules/VERSION/vmlinuz)")
    ver = sorted(versions, key=version_key)[-1]
    for cand in (f"/boot/initrd.img-{ver}", f"/boot/initramfs-{ver}.img", f"/usr/lib/modules/{ver}/initrd"):
        ip = slot_root.path(cand)
        if ip.is_file():
            return versions[ver], ip
    return versions[ver], None


def entry_cmdline(running: list[str], old_extra: tuple[str, ...] | list[str], new_extra: tuple[str, ...] | list[str],
                  *, carry: bool = True) -> str:
    """The new entry's command line: the running one (console, panic, ...) without what names this boot or the
    old configuration's ``extraCommandLine``, then the new ``extraCommandLine``. ``root=`` is the backend's."""
    words: list[str] = []
    if carry:
        old = list(old_extra)
        for w in running:
            if w.startswith(_BOOT_SPECIFIC):
                continue
            if w in old:
                old.remove(w)
                continue
            words.append(w)
    for w in new_extra:
        if w not in words:
            words.append(w)
    if "ro" not in words and "rw" not in words:
        words.insert(0, "rw")
    return " ".join(words)


def extra_cmdline(spec: dict[str, Any] | None) -> list[str]:
    """The words a configuration adds to its boot entries: ``extraCommandLine``, then ``os.selinux.mode``'s."""
    from tether.engine.selinux import kernel_args

    os_ = (spec or {}).get("os") or {}
    kcl = os_.get("kernelCommandLine") or {}
    extra = kcl.get("extraCommandLine") or []
    words = [w for item in extra for w in str(item).split()]
    return words + [w for w in kernel_args((os_.get("selinux") or {}).get("mode")) if w not in words]


# ---- os.uefiFallback: the firmware's removable-media path EFI/BOOT/BOOTX64.EFI ----------------------------------

FALLBACK_PATH = "EFI/BOOT/BOOTX64.EFI"


def fallback_boots(mode: str, operation: str, step: str) -> Literal["new", "running"] | None:
    """Which OS the removable-media path should start once ``step`` (``finalize``/``commit``) of ``operation``
    (``clean-install``, ``ab-update``, ``rollback``) is done, as ``os.uefiFallback`` says; None: leave it alone.

    ``conservative``: a clean install points it at the new OS at finalize; an update keeps it on the running OS
    at finalize and moves it to the new one at commit (as the firmware's boot entries move). ``optimistic``: the
    new OS at finalize, always. ``disabled``: never written."""
    if mode == "disabled":
        return None
    if operation == "clean-install":
        return "new" if step == "finalize" else None
    if step == "finalize":
        return "new" if mode == "optimistic" else "running"
    return "new" if step == "commit" and mode == "conservative" else None


def fallback_action(backend: str, mode: str, operation: str, step: str) -> tuple[bool, str | None]:
    """(write systemd-boot to the removable path now?, a note when the backend cannot do what the mode asks).

    systemd-boot: the removable path holds systemd-boot itself, which picks the entry as the firmware's own boot
    entry does (default, one-shot, boot counting), so "running" and "new" are the same file: it is written at a
    clean install's finalize unless the mode is ``disabled``, and an update has nothing to move. GRUB: tether
    never writes GRUB's EFI binaries; the image's shim/GRUB on the removable path reads the same grub.cfg, so
    both slots' choice follows the grubenv like the firmware entry. UEFI BootNext: the slots' kernels take
    their command line from their firmware entries, which the removable path cannot carry: not written, noted.
    """
    target = fallback_boots(mode, operation, step)
    if backend == "systemd-boot":
        return (operation == "clean-install" and target == "new"), None
    if backend == "uefi" and target is not None:
        return False, (f"os.uefiFallback: {mode}: the uefi (BootNext) boot loader cannot provide {FALLBACK_PATH} "
                       "(each slot's kernel gets its command line from its firmware boot entry); set "
                       "uefiFallback: disabled to silence this, or use systemd-boot")
    return False, None
