"""What the engine writes into a freshly imaged root: fstab, the ``os`` section, carried-over identity, units."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tether.engine.hostconfig import HostConfiguration
from tether.target import Target

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FstabEntry:
    uuid: str | None          # filesystem UUID; None for tmpfs
    mount_point: str          # "none" for swap
    fstype: str
    options: str
    passno: int


def render_fstab(entries: Iterable[FstabEntry]) -> str:
    lines = ["# Written by tether from the host configuration; filesystems by UUID.\n"]
    for e in entries:
        spec = f"UUID={e.uuid}" if e.uuid else e.fstype
        lines.append(f"{spec}\t{e.mount_point}\t{e.fstype}\t{e.options}\t0\t{e.passno}\n")
    return "".join(lines)


def apply_os(target: Target, hc: HostConfiguration, source_root: Target | None = None) -> list[str]:
    """Apply ``os`` to the new root. Returns notes about what was deferred to first boot.

    TODO(engine): hostname should go through modules/set_hostname.py (tether.hostnames.write_hostname_file and
    the /etc/hosts handling of modules/update_etc_hosts.py), users through modules/users_groups.py
    (tether.accounts), additionalFiles through modules/write_files.py, once those take a Target without a full
    ModuleContext. Until then hostname and additionalFiles are written here and the rest is deferred.
    """
    notes: list[str] = []
    osc = hc.os
    if osc.hostname:
        target.write("/etc/hostname", osc.hostname + "\n", mode=0o644)
    for af in osc.additional_files:
        if af.content is not None:
            target.write(af.destination, af.content, mode=af.mode if af.mode is not None else 0o644)
        else:
            src = Path(str(af.source))
            data = (source_root.read_bytes(str(src)) if source_root else src.read_bytes())
            mode = af.mode if af.mode is not None else (os.stat(src).st_mode & 0o7777 if src.exists() else 0o644)
            target.write(af.destination, data, mode=mode)
    if osc.users:
        notes.append("os.users: deferred to the users_groups module (TODO(engine): apply here)")
    if osc.services and (osc.services.enable or osc.services.disable):
        notes.append("os.services: deferred (TODO(engine): reuse the services helper)")
    if osc.netplan:
        notes.append("os.netplan: deferred to the network stage (TODO(engine))")
    if osc.kernel_command_line and osc.kernel_command_line.extra_command_line:
        notes.append("os.kernelCommandLine: applied by the bootloader step")
    for n in notes:
        LOG.warning("%s", n)
    return notes


CARRY_FILES = ("/etc/hostname", "/etc/machine-id")
CARRY_GLOBS = ("/etc/ssh/ssh_host_*",)
CARRY_TREES = ("/var/lib/tether",)


def carry_over(active: Target, new: Target, exclude: Iterable[str] = ()) -> list[str]:
    """Copy what makes this host itself from the running root into the new slot; returns what was copied.

    Hostname, machine-id and SSH host keys keep the host's identity; /var/lib/tether keeps first-boot state so
    modules do not rerun as on a new instance. Paths in ``exclude`` (mounted elsewhere, e.g. the datastore's
    own filesystem) are skipped.
    """
    skip = [e.rstrip("/") for e in exclude]
    copied: list[str] = []
    for p in CARRY_FILES:
        src = active.path(p)
        if src.is_file():
            _copy_file(src, new.path(p))
            copied.append(p)
    for pattern in CARRY_GLOBS:
        parent, _, glob = pattern.rpartition("/")
        base = active.path(parent)
        if base.is_dir():
            for src in sorted(base.glob(glob)):
                if src.is_file() and not src.is_symlink():
                    _copy_file(src, new.path(f"{parent}/{src.name}"))
                    copied.append(f"{parent}/{src.name}")
    for tree in CARRY_TREES:
        if any(tree == s or tree.startswith(s + "/") for s in skip):
            continue
        src = active.path(tree)
        if src.is_dir():
            dst = new.path(tree)
            excluded = {active.path(s) for s in skip if s.startswith(tree + "/")}
            _copy_tree(src, dst, excluded)
            copied.append(tree + "/")
    return copied


def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tether-tmp")
    shutil.copy2(src, tmp, follow_symlinks=False)
    st = os.lstat(src)
    os.chown(tmp, st.st_uid, st.st_gid, follow_symlinks=False)
    os.replace(tmp, dst)


def _copy_tree(src: Path, dst: Path, excluded: set[Path]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        s = Path(entry.path)
        if s in excluded:
            continue
        d = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(s, d, excluded)
            shutil.copystat(s, d)
        elif entry.is_symlink():
            if d.is_symlink() or d.exists():
                d.unlink()
            os.symlink(os.readlink(s), d)
        else:
            _copy_file(s, d)


def install_units(target: Target) -> list[str]:
    """tether's systemd units, drop-ins and generator into the new root, enabled as ``tether install-units``
    does (the commit unit and the metadata timer included), with the tether path found in that root."""
    from tether.cli_units import install

    return install(target, enable=True)
