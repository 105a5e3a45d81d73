"""``os.selinux.mode`` in a new root: the kernel command line words, ``/etc/selinux/config``, and the relabel.

Trident's semantics. The mode the new OS ends up in comes from the host configuration and the image's own
``/etc/selinux/config``:

| host configuration \\ image | no config | disabled | permissive | enforcing |
|---|---|---|---|---|
| not set     | none       | disabled   | permissive | enforcing |
| disabled    | none       | disabled   | disabled   | disabled  |
| permissive  | error      | permissive | permissive | permissive |
| enforcing   | error      | enforcing  | enforcing  | enforcing |

``disabled`` is only ``selinux=0`` on the command line; ``permissive`` and ``enforcing`` also set ``SELINUX=`` in
the image's config (the kernel takes the enforcing decision from there, so ``setenforce`` still works). Whenever
the outcome is permissive or enforcing, the writable ext4/xfs filesystems of the new root are relabelled with
the image's own ``setfiles`` and policy, as the last step of staging (after the ``postConfigure`` scripts, so
their files are labelled too).
"""

from __future__ import annotations

import os
import re
from typing import Literal, cast

from tether import log
from tether.engine.hostconfig import HostConfiguration, SelinuxMode
from tether.engine.osconfig import OsConfigError
from tether.errors import CommandError
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)

CONFIG = "/etc/selinux/config"
AUTORELABEL = "/.autorelabel"
SETFILES = ("/usr/sbin/setfiles", "/sbin/setfiles")
RELABEL_TYPES = ("ext4", "xfs")
_CMDLINE: dict[str, tuple[str, ...]] = {
    "disabled": ("selinux=0",),
    "permissive": ("security=selinux", "selinux=1", "enforcing=0"),
    "enforcing": ("security=selinux", "selinux=1"),
}
ALL_WORDS = frozenset(w for words in _CMDLINE.values() for w in words)
_LINE = re.compile(r"^\s*(SELINUX|SELINUXTYPE)\s*=\s*(\S*)\s*$")


class SelinuxError(OsConfigError):
    """The SELinux mode cannot be applied to the new root; the message names ``os.selinux.mode``."""


def kernel_args(mode: SelinuxMode | None) -> list[str]:
    """The words the boot entry gets for ``mode`` (none when the mode is left to the image)."""
    return list(_CMDLINE[mode]) if mode else []


def read_config(target: Target) -> dict[str, str]:
    """``SELINUX`` and ``SELINUXTYPE`` of the root's config; empty when the root has no config."""
    out: dict[str, str] = {}
    for line in target.read_text(CONFIG, default="").splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def final_mode(asked: SelinuxMode | None, image: str | None) -> SelinuxMode | None:
    """The table above; ``image`` is the image's ``SELINUX=`` value, None without a config file."""
    if image is not None and image not in _CMDLINE:
        raise SelinuxError(f"os.selinux.mode: the image's {CONFIG} says SELINUX={image}, which is not one of "
                           "disabled, permissive, enforcing")
    if asked is None:
        return cast("SelinuxMode | None", image)
    if image is None:
        if asked == "disabled":
            return None
        raise SelinuxError(f"os.selinux.mode: {asked} asks for SELinux, but the image has no {CONFIG} (no SELinux "
                           "policy installed); use an image with SELinux, or mode disabled")
    return asked


def _set_mode(text: str, mode: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _LINE.match(line)
        if m and m.group(1) == "SELINUX":
            lines[i] = f"SELINUX={mode}"
            return "\n".join(lines) + "\n"
    return "\n".join([*lines, f"SELINUX={mode}"]) + "\n"


def configure(target: Target, hc: HostConfiguration) -> Literal["disabled", "permissive", "enforcing"] | None:
    """Write the mode into the new root's config (permissive/enforcing) and return the resulting mode."""
    asked = hc.os.selinux.mode if hc.os.selinux else None
    conf = read_config(target)
    mode = final_mode(asked, conf.get("SELINUX") if target.exists(CONFIG) else None)
    if asked in ("permissive", "enforcing"):
        new = _set_mode(target.read_text(CONFIG), asked)
        if new != target.read_text(CONFIG):
            target.write(CONFIG, new, mode=0o644)
        LOG.info("os.selinux.mode: SELINUX=%s in %s", asked, CONFIG)
    return mode


def relabel_paths(target: Target, hc: HostConfiguration) -> list[str]:
    """Mount points (inside the new root) to relabel: `/` and every other ext4/xfs filesystem of the host
    configuration that is mounted under the new root and not read-only (vfat and tmpfs cannot hold labels)."""
    out = ["/"]
    for fs in hc.storage.filesystems:
        mp = fs.mount
        if mp is None or mp.path == "/" or "ro" in mp.options.split(","):
            continue
        if fs.type is not None and fs.type not in RELABEL_TYPES:
            continue
        if os.path.ismount(target.path(mp.path)) and _fstype(target.path(mp.path)) in RELABEL_TYPES:
            out.append(mp.path)
    return out


def _fstype(path: os.PathLike[str]) -> str:
    """The filesystem type mounted at ``path`` (the topmost mount there), "" when none."""
    from tether.blockdev import mount_at

    try:
        m = mount_at(os.path.realpath(path))
    except OSError:
        return ""
    return m.fstype if m is not None else ""


def relabel(target: Target, hc: HostConfiguration, runner: Runner) -> list[str]:
    """Relabel the new root when its SELinux mode ends up permissive or enforcing; returns notes.

    The image's own ``setfiles`` runs chrooted in the new root with the policy's ``file_contexts`` (``-m``: it
    must not read the servicing OS's mount table). A root tether cannot enter (not running as root, no shell)
    gets ``/.autorelabel`` instead, so its first boot relabels (one extra reboot; noted).
    """
    asked = hc.os.selinux.mode if hc.os.selinux else None
    conf = read_config(target)
    mode = final_mode(asked, conf.get("SELINUX") if target.exists(CONFIG) else None)
    if mode in (None, "disabled"):
        return []
    policy = conf.get("SELINUXTYPE")
    if not policy:
        raise SelinuxError(f"os.selinux.mode: SELinux is {mode}, but {CONFIG} in the image names no SELINUXTYPE")
    contexts = f"/etc/selinux/{policy}/contexts/files/file_contexts"
    if not target.exists(contexts):
        raise SelinuxError(f"os.selinux.mode: SELinux is {mode}, but the image has no policy {policy!r} "
                           f"({contexts} is missing)")
    setfiles = next((p for p in SETFILES if target.exists(p)), None)
    if setfiles is None:
        raise SelinuxError(f"os.selinux.mode: SELinux is {mode}, but the image has no setfiles "
                           f"({' or '.join(SETFILES)}; Debian/Fedora package policycoreutils) to label its files")
    paths = relabel_paths(target, hc)
    if not target.has_system():
        target.write(AUTORELABEL, "", mode=0o644)
        note = (f"os.selinux.mode: the new root cannot be entered to run setfiles (needs root and /bin/sh); "
                f"{AUTORELABEL} makes its first boot relabel {', '.join(paths)} and reboot once more")
        LOG.warning("%s", note)
        return [note]
    argv = [setfiles, "-m", contexts, *paths]
    try:
        runner.run(argv, chroot=str(target.root), timeout=3600)
    except CommandError as e:
        raise SelinuxError(f"os.selinux.mode: relabelling the new root failed: {e}") from None
    LOG.info("os.selinux.mode: %s relabelled %s with policy %s", mode, ", ".join(paths), policy)
    return []
