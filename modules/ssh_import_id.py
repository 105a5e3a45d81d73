"""ssh_import_id: imports SSH public keys (``gh:user``, ``lp:user``, ...) with ``ssh-import-id``, run as each
user so the keys land in that user's ``authorized_keys``.

The top-level ``ssh_import_id`` list is for the default user (as cloud-init); each ``users`` entry may have
its own list. ``ssh-import-id`` is installed with the system's package manager when the target lacks it.
It fetches keys over the network, so it runs inside the target (live, or chrooted into a root that holds a
system); otherwise one warning names the users whose keys were not imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether import accounts, log, packages
from tether.errors import CommandError, ConfigErrors
from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.runas import run_as

NAME = "ssh_import_id"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
# users' own lists activate it too; the users/user keys are read from the whole config (see wanted())
KEYS = ("ssh_import_id", "users", "user")
LOG = log.get(__name__)
TOOL = "ssh-import-id"
IMPORT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Config:
    ssh_import_id: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for i in self.ssh_import_id:
            if not i.strip() or i.startswith("-"):
                raise ValueError(f"ssh_import_id: {i!r} is not a key id like gh:user or lp:user")


def wanted(ctx: ModuleContext, cfg: Config) -> dict[str, list[str]]:
    """user -> ids to import, in config order, duplicates dropped."""
    try:
        resolved = accounts.resolve_from(ctx.cloud_config, ctx.system_config)
    except ConfigErrors as e:
        raise ModuleError(f"cannot tell whose keys to import: {e}") from None
    out: dict[str, list[str]] = {}
    for name, spec in resolved.users.items():
        ids = list(cfg.ssh_import_id) if name == resolved.default_name else []
        ids += [i for i in spec.ssh_import_id or () if i.strip()]
        unique = list(dict.fromkeys(ids))
        if unique:
            out[name] = unique
    if cfg.ssh_import_id and resolved.default_name is None:
        ctx.warn("ssh_import_id: there is no default user to import "
                 f"{', '.join(cfg.ssh_import_id)} for")
    return out


def handle(ctx: ModuleContext, cfg: Config) -> None:
    todo = wanted(ctx, cfg)
    if not todo:
        return
    if not ctx.can_run_in_target():
        ctx.warn(f"ssh_import_id: keys not imported for {', '.join(todo)}, {ctx.target.root} holds no runnable "
                 "system")
        return
    packages.ensure_installed(ctx, TOOL, [TOOL], "ssh_import_id")
    errors = []
    for user, ids in todo.items():
        LOG.info("importing SSH keys %s for %s", ", ".join(ids), user)
        try:
            run_as(ctx, user, [TOOL, *ids], timeout=IMPORT_TIMEOUT)
        except (ModuleError, CommandError) as e:
            errors.append(f"{user}: {e}")
    if errors:
        raise ModuleError("ssh-import-id failed for " + "; ".join(errors))
