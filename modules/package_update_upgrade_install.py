"""package_update_upgrade_install: refresh the package lists, upgrade and install, then an optional reboot.

apt on Debian-family roots (``apt-get update``, ``dist-upgrade``, ``install name=version``), dnf on RHEL-family
roots (``dnf makecache``, ``upgrade``, ``install name-version``; yum when there is no dnf), as cloud-init does.
Package managers run scripts inside the system they install into, so they run live directly or offline
chrooted into a root that holds a system (see tether.packages); otherwise a warning lists what was not done.
Other families get a "not supported on <family>" warning; ``{apt: [...]}`` entries on a dnf system are
reported as not installed. ``{snap: [...]}`` entries are installed one at a time with ``snap install`` (a
``[name, arg]`` pair passes ``arg``, e.g. ``--edge``), live only. ``package_reboot_if_required`` acts only
live, one minute after an upgrade or install, so the rest of the final stage (scripts, phone home) still runs
first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import log, packages
from tether.convert import meta
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage

NAME = "package_update_upgrade_install"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("packages", "package_update", "package_upgrade", "package_reboot_if_required", "apt_update",
        "apt_upgrade", "apt_reboot_if_required")
LOG = log.get(__name__)
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
    """One ``packages`` entry: a package for the system's package manager, or ``{apt: [...], snap: [...]}``."""

    apt: tuple[Package, ...] = ()
    snap: tuple[Package, ...] = ()
    system: tuple[Package, ...] = field(default=(), metadata=meta(key="_system"))

    @classmethod
    def normalize(cls, value: object) -> object:
        if isinstance(value, dict):
            other = [str(k) for k in value if k not in ("apt", "snap")]
            if other:
                raise ValueError(f"unknown package manager {other[0]!r} (apt or snap)")
            return value
        norm = Package.normalize(value)  # a bad name or [name, version] is reported at this entry
        if isinstance(norm, dict):
            Package(**norm)
        return {"_system": [value]}


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
    update = cfg.package_update or bool(cfg.apt_update)
    upgrade = cfg.package_upgrade or bool(cfg.apt_upgrade)
    reboot = cfg.package_reboot_if_required or bool(cfg.apt_reboot_if_required)
    errors = _system_packages(ctx, cfg, update, upgrade)
    errors += _snaps(ctx, [p for item in cfg.packages for p in item.snap])
    if reboot and (upgrade or cfg.packages) and ctx.target.exists(REBOOT_FLAG):
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


def _system_packages(ctx: ModuleContext, cfg: Config, update: bool, upgrade: bool) -> list[str]:
    system = [p for item in cfg.packages for p in item.system]
    apt_only = [p for item in cfg.packages for p in item.apt]
    if not (system or apt_only or update or upgrade):
        return []
    pm = packages.for_target(ctx, "package_update_upgrade_install")
    if pm is None:
        return []
    if pm is not packages.APT:
        if apt_only:
            ctx.warn(f"packages: apt packages not installed, {pm.name} manages this system: "
                     f"{', '.join(p.name for p in apt_only)}")
        apt_only = []
    specs = [pm.spec(p.name, p.version) for p in system + apt_only]
    if not (specs or update or upgrade):
        return []
    if not ctx.can_run_in_target():
        ctx.warn(f"package_update_upgrade_install: nothing done, {ctx.target.root} holds no runnable system"
                 + (f" (not installed: {', '.join(specs)})" if specs else ""))
        return []
    errors = []
    for what, args, timeout in (("update", pm.update, packages.UPDATE_TIMEOUT),
                                ("upgrade", pm.upgrade, packages.INSTALL_TIMEOUT),
                                ("install", ("install", *specs), packages.INSTALL_TIMEOUT)):
        # cloud-init refreshes the lists whenever it upgrades or installs; so does tether.
        if (what == "upgrade" and not upgrade) or (what == "install" and not specs):
            continue
        try:
            packages.run(ctx, pm, args, f"package {what}", timeout=timeout)
        except CommandError as e:
            errors.append(f"{pm.name} {args[0]}: {e}")
    return errors


def _snaps(ctx: ModuleContext, snaps: list[Package]) -> list[str]:
    """``{snap: [name, [name, --channel=beta]]}``: ``snap install name [args]`` one at a time (as cloud-init),
    live only: snapd must be running."""
    if not snaps:
        return []
    names = ", ".join(p.name for p in snaps)
    if not ctx.live:
        ctx.warn(f"packages: snap packages are installed on the booted system only, not installed: {names}")
        return []
    if not packages.has_executable(ctx, "snap"):
        ctx.warn(f"packages: snap is not installed, not installed: {names}")
        return []
    errors = []
    for p in snaps:
        try:
            ctx.run(["snap", "install", p.name, *([p.version] if p.version else [])], timeout=packages.INSTALL_TIMEOUT)
        except CommandError as e:
            errors.append(f"snap install {p.name}: {e}")
    return errors
