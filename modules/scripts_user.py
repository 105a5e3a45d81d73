"""scripts_user: runs the user's scripts (``#!`` parts and runcmd) once per instance, in name order.

A failing script does not stop the others; the module reports every failure by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tether.module import ModuleContext, ModuleError
from tether.scripts import run_script

NAME = "scripts_user"
STAGE = "final"
FREQUENCY = "once-per-instance"
KEYS: tuple[str, ...] = ()
RUN_WITHOUT_KEYS = True


@dataclass(frozen=True)
class Config:
    pass


def run_dir(ctx: ModuleContext, directory: str) -> None:
    try:
        names = sorted(os.listdir(ctx.target.path(directory)))
    except OSError:
        return
    failed = []
    for name in names:
        path = f"{directory}/{name}"
        if not ctx.target.path(path).is_file():
            continue
        err = run_script(ctx.target, ctx.runner, path, ctx.paths.output_log,
                         extra_env={"INSTANCE_ID": ctx.instance_id})
        if err:
            failed.append(f"{name} ({err})")
    if failed:
        raise ModuleError(f"scripts in {directory} failed: {', '.join(failed)}")


def handle(ctx: ModuleContext, cfg: Config) -> None:
    run_dir(ctx, ctx.paths.instance_scripts(ctx.instance_id))
