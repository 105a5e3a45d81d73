"""write_files_deferred: the ``write_files`` entries marked ``defer: true``, written in the final stage (after
users exist and packages are installed). Parsing and writing are the write_files module's own
(``write_entries``), so both stages treat an entry identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.convert import convert
from tether.module import ModuleContext

NAME = "write_files_deferred"
STAGE = "final"
FREQUENCY = "once-per-instance"
KEYS = ("write_files",)


@dataclass(frozen=True)
class Config:
    write_files: tuple[dict[str, Any], ...] = ()


def handle(ctx: ModuleContext, cfg: Config) -> None:
    deferred = [(i, e) for i, e in enumerate(cfg.write_files) if isinstance(e, dict) and e.get("defer") is True]
    if not deferred:
        return
    # Imported here: write_files is the core's module; this one only picks the deferred entries.
    from tether.modules import write_files

    # Converted one by one so an error names the entry's index in the user's own list.
    entries = [convert(write_files.Entry, e, path=f"write_files[{i}]", strict=False) for i, e in deferred]
    # By the final stage every user the user-data creates exists: no further waiting.
    write_files.write_entries(ctx, entries, allow_defer=False)
