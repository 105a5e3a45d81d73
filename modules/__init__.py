"""First-boot modules, one file each, registered explicitly below (a test checks every file is listed).

Modules are imported only when a stage runs them, so a boot pays for the modules it uses.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTERED: tuple[str, ...] = (
    "bootcmd",
    "disk_setup",
    "final_message",
    "growpart",
    "keys_to_console",
    "resizefs",
    "runcmd",
    "scripts_user",
    "set_hostname",
    "set_passwords",
    "ssh",
    "ssh_authkey_fingerprints",
    "update_etc_hosts",
    "update_hostname",
    "users_groups",
    "write_files",
)


def load(name: str) -> ModuleType:
    if name not in REGISTERED:
        raise KeyError(name)
    return importlib.import_module(f"tether.modules.{name}")
