"""systemd services in the target: enable offline with ``systemctl --root``; restart only live."""

from __future__ import annotations

import logging

from tether.errors import CommandError
from tether.module import ModuleContext

LOG = logging.getLogger(__name__)
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
SYSTEMCTL_TIMEOUT = 90.0


def unit_exists(ctx: ModuleContext, unit: str) -> bool:
    name = unit if "." in unit else f"{unit}.service"
    return any(ctx.target.path(f"{d}/{name}").exists() for d in UNIT_DIRS)


def enable(ctx: ModuleContext, unit: str) -> None:
    """Enable ``unit``: live through the manager, offline through ``systemctl --root`` (no chroot needed)."""
    if not unit_exists(ctx, unit):
        LOG.info("not enabling %s: no such unit in %s", unit, ctx.target.root)
        return
    argv = ["systemctl", "enable", unit] if ctx.live else ["systemctl", f"--root={ctx.target.root}", "enable", unit]
    try:
        ctx.run(argv, timeout=SYSTEMCTL_TIMEOUT)
    except CommandError as e:
        ctx.warn(f"could not enable {unit}: {e}")


def restart(ctx: ModuleContext, unit: str) -> None:
    """Restart a running service so it reads new configuration; live only (offline it starts at boot)."""
    if not ctx.live:
        return
    try:
        ctx.run(["systemctl", "restart", unit], timeout=SYSTEMCTL_TIMEOUT)
    except CommandError as e:
        ctx.warn(f"could not restart {unit}: {e}")
