"""write_files_deferred: the ``write_files`` entries marked ``defer: true``, written in the final stage (after
users exist and packages are installed). Parsing and writing are the write_files module's own
(``write_entries``), so both stages treat an entry identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether import log
from tether.convert import convert
from tether.errors import ConfigErrors
from tether.module import Frequency, ModuleContext, Stage

NAME = "write_files_deferred"
STAGE = Stage.FINAL
FREQUENCY = Frequency.ONCE_PER_INSTANCE
KEYS = ("write_files",)
LOG = log.get(__name__)


@dataclass(frozen=True)
class Config:
    write_files: tuple[dict[str, Any], ...] = ()


def handle(ctx: ModuleContext, cfg: Config) -> None:
    deferred = [(i, e) for i, e in enumerate(cfg.write_files) if isinstance(e, dict) and e.get("defer") is True]
    if not deferred:
        return
    # Imported here: write_files is the core's module; this one only picks the deferred entries.
    from tether.modules import write_files

    # Converted one by one: an invalid entry costs only itself. write_files (init stage) converts the same list
    # and has already reported it by its index, so it is only logged here.
    entries = []
    for i, e in deferred:
        try:
            entries.append(convert(write_files.Entry, e, path=f"write_files[{i}]", strict=False))
        except ConfigErrors as err:
            LOG.info("skipping an invalid deferred entry (reported by write_files): %s", err)
    # By the final stage every user the user-data creates exists: no further waiting.
    write_files.write_entries(ctx, entries, allow_defer=False)
