"""What the engine writes into a freshly imaged root: fstab, the ``os`` section, carried-over identity, units.

The ``os`` section goes through the code the cloud-config modules use, with a module context for the new
root (``engine_context``): hostname as set_hostname/update_etc_hosts (``tether.hostnames``), users as
users_groups (``tether.accounts``, ``useradd --root``), additionalFiles as write_files, services through
``tether.services`` (``systemctl --root``), netplan through the network stage's parser and renderers, modules as
modules-load.d/modprobe.d files (``engine.kmodules``), SELinux's mode in ``/etc/selinux/config``
(``engine.selinux``; its relabel is ``finish``, the last step on a new root).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether import hostnames, log, services, sshkeys
from tether.accounts import UserSpec
from tether.engine.hostcheck import config_notes
from tether.engine.hostconfig import AdditionalFile, HostConfiguration, Services, User
from tether.errors import CommandError, ConfigError, ConfigErrors, TetherError
from tether.instance import InstanceData
from tether.module import ModuleContext, ModuleError
from tether.runner import Runner
from tether.target import FOLLOW_LINK, Target

LOG = log.get(__name__)


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


class OsConfigError(TetherError):
    """A part of the ``os`` section could not be applied; the message names the key."""


# Read by tether's first boot in the new root: the host configuration's hostname and network stay in force
# (the set_hostname module leaves the name alone, the network stage renders this network config).
SYSTEM_CONFIG_DROPIN = "/etc/tether/tether.cfg.d/90-host-configuration.cfg"


def engine_context(target: Target, runner: Runner) -> ModuleContext:
    """A module context for code shared with the cloud-config modules: an offline root, no datasource."""
    return ModuleContext(target=target, runner=runner, instance=InstanceData("None", "tether-engine"),
                         cloud_config={}, system_config={}, live=False)


def apply_os(target: Target, hc: HostConfiguration, source_root: Target | None = None,
             runner: Runner | None = None) -> list[str]:
    """Apply ``os`` to the new root with the code the matching cloud-config modules use.

    Returns notes on what is left to a later step or was not applied as asked (each also logged); anything
    that fails raises OsConfigError naming the key. ``source_root`` is the servicing OS (where
    ``additionalFiles[].source`` paths are read), the host's ``/`` when None.
    """
    ctx = engine_context(target, runner or Runner())
    notes: list[str] = []
    osc = hc.os
    dropin: dict[str, Any] = {}
    if osc.hostname:
        _hostname(ctx, osc.hostname)
        dropin["preserve_hostname"] = True
    if osc.users:
        notes += _users(ctx, osc.users)
    for i, af in enumerate(osc.additional_files):
        _additional_file(ctx, af, source_root, f"os.additionalFiles[{i}]")
    if osc.services:
        _services(ctx, osc.services)
    if osc.netplan:
        notes += _netplan(ctx, osc.netplan)
        dropin["network"] = _unwrap_netplan(osc.netplan)
    notes += _modules_and_selinux(target, hc)
    if dropin:
        target.write(SYSTEM_CONFIG_DROPIN, "# Written by tether from the host configuration's os section.\n"
                     + json.dumps(dropin, indent=2, sort_keys=True) + "\n", mode=0o644)
    else:
        target.remove(SYSTEM_CONFIG_DROPIN)
    if osc.kernel_command_line and osc.kernel_command_line.extra_command_line:
        notes.append("os.kernelCommandLine: applied by the bootloader step")
    notes += config_notes(hc)
    for w in ctx.warnings:
        notes.append(w)
    for n in notes:
        LOG.warning("%s", n)
    return notes


def _modules_and_selinux(target: Target, hc: HostConfiguration) -> list[str]:
    from tether.engine import kmodules, selinux

    notes: list[str] = []
    try:
        written = kmodules.apply(target, hc.os.modules)
    except OSError as e:
        raise OsConfigError(f"os.modules: {e}") from None
    if written:
        LOG.info("os.modules: wrote %s", ", ".join(written))
    if any(m.options for m in hc.os.modules):
        notes.append("os.modules: options reach a module loaded from the initramfs only once the initramfs is "
                     "rebuilt (the image's own initramfs is used as it is)")
    mode = selinux.configure(target, hc)
    if hc.os.selinux and hc.os.selinux.mode:
        notes.append(f"os.selinux.mode: {hc.os.selinux.mode}: the boot entry gets "
                     f"{' '.join(selinux.kernel_args(hc.os.selinux.mode))} (bootloader step)"
                     + ("; the files are relabelled as the last step" if mode in ("permissive", "enforcing")
                        else ""))
    return notes


def finish(target: Target, hc: HostConfiguration, runner: Runner | None = None) -> list[str]:
    """The last step on a new root, after the ``postConfigure`` scripts: the SELinux relabel (when the new OS
    ends up permissive or enforcing), so every file written before it is labelled. Returns notes."""
    from tether.engine import selinux

    return selinux.relabel(target, hc, runner or Runner())


def _hostname(ctx: ModuleContext, name: str) -> None:
    """/etc/hostname as set_hostname writes it, and the ``127.0.1.1`` line of /etc/hosts as
    update_etc_hosts' ``localhost`` mode does (replacing the image's or the previous name's line)."""
    if not hostnames.valid(name):
        raise OsConfigError(f"os.hostname: {name!r} is not a valid host name")
    name = name.rstrip(".")
    short = name.split(".", 1)[0]
    hostnames.write_hostname_file(ctx, name)
    hosts = ctx.target.read_text("/etc/hosts", default="127.0.0.1 localhost\n")
    new = hostnames.ensure_localhost_entry(hosts, short, name, replace=True)
    if new is not None:
        ctx.target.ensure_file("/etc/hosts", new, 0o644, links=FOLLOW_LINK)


def user_spec(u: User) -> tuple[UserSpec, list[str]]:
    """A Trident user as the cloud-config user users_groups creates, with notes on what maps differently."""
    notes: list[str] = []
    keys: tuple[str, ...] | None = None
    for i, k in enumerate(u.ssh_public_keys):
        if sshkeys.parse_key(k) is None:
            raise ValueError(f"sshPublicKeys[{i}]: not an SSH public key line ('<type> <base64> [comment]')")
    if u.ssh_public_keys and u.ssh_mode == "key-only":
        keys = u.ssh_public_keys
    elif u.ssh_public_keys:
        notes.append(f"os.users[{u.name}].sshPublicKeys: not installed because sshMode is 'block' "
                     "(set sshMode: key-only to allow SSH logins with these keys)")
    spec = UserSpec(name=u.name, primary_group=u.primary_group, groups=u.secondary_groups or None,
                    shell=u.startup_command, uid=u.uid, homedir=u.home_directory, lock_passwd=True,
                    ssh_authorized_keys=keys)
    return spec, notes


def _users(ctx: ModuleContext, users: tuple[User, ...]) -> list[str]:
    from tether.modules import users_groups

    notes: list[str] = []
    specs: list[UserSpec] = []
    for u in users:
        try:
            spec, n = user_spec(u)
        except ValueError as e:
            raise OsConfigError(f"os.users[{u.name}]: {e}") from None
        specs.append(spec)
        notes += n
    try:
        users_groups.handle(ctx, users_groups.Config(users=tuple(specs)))
    except (ModuleError, CommandError, OSError) as e:
        raise OsConfigError(f"os.users: {e}") from None
    return notes


def _additional_file(ctx: ModuleContext, af: AdditionalFile, source_root: Target | None, where: str) -> None:
    """Written by write_files' writer; mode: ``permissions``, else the source file's, else 0644."""
    from tether.modules import write_files

    mode = af.mode
    if af.content is not None:
        data: bytes = af.content.encode()
    else:
        src = source_root.path(str(af.source)) if source_root else Path(str(af.source))
        try:
            data = src.read_bytes()
            if mode is None:
                mode = os.stat(src).st_mode & 0o7777
        except OSError as e:
            raise OsConfigError(f"{where}.source: cannot read {af.source}: {e.strerror or e}") from None
    entry = write_files.Entry(path=af.destination, content=data, permissions=0o644 if mode is None else mode)
    try:
        write_files.write_entry(ctx, entry, (0, 0) if os.geteuid() == 0 else None)
    except (ModuleError, OSError) as e:
        raise OsConfigError(f"{where}: writing {af.destination}: {e}") from None


def _services(ctx: ModuleContext, svc: Services) -> None:
    both = set(svc.enable) & set(svc.disable)
    if both:
        raise OsConfigError(f"os.services: {', '.join(sorted(both))} both enabled and disabled")
    try:
        for unit in svc.enable:
            services.enable_in(ctx.target, ctx.runner, unit)
        for unit in svc.disable:
            services.disable_in(ctx.target, ctx.runner, unit)
    except services.ServiceError as e:
        raise OsConfigError(f"os.services: {e}") from None


def _unwrap_netplan(doc: dict[str, Any]) -> dict[str, Any]:
    from tether.network.parse import unwrap

    inner = unwrap(doc)
    return inner if isinstance(inner, dict) else doc


def _netplan(ctx: ModuleContext, doc: dict[str, Any]) -> list[str]:
    """The network stage's parser and renderers: networkd files, /etc/netplan when the root has netplan,
    NetworkManager profiles when it uses NetworkManager."""
    from tether.network.apply import render
    from tether.network.parse import parse_config
    from tether.network.select import choose_renderer

    inner = _unwrap_netplan(doc)
    if inner.get("version") != 2:
        raise OsConfigError("os.netplan: expected a netplan (network config version 2) document with version: 2")
    try:
        model = parse_config(inner, "os.netplan")
    except (ConfigError, ConfigErrors) as e:
        raise OsConfigError(f"os.netplan: {e}") from None
    renderer = choose_renderer(ctx.target, {})
    rep, warnings = render(ctx.target, renderer, inner, model)
    LOG.info("os.netplan: %s wrote %s", renderer, ", ".join(rep.written) or "nothing new")
    return [f"os.netplan: {w}" for w in [*model.warnings, *warnings]]


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
