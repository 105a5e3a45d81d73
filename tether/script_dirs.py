"""Running every executable in a scripts directory (per-boot, per-instance, per-once, vendor), in name order.

Scripts run through ``ctx.run_in_target``: live directly, offline chrooted into a root that holds a system,
otherwise they are left on disk unrun. Output goes to /var/log/tether-output.log. A failing script does not
stop the others; the caller gets every failure by name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tether import log
from tether.module import ModuleContext, ModuleError
from tether.scripts import run_script

LOG = log.get(__name__)


def executables(ctx: ModuleContext, directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(ctx.target.path(directory)))
    except OSError:
        return []
    out = []
    for name in names:
        host = ctx.target.path(f"{directory}/{name}")
        if not host.is_file():
            continue
        if not os.access(host, os.X_OK):
            LOG.info("skipping %s/%s: not executable", directory, name)
            continue
        out.append(f"{directory}/{name}")
    return out


def run_dir(ctx: ModuleContext, directory: str, prefix: Sequence[str] = ()) -> int:
    """Run the executables in ``directory``; returns how many ran. Raises ModuleError naming the failures."""
    scripts = executables(ctx, directory)
    if not scripts:
        return 0
    if not ctx.can_run_in_target():
        LOG.info("not running %d script(s) in %s: %s holds no runnable system", len(scripts), directory,
                 ctx.target.root)
        return 0
    failed = []
    for path in scripts:
        err = run_script(ctx.target, ctx.runner, path, ctx.paths.output_log,
                         extra_env={"INSTANCE_ID": ctx.instance_id}, prefix=prefix)
        if err:
            failed.append(f"{os.path.basename(path)} ({err})")
    if failed:
        raise ModuleError(f"scripts in {directory} failed: {', '.join(failed)}")
    return len(scripts)
