"""First-boot modules, one file each, registered explicitly below (a test checks every file is listed).

Modules are imported only when a stage runs them, so a boot pays for the modules it uses.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTERED: tuple[str, ...] = (
    "bootcmd",
    "final_message",
    "runcmd",
    "scripts_user",
    "write_files",
)


def load(name: str) -> ModuleType:
    if name not in REGISTERED:
        raise KeyError(name)
    return importlib.import_module(f"tether.modules.{name}")
