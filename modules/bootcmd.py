"""bootcmd: commands run early on every boot (cloud-init semantics), with INSTANCE_ID in the environment."""

from __future__ import annotations

from dataclasses import dataclass

from tether.module import Frequency, ModuleContext, ModuleError, Stage
from tether.scripts import run_script, shell_line

NAME = "bootcmd"
STAGE = Stage.INIT
FREQUENCY = Frequency.ALWAYS
KEYS = ("bootcmd",)


@dataclass(frozen=True)
class Config:
    bootcmd: tuple[str | tuple[str, ...], ...] = ()


def script_text(cmds: tuple[str | tuple[str, ...], ...]) -> str:
    return "#!/bin/sh\nset -e\n" + "".join(shell_line(c) + "\n" for c in cmds)


def handle(ctx: ModuleContext, cfg: Config) -> None:
    if not cfg.bootcmd:
        return
    path = f"{ctx.paths.instance_dir(ctx.instance_id)}/bootcmd"
    ctx.target.write(path, script_text(cfg.bootcmd), mode=0o700)
    err = run_script(ctx.target, ctx.runner, path, ctx.paths.output_log,
                     extra_env={"INSTANCE_ID": ctx.instance_id})
    if err:
        raise ModuleError(f"bootcmd failed: {err}")
