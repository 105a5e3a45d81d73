"""scripts_per_instance: run the executables in /var/lib/tether/scripts/per-instance/
once per instance (again after the instance-id changes).

See tether.script_dirs for how they run (live, or chrooted into an offline root that holds a system).
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.module import ModuleContext
from tether.script_dirs import run_dir

NAME = "scripts_per_instance"
STAGE = "final"
FREQUENCY = "once-per-instance"
KEYS: tuple[str, ...] = ()
RUN_WITHOUT_KEYS = True


@dataclass(frozen=True)
class Config:
    pass


def handle(ctx: ModuleContext, cfg: Config) -> None:
    run_dir(ctx, ctx.paths.scripts("per-instance"))
