"""systemd services in the target: enable or disable offline with ``systemctl --root``; restart only live.

``enable_in``/``disable_in`` take a Target and a Runner, so code without a ModuleContext (the servicing engine
applying a host configuration's ``os.services`` to a new root) uses the same calls the modules do.
"""

from __future__ import annotations

from tether import log
from tether.errors import CommandError, TetherError
from tether.module import ModuleContext
from tether.runner import Runner
from tether.target import Target

LOG = log.get(__name__)
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
SYSTEMCTL_TIMEOUT = 90.0


class ServiceError(TetherError):
    """A unit could not be enabled or disabled in a target."""


def unit_name(unit: str) -> str:
    return unit if "." in unit else f"{unit}.service"


def unit_present(target: Target, unit: str) -> bool:
    name = unit_name(unit)
    return any(target.path(f"{d}/{name}").exists() for d in UNIT_DIRS)


def unit_exists(ctx: ModuleContext, unit: str) -> bool:
    return unit_present(ctx.target, unit)


def _systemctl(target: Target, verb: str, unit: str) -> list[str]:
    if target.live:
        return ["systemctl", verb, unit_name(unit)]
    return ["systemctl", f"--root={target.root}", verb, unit_name(unit)]


def enable_in(target: Target, runner: Runner, unit: str) -> None:
    """Enable ``unit`` in ``target`` (the wants/requires links its ``[Install]`` section names); live through
    the manager, offline through ``systemctl --root`` (no chroot needed). Raises ServiceError naming the unit
    when it does not exist there or systemctl fails."""
    if not unit_present(target, unit):
        raise ServiceError(f"cannot enable {unit_name(unit)}: no such unit in {target.root}")
    try:
        runner.run(_systemctl(target, "enable", unit), timeout=SYSTEMCTL_TIMEOUT)
    except CommandError as e:
        raise ServiceError(f"enabling {unit_name(unit)} in {target.root} failed: {e}") from None


def disable_in(target: Target, runner: Runner, unit: str) -> bool:
    """Disable ``unit`` in ``target``. A unit that is not there is already disabled (returns False)."""
    if not unit_present(target, unit):
        LOG.info("not disabling %s: no such unit in %s", unit_name(unit), target.root)
        return False
    try:
        runner.run(_systemctl(target, "disable", unit), timeout=SYSTEMCTL_TIMEOUT)
    except CommandError as e:
        raise ServiceError(f"disabling {unit_name(unit)} in {target.root} failed: {e}") from None
    return True


def enable(ctx: ModuleContext, unit: str) -> None:
    """Enable ``unit`` for a module: a missing unit is skipped, a failure is a warning."""
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
