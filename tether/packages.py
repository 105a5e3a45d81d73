"""Installing packages into the target with the distribution's package manager (apt on Debian-family roots).

Package managers run their maintainer scripts inside the system they install into, so there is no
``--root`` equivalent that is safe: live they run directly, offline they run chrooted into the root when it
holds a usable system (``ModuleContext.run_in_target``). Otherwise nothing is installed and a warning says
what was left out. Other families get a clear "not supported" warning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

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


def apt_family(ctx: ModuleContext, what: str) -> bool:
    """True on a Debian-family root; otherwise warns that ``what`` is not supported there."""
    fam = ctx.distro_family()
    if fam == "debian":
        return True
    ctx.warn(f"{what}: not supported on {fam} (tether drives apt on Debian-family systems only)")
    return False


def apt_get(ctx: ModuleContext, args: Sequence[str], what: str, timeout: float = INSTALL_TIMEOUT) -> bool:
    """Run ``apt-get args`` in the target. False (with a warning) when the root cannot run commands."""
    res = ctx.run_in_target([*APT_GET, *args], env=APT_ENV, timeout=timeout)
    if res is None:
        ctx.warn(f"{what}: not done, {ctx.target.root} holds no runnable system")
        return False
    return True


def install(ctx: ModuleContext, names: Sequence[str], what: str, update: bool = True) -> bool:
    """Install ``names`` (``name`` or ``name=version``) with apt. Returns True when apt ran."""
    if not names:
        return True
    if not apt_family(ctx, f"{what}: installing {', '.join(names)}"):
        return False
    if not ctx.can_run_in_target():
        ctx.warn(f"{what}: {', '.join(names)} not installed, {ctx.target.root} holds no runnable system")
        return False
    if update:
        apt_get(ctx, ["update"], what, timeout=UPDATE_TIMEOUT)
    return apt_get(ctx, ["install", *names], what)


def has_executable(ctx: ModuleContext, name: str) -> bool:
    """Whether ``name`` (a bare name or an absolute path) is an executable inside the target."""

    candidates = [name] if name.startswith("/") else [f"{d}/{name}" for d in BIN_DIRS]
    for c in candidates:
        p = ctx.target.path(c)
        if p.is_file() and os.access(p, os.X_OK):
            return True
    return False
