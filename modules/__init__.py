"""First-boot modules, one file each, registered explicitly below (a test checks every file is listed).

Modules are imported only when a stage runs them, so a boot pays for the modules it uses.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTERED: tuple[str, ...] = (
    "apt_configure",
    "bootcmd",
    "ca_certs",
    "disable_ec2_metadata",
    "disk_setup",
    "final_message",
    "growpart",
    "keyboard",
    "keys_to_console",
    "locale",
    "mounts",
    "ntp",
    "package_update_upgrade_install",
    "phone_home",
    "power_state_change",
    "resizefs",
    "rsyslog",
    "runcmd",
    "scripts_per_boot",
    "scripts_per_instance",
    "scripts_per_once",
    "scripts_user",
    "scripts_vendor",
    "seed_random",
    "set_hostname",
    "set_passwords",
    "ssh",
    "ssh_authkey_fingerprints",
    "timezone",
    "update_etc_hosts",
    "update_hostname",
    "users_groups",
    "write_files",
    "write_files_deferred",
)


def load(name: str) -> ModuleType:
    if name not in REGISTERED:
        raise KeyError(name)
    return importlib.import_module(f"tether.modules.{name}")
