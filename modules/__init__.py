"""First-boot modules, one file each, registered explicitly below (a test checks every file is listed).

Modules are imported only when a stage runs them, so a boot pays for the modules it uses. mypy checks every
registered module against the interface (``tether.module.Module``) through ``_CHECKED`` below, which only the type
checker reads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from tether.module import Module

# Every module, in name order, with the cloud-config keys that make it run (None: it runs without any key), so a
# stage can skip a module that has nothing to do without importing it (imports cost ~12x under TCG). Mirrors each
# module's KEYS and RUN_WITHOUT_KEYS; tests/core/test_registry.py keeps the two in step.
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

REGISTERED: tuple[str, ...] = tuple(ACTIVATED_BY)


def load(name: str) -> Module:
    if name not in REGISTERED:
        raise KeyError(name)
    return cast("Module", importlib.import_module(f"tether.modules.{name}"))


if TYPE_CHECKING:  # the same names as REGISTERED (tests/core/test_registry.py keeps them in step)
    import tether.modules.ansible
    import tether.modules.apt_configure
    import tether.modules.apt_pipelining
    import tether.modules.bootcmd
    import tether.modules.byobu
    import tether.modules.ca_certs
    import tether.modules.chef
    import tether.modules.disable_ec2_metadata
    import tether.modules.disk_setup
    import tether.modules.final_message
    import tether.modules.growpart
    import tether.modules.keyboard
    import tether.modules.keys_to_console
    import tether.modules.locale
    import tether.modules.lxd
    import tether.modules.mounts
    import tether.modules.ntp
    import tether.modules.package_update_upgrade_install
    import tether.modules.phone_home
    import tether.modules.power_state_change
    import tether.modules.puppet
    import tether.modules.resizefs
    import tether.modules.rsyslog
    import tether.modules.runcmd
    import tether.modules.scripts_per_boot
    import tether.modules.scripts_per_instance
    import tether.modules.scripts_per_once
    import tether.modules.scripts_user
    import tether.modules.scripts_vendor
    import tether.modules.seed_random
    import tether.modules.set_hostname
    import tether.modules.set_passwords
    import tether.modules.snap
    import tether.modules.ssh
    import tether.modules.ssh_authkey_fingerprints
    import tether.modules.ssh_import_id
    import tether.modules.timezone
    import tether.modules.update_etc_hosts
    import tether.modules.update_hostname
    import tether.modules.users_groups
    import tether.modules.wireguard
    import tether.modules.write_files
    import tether.modules.write_files_deferred

    _CHECKED: tuple[Module, ...] = (
        tether.modules.ansible,
        tether.modules.apt_configure,
        tether.modules.apt_pipelining,
        tether.modules.bootcmd,
        tether.modules.byobu,
        tether.modules.ca_certs,
        tether.modules.chef,
        tether.modules.disable_ec2_metadata,
        tether.modules.disk_setup,
        tether.modules.final_message,
        tether.modules.growpart,
        tether.modules.keyboard,
        tether.modules.keys_to_console,
        tether.modules.locale,
        tether.modules.lxd,
        tether.modules.mounts,
        tether.modules.ntp,
        tether.modules.package_update_upgrade_install,
        tether.modules.phone_home,
        tether.modules.power_state_change,
        tether.modules.puppet,
        tether.modules.resizefs,
        tether.modules.rsyslog,
        tether.modules.runcmd,
        tether.modules.scripts_per_boot,
        tether.modules.scripts_per_instance,
        tether.modules.scripts_per_once,
        tether.modules.scripts_user,
        tether.modules.scripts_vendor,
        tether.modules.seed_random,
        tether.modules.set_hostname,
        tether.modules.set_passwords,
        tether.modules.snap,
        tether.modules.ssh,
        tether.modules.ssh_authkey_fingerprints,
        tether.modules.ssh_import_id,
        tether.modules.timezone,
        tether.modules.update_etc_hosts,
        tether.modules.update_hostname,
        tether.modules.users_groups,
        tether.modules.wireguard,
        tether.modules.write_files,
        tether.modules.write_files_deferred,
    )
