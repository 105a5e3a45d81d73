"""Installing packages into the target with its package manager: apt on Debian-family roots, dnf (or yum) on
RHEL-family roots, chosen by what the root holds.

Package managers run their maintainer scripts inside the system they install into, so there is no
``--root`` equivalent that is safe: live they run directly, offline they run chrooted into the root when it
holds a usable system (``ModuleContext.run_in_target``). Otherwise nothing is installed and a warning says
what was left out. Other families get a clear "not supported" warning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from tether import log
from tether.module import ModuleContext

LOG = log.get(__name__)
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# Keep the admin's changed conffiles and never prompt: a first boot has nobody to answer.
APT_GET = ("apt-get", "--option=Dpkg::Options::=--force-confold", "--option=Dpkg::options::=--force-unsafe-io",
           "--assume-yes", "--quiet")
UPDATE_TIMEOUT = 600.0
INSTALL_TIMEOUT = 1800.0
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@dataclass(frozen=True)
class Manager:
    """One package manager's command lines, as cloud-init drives it on that family."""

    name: str                       # apt-get | dnf | yum
    base: tuple[str, ...]
    update: tuple[str, ...]         # refresh the package lists / metadata cache
    upgrade: tuple[str, ...]
    version_sep: str                # name=version (apt) or name-version (rpm)
    env: dict[str, str] | None = None

    def spec(self, name: str, version: str | None = None) -> str:
        return f"{name}{self.version_sep}{version}" if version else name

    def argv(self, args: Sequence[str]) -> list[str]:
        return [*self.base, *args]


APT = Manager("apt-get", APT_GET, ("update",), ("dist-upgrade",), "=", APT_ENV)
# cloud-init's RHEL family: ``dnf -y`` (``yum -t -y`` without dnf); ``makecache`` refreshes the metadata.
DNF = Manager("dnf", ("dnf", "--assumeyes"), ("makecache",), ("upgrade",), "-")
YUM = Manager("yum", ("yum", "-t", "--assumeyes"), ("makecache",), ("upgrade",), "-")
FAMILY_DEFAULT = {"debian": APT, "rhel": DNF}


def manager(ctx: ModuleContext) -> Manager | None:
    """The target's package manager: the first of apt-get, dnf, yum it holds; for a root without them
    (nothing runnable yet) the family's usual one. None on other families."""
    for m in (APT, DNF, YUM):
        if has_executable(ctx, m.name):
            return m
    return FAMILY_DEFAULT.get(ctx.distro_family())


def for_target(ctx: ModuleContext, what: str) -> Manager | None:
    """The target's package manager; otherwise warns that ``what`` is not supported there."""
    m = manager(ctx)
    if m is None:
        ctx.warn(f"{what}: not supported on {ctx.distro_family()} (tether drives apt on Debian-family and dnf on "
                 "RHEL-family systems)")
    return m


def apt_family(ctx: ModuleContext, what: str) -> bool:
    """True on a Debian-family root; otherwise warns that ``what`` is not supported there."""
    fam = ctx.distro_family()
    if fam == "debian":
        return True
    ctx.warn(f"{what}: not supported on {fam} (tether drives apt on Debian-family systems only)")
    return False


def run(ctx: ModuleContext, m: Manager, args: Sequence[str], what: str, timeout: float = INSTALL_TIMEOUT) -> bool:
    """Run the manager with ``args`` in the target. False (with a warning) when the root cannot run commands."""
    res = ctx.run_in_target(m.argv(args), env=m.env, timeout=timeout)
    if res is None:
        ctx.warn(f"{what}: not done, {ctx.target.root} holds no runnable system")
        return False
    return True


def apt_get(ctx: ModuleContext, args: Sequence[str], what: str, timeout: float = INSTALL_TIMEOUT) -> bool:
    """Run ``apt-get args`` in the target. False (with a warning) when the root cannot run commands."""
    return run(ctx, APT, args, what, timeout)


def install(ctx: ModuleContext, names: Sequence[str], what: str, update: bool = True) -> bool:
    """Install ``names`` (``name``, or ``name=version`` pinned) with the target's package manager.
    Returns True when it ran."""
    if not names:
        return True
    m = for_target(ctx, f"{what}: installing {', '.join(names)}")
    if m is None:
        return False
    if not ctx.can_run_in_target():
        ctx.warn(f"{what}: {', '.join(names)} not installed, {ctx.target.root} holds no runnable system")
        return False
    specs = [m.spec(*n.split("=", 1)) if "=" in n else n for n in names]
    if update:
        run(ctx, m, m.update, what, timeout=UPDATE_TIMEOUT)
    return run(ctx, m, ["install", *specs], what)


def ensure_installed(ctx: ModuleContext, executable: str, names: Sequence[str], what: str) -> bool:
    """Install ``names`` unless ``executable`` is already in the target. True when it is there (or was
    installed)."""
    if has_executable(ctx, executable):
        return True
    return install(ctx, names, what)


def has_executable(ctx: ModuleContext, name: str) -> bool:
    """Whether ``name`` (a bare name or an absolute path) is an executable inside the target."""

    candidates = [name] if name.startswith("/") else [f"{d}/{name}" for d in BIN_DIRS]
    for c in candidates:
        p = ctx.target.path(c)
        if p.is_file() and os.access(p, os.X_OK):
            return True
    return False
