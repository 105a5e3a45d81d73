"""First-boot modules, one file each, registered explicitly below (a test checks every file is listed).

Modules are imported only when a stage runs them, so a boot pays for the modules it uses.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGISTERED: tuple[str, ...] = (
    "ansible",
    "apt_configure",
    "apt_pipelining",
    "bootcmd",
    "byobu",
    "ca_certs",
    "chef",
    "disable_ec2_metadata",
    "disk_setup",
    "final_message",
    "growpart",
    "keyboard",
    "keys_to_console",
    "locale",
    "lxd",
    "mounts",
    "ntp",
    "package_update_upgrade_install",
    "phone_home",
    "power_state_change",
    "puppet",
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
    "snap",
    "ssh",
    "ssh_authkey_fingerprints",
    "ssh_import_id",
    "timezone",
    "update_etc_hosts",
    "update_hostname",
    "users_groups",
    "wireguard",
    "write_files",
    "write_files_deferred",
)

# Which cloud-config keys make each module run (None: it runs without any key), so a stage can skip a module that
# has nothing to do without importing it (imports cost ~12x under TCG). Mirrors each module's KEYS and
# RUN_WITHOUT_KEYS; tests/core/test_registry.py keeps the two in step.
ACTIVATED_BY: dict[str, tuple[str, ...] | None] = {
    "ansible": ("ansible",),
    "apt_configure": ("apt",),
    "apt_pipelining": ("apt_pipelining",),
    "bootcmd": ("bootcmd",),
    "byobu": ("byobu_by_default",),
    "ca_certs": ("ca_certs", "ca-certs"),
    "chef": ("chef",),
    "disable_ec2_metadata": ("disable_ec2_metadata",),
    "disk_setup": ("disk_setup", "fs_setup", "device_aliases"),
    "final_message": None,
    "growpart": None,
    "keyboard": ("keyboard",),
    "keys_to_console": None,
    "locale": ("locale", "locale_configfile"),
    "lxd": ("lxd",),
    "mounts": ("mounts", "mount_default_fields", "swap"),
    "ntp": ("ntp",),
    "package_update_upgrade_install": ("packages", "package_update", "package_upgrade", "package_reboot_if_required",
                                       "apt_update", "apt_upgrade", "apt_reboot_if_required"),
    "phone_home": ("phone_home",),
    "power_state_change": ("power_state",),
    "puppet": ("puppet",),
    "resizefs": None,
    "rsyslog": ("rsyslog",),
    "runcmd": ("runcmd",),
    "scripts_per_boot": None,
    "scripts_per_instance": None,
    "scripts_per_once": None,
    "scripts_user": None,
    "scripts_vendor": None,
    "seed_random": ("random_seed",),
    "set_hostname": None,
    "set_passwords": ("chpasswd", "password", "ssh_pwauth"),
    "snap": ("snap",),
    "ssh": None,
    "ssh_authkey_fingerprints": None,
    "ssh_import_id": ("ssh_import_id", "users", "user"),
    "timezone": ("timezone",),
    "update_etc_hosts": ("manage_etc_hosts", "hostname", "fqdn"),
    "update_hostname": None,
    "users_groups": None,
    "wireguard": ("wireguard",),
    "write_files": ("write_files",),
    "write_files_deferred": ("write_files",),
}


def load(name: str) -> ModuleType:
    if name not in REGISTERED:
        raise KeyError(name)
    return importlib.import_module(f"tether.modules.{name}")
