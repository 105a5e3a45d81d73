"""wireguard: WireGuard interfaces from ``wireguard.interfaces`` (name, config_path, content), brought up with
``wg-quick@NAME``, then optional ``readinessprobe`` shell commands.

Each config (it holds the interface's private key) is written 0600 in a 0700 directory and never logged.
``wireguard-tools`` is installed when the target has no ``wg``. The ``wg-quick@NAME`` unit is enabled in the
target (``systemctl --root`` offline); live it is also restarted so a changed config takes effect, and only
then do the readiness probes run (an offline root has no interface to probe: they are skipped, logged).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field

from tether import log, packages, services
from tether.convert import meta
from tether.ensure import ensure_dir
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.target import REPLACE_LINK

NAME = "wireguard"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("wireguard",)
LOG = log.get(__name__)
IFNAME = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")   # what wg-quick accepts as an interface name
UNIT_TEMPLATE = "wg-quick@.service"
PROBE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Interface:
    name: str
    config_path: str
    content: str = field(metadata=meta(sensitive=True, doc="the wg-quick configuration (holds the private key)"))

    def __post_init__(self) -> None:
        if not IFNAME.match(self.name):
            raise ValueError(f"name {self.name!r} is not a WireGuard interface name (1-15 of a-z A-Z 0-9 _=+.-)")
        path = self.config_path
        if not path.startswith("/") or "\n" in path or ".." in path.split("/") or path.endswith("/"):
            raise ValueError(f"config_path {path!r} must be an absolute file path")

    @property
    def unit(self) -> str:
        return f"wg-quick@{self.name}.service"


@dataclass(frozen=True)
class WireGuard:
    interfaces: tuple[Interface, ...]
    readinessprobe: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.interfaces:
            raise ValueError("interfaces must list at least one interface")
        names = [i.name for i in self.interfaces]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"interface {dup[0]!r} is listed more than once")


@dataclass(frozen=True)
class Config:
    wireguard: WireGuard | None = None


def handle(ctx: ModuleContext, cfg: Config) -> None:
    wg = cfg.wireguard
    if wg is None:
        return
    packages.ensure_installed(ctx, "wg", ["wireguard-tools"], "wireguard")
    for iface in wg.interfaces:
        if iface.config_path != f"/etc/wireguard/{iface.name}.conf":
            ctx.warn(f"wireguard: {iface.unit} reads /etc/wireguard/{iface.name}.conf, not {iface.config_path}")
        ensure_dir(ctx.target, posixpath.dirname(iface.config_path), mode=0o700)
        # root's private key: root-owned even where an earlier file had another owner (tests run unprivileged)
        owner = (0, 0) if os.geteuid() == 0 else None
        if ctx.target.ensure_file(iface.config_path, iface.content, mode=0o600, owner=owner, links=REPLACE_LINK):
            LOG.info("wireguard: wrote %s (0600)", iface.config_path)
    errors = []
    for iface in wg.interfaces:
        try:
            _bring_up(ctx, iface)
        except CommandError as e:
            errors.append(f"{iface.unit}: {e}")
    if errors:
        raise ModuleError("; ".join(errors))
    if not wg.readinessprobe:
        return
    if not ctx.live:
        LOG.info("wireguard: readiness probes not run in an offline root (%d skipped)", len(wg.readinessprobe))
        return
    for probe in wg.readinessprobe:
        try:
            ctx.run(["/bin/sh", "-c", probe], timeout=PROBE_TIMEOUT)
        except CommandError as e:
            errors.append(f"readinessprobe {probe!r}: {e}")
    if errors:
        raise ModuleError("wireguard: " + "; ".join(errors))


def _bring_up(ctx: ModuleContext, iface: Interface) -> None:
    if not services.unit_present(ctx.target, UNIT_TEMPLATE):
        ctx.warn(f"wireguard: {iface.name} not enabled, {ctx.target.root} has no {UNIT_TEMPLATE} "
                 "(wireguard-tools missing)")
        return
    if ctx.live:
        ctx.run(["systemctl", "enable", iface.unit], timeout=services.SYSTEMCTL_TIMEOUT)
        ctx.run(["systemctl", "restart", iface.unit], timeout=services.SYSTEMCTL_TIMEOUT)
    else:
        ctx.run(["systemctl", f"--root={ctx.target.root}", "enable", iface.unit], timeout=services.SYSTEMCTL_TIMEOUT)
