"""byobu: ``byobu_by_default`` turns byobu's launcher on or off for the default user and/or system-wide.

``enable-user``/``disable-user`` run ``byobu-launcher-install``/``-uninstall`` as the default user (it edits
their ``~/.profile``); ``enable-system``/``disable-system`` set byobu's debconf question
``byobu/launch-by-default`` and reconfigure the package (Debian family only: it is a debconf setting);
``enable``/``disable`` do both, ``user``/``system`` mean ``enable-user``/``enable-system``. Enabling installs
byobu when it is missing. Everything runs inside the target (live, or chrooted into a root that holds a
system); otherwise one warning says what was not done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tether import accounts, log, packages
from tether.errors import CommandError
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.runas import run_as

NAME = "byobu"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("byobu_by_default",)
LOG = log.get(__name__)
ALIASES = {"user": "enable-user", "system": "enable-system"}
Value = Literal["enable-system", "enable-user", "disable-system", "disable-user", "enable", "disable", "user",
                "system"]


@dataclass(frozen=True)
class Config:
    byobu_by_default: Value | None = None

    @property
    def action(self) -> tuple[str, bool, bool] | None:
        """(enable|disable, for the default user, system-wide), or None when not set."""
        if self.byobu_by_default is None:
            return None
        value = ALIASES.get(self.byobu_by_default, self.byobu_by_default)
        verb, _, scope = value.partition("-")
        return verb, scope in ("", "user"), scope in ("", "system")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if cfg.action is None:
        return
    verb, user_part, system_part = cfg.action
    if not ctx.can_run_in_target():
        ctx.warn(f"byobu: {verb} not done, {ctx.target.root} holds no runnable system")
        return
    if not packages.has_executable(ctx, "byobu"):
        if verb == "disable":
            LOG.info("byobu: not installed, nothing to disable")
            return
        packages.install(ctx, ["byobu"], "byobu")
    errors = []
    if user_part:
        user = accounts.default_user_name(ctx.cloud_config, ctx.system_config)
        if user is None:
            ctx.warn(f"byobu: no default user, so byobu is not {verb}d for one")
        else:
            tool = "byobu-launcher-install" if verb == "enable" else "byobu-launcher-uninstall"
            try:
                run_as(ctx, user, [tool])
            except (ModuleError, CommandError) as e:
                errors.append(f"byobu for {user}: {e}")
    if system_part:
        if packages.manager(ctx) is not packages.APT:
            ctx.warn("byobu: system-wide launching is a debconf setting; not supported without apt")
        else:
            answer = "true" if verb == "enable" else "false"
            try:
                ctx.run_in_target(["debconf-set-selections"],
                                  data=f"byobu byobu/launch-by-default boolean {answer}\n")
                ctx.run_in_target(["dpkg-reconfigure", "byobu", "--frontend=noninteractive"], env=packages.APT_ENV)
            except CommandError as e:
                errors.append(f"byobu system-wide: {e}")
    if errors:
        raise ModuleError("; ".join(errors))
