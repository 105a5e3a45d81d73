"""runcmd: writes the commands as a script in the instance's scripts directory; scripts_user runs it in the
final stage (as cloud-init does, so runcmd sees the fully configured system)."""

from __future__ import annotations

from dataclasses import dataclass

from tether.module import Frequency, ModuleContext, Stage
from tether.scripts import shell_line

NAME = "runcmd"
STAGE = Stage.CONFIG
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("runcmd",)


@dataclass(frozen=True)
class Config:
    runcmd: tuple[str | tuple[str, ...] | None, ...] = ()


def handle(ctx: ModuleContext, cfg: Config) -> None:
    lines = [shell_line(c) for c in cfg.runcmd if c is not None]
    path = f"{ctx.paths.instance_scripts(ctx.instance_id)}/runcmd"
    ctx.target.makedirs(ctx.paths.instance_scripts(ctx.instance_id), mode=0o700)
    ctx.target.write(path, "#!/bin/sh\n" + "".join(line + "\n" for line in lines), mode=0o700)
