"""What the ``scripts_*`` modules share: each runs one scripts directory in the final stage, whatever the
cloud-config says (no keys), with no options of its own. A module file declares its name, its frequency and its
directory; ``scripts_vendor`` adds its options (``vendor_data``) and its own ``handle``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tether.module import ModuleContext, Stage
from tether.script_dirs import run_dir

STAGE = Stage.FINAL
KEYS: tuple[str, ...] = ()
RUN_WITHOUT_KEYS = True


@dataclass(frozen=True)
class Config:
    pass


def handler(directory: Callable[[ModuleContext], str]) -> Callable[[ModuleContext, Config], None]:
    """A module's ``handle``: run the executables of ``directory(ctx)`` (tether.script_dirs)."""
    def handle(ctx: ModuleContext, cfg: Config) -> None:
        run_dir(ctx, directory(ctx))
    return handle
