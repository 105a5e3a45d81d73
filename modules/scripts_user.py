"""scripts_user: runs the user's scripts (``#!`` parts and runcmd) once per instance, in name order.

A failing script does not stop the others; the module reports every failure by name (tether.script_dirs).
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.module import ModuleContext
from tether.script_dirs import run_dir

NAME = "scripts_user"
STAGE = "final"
FREQUENCY = "once-per-instance"
KEYS: tuple[str, ...] = ()
RUN_WITHOUT_KEYS = True


@dataclass(frozen=True)
class Config:
    pass


def handle(ctx: ModuleContext, cfg: Config) -> None:
    run_dir(ctx, ctx.paths.instance_scripts(ctx.instance_id))
