"""package_update_upgrade_install: ``apt-get update``, ``dist-upgrade`` and install, then an optional reboot.

apt runs maintainer scripts inside the system it installs into, so it runs live directly or offline chrooted
into a root that holds a system (see tether.packages); otherwise a warning lists what was not done.
Non-Debian families get a "not supported on <family>" warning; ``snap:`` packages are reported as not
supported by tether. ``package_reboot_if_required`` acts only live, one minute after the upgrade, so the
rest of the final stage (scripts, phone home) still runs first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tether import packages
from tether.convert import meta
from tether.errors import CommandError
from tether.module import ModuleContext, ModuleError

NAME = "package_update_upgrade_install"
STAGE = "final"
FREQUENCY = "once-per-instance"
KEYS = ("packages", "package_update", "package_upgrade", "package_reboot_if_required", "apt_update",
        "apt_upgrade", "apt_reboot_if_required")
LOG = logging.getLogger(__name__)
REBOOT_FLAG = "/var/run/reboot-required"


@dataclass(frozen=True)
class Package:
    """A package name, or ``[name, version]``."""

    name: str
    version: str | None = None

    @classmethod
    def normalize(cls, value: object) -> object:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, list):
            if len(value) != 2 or not all(isinstance(v, str) for v in value):
                raise ValueError("a [name, version] package needs exactly two strings")
            return {"name": value[0], "version": value[1]}
        raise ValueError("expected a package name or [name, version]")

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("-") or any(c.isspace() for c in self.name):
            raise ValueError(f"{self.name!r} is not a package name")

    @property
    def apt_spec(self) -> str:
        return f"{self.name}={self.version}" if self.version else self.name


@dataclass(frozen=True)
class PackageItem:
    """One ``packages`` entry: a package, or ``{apt: [...], snap: [...]}``."""

    apt: tuple[Package, ...] = ()
    snap: tuple[Package, ...] = ()

    @classmethod
    def normalize(cls, value: object) -> object:
        if isinstance(value, dict):
            other = [str(k) for k in value if k not in ("apt", "snap")]
            if other:
                raise ValueError(f"unknown package manager {other[0]!r} (apt or snap)")
            return value
        if isinstance(value, list):
            Package.normalize(value)  # reports a bad [name, version] at this entry
        return {"apt": [value]}


@dataclass(frozen=True)
class Config:
    packages: tuple[PackageItem, ...] = field(default=(), metadata=meta(doc="packages to install"))
    package_update: bool = False
    package_upgrade: bool = False
    package_reboot_if_required: bool = False
    apt_update: bool | None = field(default=None, metadata=meta(deprecated="use package_update"))
    apt_upgrade: bool | None = field(default=None, metadata=meta(deprecated="use package_upgrade"))
    apt_reboot_if_required: bool | None = field(default=None, metadata=meta(
        deprecated="use package_reboot_if_required"))


def handle(ctx: ModuleContext, cfg: Config) -> None:
    apt = [p.apt_spec for item in cfg.packages for p in item.apt]
    snaps = [p.name for item in cfg.packages for p in item.snap]
    update = cfg.package_update or bool(cfg.apt_update)
    upgrade = cfg.package_upgrade or bool(cfg.apt_upgrade)
    reboot = cfg.package_reboot_if_required or bool(cfg.apt_reboot_if_required)
    if snaps:
        ctx.warn(f"packages: snap packages are not supported by tether, not installed: {', '.join(snaps)}")
    if not (apt or update or upgrade):
        return
    if not packages.apt_family(ctx, "package_update_upgrade_install"):
        return
    if not ctx.can_run_in_target():
        ctx.warn(f"package_update_upgrade_install: nothing done, {ctx.target.root} holds no runnable system"
                 + (f" (not installed: {', '.join(apt)})" if apt else ""))
        return
    errors = []
    for what, args, timeout in (("update", ["update"], packages.UPDATE_TIMEOUT),
                                ("upgrade", ["dist-upgrade"], packages.INSTALL_TIMEOUT),
                                ("install", ["install", *apt], packages.INSTALL_TIMEOUT)):
        # cloud-init refreshes the lists whenever it upgrades or installs; so does tether.
        if (what == "upgrade" and not upgrade) or (what == "install" and not apt):
            continue
        try:
            packages.apt_get(ctx, args, f"package {what}", timeout=timeout)
        except CommandError as e:
            errors.append(f"apt-get {args[0]}: {e}")
            if what == "update":
                continue
    if reboot and ctx.target.exists(REBOOT_FLAG):
        if ctx.live:
            LOG.warning("a package asks for a reboot; rebooting in one minute")
            try:
                ctx.run(["shutdown", "-r", "+1", "tether: rebooting after package upgrade"], timeout=30)
            except CommandError as e:
                errors.append(f"reboot: {e}")
        else:
            LOG.info("%s present; not rebooting an offline root", REBOOT_FLAG)
    if errors:
        raise ModuleError("; ".join(errors))
